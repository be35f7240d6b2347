"""The documents of the live release: list, show (with a summary of its chunks), delete.

Quarantined documents (status ``quarantined``: their parse quality was too poor, see
ingest/quality.py) are listed like failed ones, with the reason as ``error`` and their
``quality``; they have no chunks, so nothing here or in search can show their text.

Each call reads ONE view of the index (the release live when it starts). Delete purges: the
document leaves the live release at once and every retained release, physically, with its
text (ingest/purge.py), so that neither a rollback nor a later read brings it back; it answers
409 while another writer (an ingest) holds the index.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from enclave.errors import NotFoundError
from enclave.security.access import check_document_access
from store.records import DocumentRecord

if TYPE_CHECKING:
    from enclave.security.keys import Principal
    from enclave.settings import Settings
    from store.live import LiveIndex

PREVIEW_CHARS = 160


def quality_dict(doc: DocumentRecord, *, admin: bool) -> dict[str, Any] | None:
    """A document's parse-quality verdict as the API shows it: the score, why it is (or would
    be) quarantined and whether a quarantine release admitted it, for every key that may read
    the document; the raw signals and who admitted it only for admins. None when the
    document was never scored (no text, or an index written before scores existed)."""
    q = doc.quality
    if not q:
        return None
    admitted = q.get("admitted") if isinstance(q.get("admitted"), dict) else None
    out: dict[str, Any] = {
        "score": doc.quality_score,
        "reason": q.get("reason") or None,
        "admitted": admitted is not None,
    }
    if admin:
        out["signals"] = dict(q.get("signals") or {})
        out["failed"] = list(q.get("failed") or [])
        if admitted is not None:
            out["admitted_by"] = admitted.get("by")
            out["admitted_at"] = admitted.get("at")
    return out


def document_dict(doc: DocumentRecord, *, show_groups: bool = True) -> dict[str, Any]:
    """The API's view of a document; ``groups`` (who may read it) and the quality signals
    only for admins."""
    out = {
        "id": doc.doc_id,
        "object": "document",
        "path": doc.path,
        "title": doc.title,
        "status": doc.status,
        "error": doc.error or None,
        "chunk_count": doc.chunk_count,
        "size": doc.size,
        "mtime": doc.mtime,
        "sha256": doc.sha256,
        "parser": doc.parser,
        "ingested_at": doc.ingested_at,
        "embedder": doc.embedder,
        "groups": doc.groups,
        "quality": quality_dict(doc, admin=show_groups),
    }
    if not show_groups:
        del out["groups"]
    return out


class DocumentService:
    def __init__(self, settings: Settings, index: LiveIndex) -> None:
        self.settings = settings
        self.index = index

    def list(
        self,
        *,
        limit: int,
        offset: int,
        status: str | None,
        groups: list[str] | None = None,
        show_groups: bool = True,
    ) -> dict[str, Any]:
        """A page of the documents readable by ``groups`` (None: all); ``total`` counts only
        those; ``release`` names the live release they belong to."""
        view = self.index.reader()
        docs = view.list_documents(status=status, groups=groups)
        page = docs[offset : offset + limit]
        return {
            "object": "list",
            "release": view.release_id,
            "data": [document_dict(d, show_groups=show_groups) for d in page],
            "total": len(docs),
            "limit": limit,
            "offset": offset,
            "has_more": offset + len(page) < len(docs),
        }

    def get(self, doc_id: str, principal: Principal | None = None) -> dict[str, Any]:
        """One document; 404 alike for a missing one and one ``principal`` may not read."""
        view = self.index.reader()
        doc = view.get_document(doc_id)
        if principal is not None:
            check_document_access(principal, doc)
        if doc is None:
            raise NotFoundError(f"no document with id {doc_id[:80]!r}")
        out = document_dict(doc, show_groups=principal is None or principal.admin)
        out["release"] = view.release_id
        chunks = view.document_chunks(doc.doc_id)
        out["chunks"] = [
            {
                "chunk_id": c["chunk_id"],
                "ordinal": c.get("ordinal"),
                "page": c.get("page"),
                "heading_path": list(c.get("heading_path") or []),
                "tokens": c.get("tokens"),
                "chars": len(c.get("text") or ""),
                "preview": " ".join((c.get("text") or "").split())[:PREVIEW_CHARS],
            }
            for c in chunks
        ]
        return out

    def delete(self, doc_id: str) -> dict[str, Any]:
        """Purge the document from every release (module docstring)."""
        from eval.release_gate import release_hooks
        from ingest.purge import purge
        from store.schema import HEX_ID

        if not HEX_ID.match(doc_id):
            raise NotFoundError(f"no document with id {doc_id[:80]!r}")
        live = self.index.reader().get_document(doc_id)
        result = purge(
            self.settings,
            doc_id,
            hooks=release_hooks(),
            by="enclave serve: DELETE /v1/documents",
            audited=False,  # the request's own audit record
        )
        self.index.refresh(force=True)
        paths = result.get("paths") or []
        return {
            "id": doc_id,
            "object": "document",
            "path": live.path if live is not None else (paths[0] if paths else None),
            "deleted": True,
            "purged": True,
            "chunks_deleted": live.chunk_count if live is not None else 0,
            "releases": sorted(result.get("releases") or {}),
            "release": self.index.release_id,
        }
