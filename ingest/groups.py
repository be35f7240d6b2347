"""Who may read an ingested document: the groups stored with its row and its chunks.

``--groups`` names are checked by :func:`parse_groups` (letters, digits, ``_``, ``.``, ``-``,
at most 64 characters). An ACL policy (``security.policy_file``) with rules is authoritative:
a document's groups are the policy's groups for its path plus ``--groups``. Without a policy,
``--groups`` replaces the stored groups; without either, a document keeps the groups it has.
Groups are decided by a document's real path only (the target of a symbolic link, never the
link's location), and ``--groups`` only reach documents whose real path lies below a root.

A run that gives ``--groups`` or has a policy also regroups the documents it leaves unchanged
(ingest/write.py), so an edited policy takes effect without re-embedding anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from enclave.errors import UsageError
from ingest.walk import is_under
from store.records import DocumentRecord, valid_group

if TYPE_CHECKING:
    from enclave.security.policy import AclPolicy


def parse_groups(value: str | Sequence[str] | None) -> list[str] | None:
    """``"a,b"`` or ``["a", "b"]`` -> validated group names; ``None`` keeps stored groups."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    groups = [g.strip() for g in items if g.strip()]
    for g in groups:
        if not valid_group(g):
            raise UsageError(
                f"invalid group name {g!r}: use letters, digits, '_', '.', '-' (max 64)"
            )
    return sorted(set(groups))


@dataclass(frozen=True)
class Readers:
    """The groups of the documents of one run: the ACL policy plus ``--groups``."""

    policy: AclPolicy
    #: ``--groups`` (checked by :func:`parse_groups`); None keeps the stored groups
    groups: list[str] | None
    #: the roots of the run (real paths or keys): ``--groups`` reach only documents below them
    roots: tuple[str, ...] = ()
    #: groups of documents new to this run's tables, by path: what the live release gave
    #: them (a re-index into new tables keeps who may read what)
    inherited: Mapping[str, list[str]] | None = None

    @property
    def may_regroup(self) -> bool:
        """Whether unchanged documents may get new groups in this run."""
        return self.groups is not None or bool(self.policy.rules)

    def under_roots(self, path: str) -> bool:
        """Whether the document's real path (its key) lies below one of the roots."""
        return not self.roots or any(is_under(path, r) for r in self.roots)

    def groups_for(self, path: str, old: DocumentRecord | None) -> list[str]:
        """Readers of the document whose real path (key) is ``path``: the ACL policy's groups
        for that path (authoritative when it has rules) plus ``--groups``; without either,
        the stored groups stay.

        ``--groups`` name the readers of the folders given, so they reach only documents
        whose real path lies below a root: a file outside them, ingested through a symbolic
        link under ``ingest.follow_external_links``, gets only what a policy rule grants its
        real path, and no groups (admins only) without one. The link's own location never
        grants anything.
        """
        cli = self.groups if self.groups is not None and self.under_roots(path) else None
        if self.policy.rules:
            return self.policy.groups_for(path, cli or [])
        if self.groups is not None:
            return list(cli or [])
        if old is not None:
            return list(old.groups)
        return list((self.inherited or {}).get(path, []))
