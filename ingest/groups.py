"""Who may read an ingested document: the groups stored with its row and its chunks.

``--groups`` names are checked by :func:`parse_groups` (letters, digits, ``_``, ``.``, ``-``,
at most 64 characters). An ACL policy (``security.policy_file``) with rules is authoritative:
a document's groups are the policy's groups for its path plus ``--groups``. Without a policy,
``--groups`` replaces the stored groups; without either, a document keeps the groups it has.

A run that gives ``--groups`` or has a policy also regroups the documents it leaves unchanged
(ingest/write.py), so an edited policy takes effect without re-embedding anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from enclave.errors import UsageError
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

    @property
    def may_regroup(self) -> bool:
        """Whether unchanged documents may get new groups in this run."""
        return self.groups is not None or bool(self.policy.rules)

    def groups_for(self, path: str, old: DocumentRecord | None) -> list[str]:
        """Readers of a document: the ACL policy (authoritative when it has rules) plus
        ``--groups``; without either, the stored groups stay."""
        if self.policy.rules:
            return self.policy.groups_for(path, self.groups or [])
        if self.groups is not None:
            return list(self.groups)
        return list(old.groups) if old is not None else []
