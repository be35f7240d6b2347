"""What a principal may see. The store applies the result as a prefilter, before ranking."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from enclave.errors import ForbiddenError, NotFoundError
from store.records import SearchFilters, valid_group

if TYPE_CHECKING:
    from enclave.security.keys import Principal
    from store.records import DocumentRecord

#: The reserved group every authenticated key can read (``public = true`` in the policy).
PUBLIC_GROUP = "public"


def visible_groups(principal: Principal) -> list[str] | None:
    """The groups whose documents ``principal`` may read; ``None`` = everything (admins).

    Invalid names (which the key store never writes) are dropped here too: a group can never
    carry a filter expression into the store.
    """
    if principal.admin:
        return None
    out = [g for g in principal.groups if valid_group(g)]
    if PUBLIC_GROUP not in out:
        out.append(PUBLIC_GROUP)
    return out


def search_filters_for(principal: Principal, filters: SearchFilters | None = None) -> SearchFilters:
    """The caller's own filters (path prefix, document ids) with ``groups`` forced to theirs.

    Whatever ``groups`` the request carried is replaced: a client cannot widen its access.
    """
    base = filters if filters is not None else SearchFilters()
    return replace(base, groups=visible_groups(principal))


def can_read_document(principal: Principal, document: DocumentRecord) -> bool:
    allowed = visible_groups(principal)
    return allowed is None or bool(set(allowed).intersection(document.groups))


def check_document_access(principal: Principal, document: DocumentRecord | None) -> None:
    """Raise NotFoundError for a missing document *and* for one the caller may not read.

    Both answer 404 with the same message, so a caller cannot probe which ids exist.
    """
    if document is None or not can_read_document(principal, document):
        raise NotFoundError("document not found")


def require_admin(principal: Principal, action: str = "this action") -> None:
    if not principal.admin:
        raise ForbiddenError(f"{action} requires an admin key")
