"""Lineage: from an answer's response id to the exact passages and file versions it stood on.

Every chat answer's audit record carries its response id (``chatcmpl-...``), the release it
was served from, and the chunks retrieved and cited with their documents' sha256
(server/services/admission.py). :func:`lineage` finds that record, opens the release's pinned
view (store/view.py) and returns each passage's full text and each document's row (path,
sha256, mtime) as that release holds them, however many releases came after, for as long as
the release is retained. Once retention dropped it: ReleaseGoneError (HTTP 410). A passage a
purge removed since is listed as ``purged``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from enclave.errors import NotFoundError, UsageError
from enclave.security.audit import AUDIT_DIR, LOG_FILE


def find_response(data_dir: Path | str, response_id: str) -> dict[str, Any] | None:
    """The audit record of ``response_id`` (the newest, should there be several)."""
    if not response_id.startswith("chatcmpl-") or len(response_id) > 80:
        raise UsageError(f"not a response id: {response_id[:80]!r} (expected chatcmpl-...)")
    needle = json.dumps(response_id).encode("utf-8")
    path = Path(data_dir) / AUDIT_DIR / LOG_FILE
    found: dict[str, Any] | None = None
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        return None
    with fh:
        for line in fh:
            if needle not in line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            extra = rec.get("extra") if isinstance(rec, dict) else None
            if isinstance(extra, dict) and extra.get("response_id") == response_id:
                found = rec
    return found


def lineage(
    data_dir: Path | str, lance_dir: Any, response_id: str, *, connection: Any = None
) -> dict[str, Any]:
    """The passages and documents behind ``response_id`` (module docstring)."""
    from store.releases import open_release

    rec = find_response(data_dir, response_id)
    if rec is None:
        raise NotFoundError(f"no answer with id {response_id[:80]!r} in the audit log")
    extra = rec.get("extra") or {}
    release = extra.get("release")
    if not release:
        raise NotFoundError(f"{response_id} was answered from no release (an empty index)")
    view = open_release(lance_dir, str(release), connection=connection)
    cited = {str(r.get("chunk_id")) for r in rec.get("cited") or []}
    refs = {str(r.get("chunk_id")): r for r in rec.get("retrieved") or []}
    for r in rec.get("cited") or []:
        refs.setdefault(str(r.get("chunk_id")), r)
    chunks = view.chunks_by_id(refs)
    docs = view.documents_by_id(str(r.get("doc_id")) for r in refs.values())
    passages = []
    for chunk_id, ref in refs.items():
        row = chunks.get(chunk_id)
        passages.append(
            {
                "chunk_id": chunk_id,
                "doc_id": ref.get("doc_id"),
                "doc_sha256": ref.get("doc_sha256"),
                "cited": chunk_id in cited,
                "purged": row is None,
                "text": None if row is None else row.get("text"),
                "ordinal": None if row is None else row.get("ordinal"),
                "page": None if row is None else row.get("page"),
                "heading_path": [] if row is None else list(row.get("heading_path") or []),
                "source": None if row is None else row.get("source"),
            }
        )
    recorded = {str(r.get("doc_id")): str(r.get("doc_sha256") or "") for r in refs.values()}
    documents = [
        {
            "doc_id": d.doc_id,
            "path": d.path,
            "title": d.title,
            "sha256": d.sha256,
            "size": d.size,
            "mtime": d.mtime,
            "status": d.status,
            "sha256_matches": recorded.get(d.doc_id) in ("", d.sha256),
        }
        for d in sorted(docs.values(), key=lambda d: d.path)
    ]
    return {
        "object": "lineage",
        "response_id": response_id,
        "release": str(release),
        "answered_at": rec.get("time"),
        "endpoint": rec.get("endpoint"),
        "principal": rec.get("principal"),
        "audit_seq": rec.get("seq"),
        "passages": passages,
        "documents": documents,
    }
