"""The documents in the index: list, show (with a summary of its chunks), delete."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from enclave.errors import NotFoundError
from enclave.security.access import check_document_access
from store.records import DocumentRecord

if TYPE_CHECKING:
    from enclave.security.keys import Principal
    from store.db import Store

PREVIEW_CHARS = 160


def document_dict(doc: DocumentRecord, *, show_groups: bool = True) -> dict[str, Any]:
    """The API's view of a document; ``groups`` (who may read it) only for admins."""
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
    }
    if not show_groups:
        del out["groups"]
    return out


class DocumentService:
    def __init__(self, store: Store) -> None:
        self.store = store

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
        those."""
        docs = self.store.list_documents(status=status, groups=groups)
        page = docs[offset : offset + limit]
        return {
            "object": "list",
            "data": [document_dict(d, show_groups=show_groups) for d in page],
            "total": len(docs),
            "limit": limit,
            "offset": offset,
            "has_more": offset + len(page) < len(docs),
        }

    def get(self, doc_id: str, principal: Principal | None = None) -> dict[str, Any]:
        """One document; 404 alike for a missing one and one ``principal`` may not read."""
        doc = self.store.get_document(doc_id)
        if principal is not None:
            check_document_access(principal, doc)
        if doc is None:
            raise NotFoundError(f"no document with id {doc_id[:80]!r}")
        out = document_dict(doc, show_groups=principal is None or principal.admin)
        chunks = self.store.document_chunks(doc.doc_id)
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
        doc = self.store.get_document(doc_id)
        if doc is None:
            raise NotFoundError(f"no document with id {doc_id[:80]!r}")
        deleted = self.store.delete_documents([doc.doc_id])
        return {
            "id": doc.doc_id,
            "object": "document",
            "path": doc.path,
            "deleted": True,
            "chunks_deleted": deleted,
        }
