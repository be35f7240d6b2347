"""Two releases side by side: what changed between them (``enclave releases diff``), and the
rails that keep a suspicious candidate from going live on its own.

Both read the documents tables of two pinned views (store/view.py); nothing is re-embedded or
re-parsed. A document is *changed* when its content hash (the file's sha256) differs, and
*failed* when the newer release has it ``failed`` while the older one did not.

The rails (:func:`check_rails`) judge a candidate against its parent, the release live when
it was built. A candidate is held back (not promoted automatically) when it

* removes more than ``max_removed_share`` of the parent's documents (a share that was not
  mounted, then ``--prune``), or
* raises the share of failed documents by more than ``max_failure_jump`` (a broken parser,
  unreadable files),

provided the parent holds at least ``min_documents`` documents: on a handful of files every
change is a large share.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from store.reader import TableReader
from store.records import STATUS_FAILED, STATUS_QUARANTINED, DocumentRecord

#: statuses the failure rail and the diff count as failed: a parse that failed, and one whose
#: quality was too poor to serve (a parser regression shows as either)
FAILING = (STATUS_FAILED, STATUS_QUARANTINED)


@dataclass
class DocumentChanges:
    added: list[DocumentRecord] = field(default_factory=list)
    changed: list[tuple[DocumentRecord, DocumentRecord]] = field(default_factory=list)
    removed: list[DocumentRecord] = field(default_factory=list)
    #: failed or quarantined in the newer release, neither (or absent) in the older one
    failed: list[DocumentRecord] = field(default_factory=list)
    before: int = 0
    after: int = 0
    failed_before: int = 0
    failed_after: int = 0


def _by_id(reader: TableReader | None) -> dict[str, DocumentRecord]:
    if reader is None:
        return {}
    return {d.doc_id: d for d in reader.documents_state().values()}


def compare_documents(old: TableReader | None, new: TableReader) -> DocumentChanges:
    """The documents ``new`` adds, changes, removes and newly fails compared with ``old``."""
    a, b = _by_id(old), _by_id(new)
    out = DocumentChanges(before=len(a), after=len(b))
    out.failed_before = sum(1 for d in a.values() if d.status in FAILING)
    out.failed_after = sum(1 for d in b.values() if d.status in FAILING)
    for doc_id, doc in sorted(b.items(), key=lambda kv: kv[1].path):
        prev = a.get(doc_id)
        if prev is None:
            out.added.append(doc)
        elif prev.sha256 != doc.sha256 or prev.chunk_count != doc.chunk_count:
            out.changed.append((prev, doc))
        if doc.status in FAILING and (prev is None or prev.status not in FAILING):
            out.failed.append(doc)
    out.removed = sorted((d for i, d in a.items() if i not in b), key=lambda d: d.path)
    return out


def _doc(d: DocumentRecord) -> dict[str, Any]:
    return {"doc_id": d.doc_id, "path": d.path, "sha256": d.sha256, "status": d.status}


def changes_dict(changes: DocumentChanges, limit: int = 1000) -> dict[str, Any]:
    """The JSON shape of a comparison (each list cut at ``limit`` entries)."""
    return {
        "documents": {"before": changes.before, "after": changes.after},
        "failed_documents": {"before": changes.failed_before, "after": changes.failed_after},
        "counts": {
            "added": len(changes.added),
            "changed": len(changes.changed),
            "removed": len(changes.removed),
            "failed": len(changes.failed),
        },
        "added": [_doc(d) for d in changes.added[:limit]],
        "changed": [
            {**_doc(new), "old_sha256": old.sha256, "chunks": [old.chunk_count, new.chunk_count]}
            for old, new in changes.changed[:limit]
        ],
        "removed": [_doc(d) for d in changes.removed[:limit]],
        "failed": [{**_doc(d), "error": d.error} for d in changes.failed[:limit]],
    }


@dataclass
class RailsVerdict:
    ok: bool
    reasons: list[str] = field(default_factory=list)
    removed: int = 0
    removed_share: float = 0.0
    failed_share_before: float = 0.0
    failed_share_after: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "reasons": list(self.reasons),
            "removed": self.removed,
            "removed_share": round(self.removed_share, 4),
            "failed_share_before": round(self.failed_share_before, 4),
            "failed_share_after": round(self.failed_share_after, 4),
        }


def check_rails(
    parent: TableReader | None,
    candidate: TableReader,
    *,
    max_removed_share: float,
    max_failure_jump: float,
    min_documents: int,
) -> RailsVerdict:
    """The rails of the module docstring; ``parent`` None (a first release) always passes."""
    if parent is None:
        return RailsVerdict(ok=True)
    changes = compare_documents(parent, candidate)
    verdict = RailsVerdict(ok=True, removed=len(changes.removed))
    if changes.before:
        verdict.removed_share = len(changes.removed) / changes.before
        verdict.failed_share_before = changes.failed_before / changes.before
    if changes.after:
        verdict.failed_share_after = changes.failed_after / changes.after
    if changes.before < min_documents:
        return verdict
    if verdict.removed_share > max_removed_share:
        verdict.reasons.append(
            f"it removes {len(changes.removed)} of {changes.before} documents "
            f"({verdict.removed_share:.0%}, more than release.max_removed_share = "
            f"{max_removed_share:.0%}): was a share not mounted?"
        )
    jump = verdict.failed_share_after - verdict.failed_share_before
    if jump > max_failure_jump:
        verdict.reasons.append(
            f"its share of failed documents rises from {verdict.failed_share_before:.0%} to "
            f"{verdict.failed_share_after:.0%} (more than release.max_failure_jump = "
            f"{max_failure_jump:.0%}): a broken parser or unreadable files? (quarantined "
            "documents count as failed: `enclave quarantine list`)"
        )
    verdict.ok = not verdict.reasons
    return verdict
