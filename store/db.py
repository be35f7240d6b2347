"""LanceDB schema, writes, and the two searches (vector and full text) that retrieval fuses.

Two tables live under ``<data_dir>/lancedb``:

* ``documents``: one row per file ever seen (ok, empty or failed), keyed by ``doc_id``.
* ``chunks``: text, vector and metadata of every chunk, with a native full-text index.

Crash safety: a batch first deletes every chunk of its documents, then adds the new chunks,
then upserts the document rows. Each LanceDB commit is atomic, so a process killed at any
point leaves tables that open; a document row is only written (with the file's sha256) after
its chunks are in, so the next run sees the file as changed and redoes it, deleting whatever
half-written chunks it finds first. No duplicates, no orphans.
"""

from __future__ import annotations

import json
import os
import re
import threading
import warnings
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from enclave.errors import EmbedderMismatchError, UsageError
from store.exact import ExactVectorIndex
from store.records import (
    META_FILE,
    STATUS_OK,
    Candidate,
    ChunkRecord,
    DocumentRecord,
    SearchFilters,
    read_index_meta,
    valid_group,
)
from store.schema import (
    HEX_ID,
    HIT_COLUMNS,
    build_filter,
    chunks_schema,
    documents_schema,
    sql_str,
)

DOCUMENTS = "documents"
CHUNKS = "chunks"
INDEX_FORMAT = 1


class Store:
    """The Enclave index at ``<data_dir>/lancedb``. Safe to share between threads."""

    def __init__(self, lance_dir: Path | str, *, read_consistency_s: float = 0.0) -> None:
        import lancedb

        self.path = Path(lance_dir)
        self.path.mkdir(parents=True, exist_ok=True)
        self._db = lancedb.connect(
            str(self.path), read_consistency_interval=timedelta(seconds=read_consistency_s)
        )
        self._lock = threading.RLock()
        self._docs: Any = None
        self._chunks: Any = None

    # ------------------------------------------------------------------ meta
    @property
    def meta_path(self) -> Path:
        return self.path / META_FILE

    def meta(self) -> dict[str, Any]:
        return read_index_meta(self.path)

    def _write_meta(self, meta: dict[str, Any]) -> None:
        tmp = self.meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, indent=2), "utf-8")
        os.replace(tmp, self.meta_path)

    def bind_embedder(self, name: str, dimension: int) -> None:
        """Record the embedder on a new index; refuse a different one on an existing index."""
        with self._lock:
            meta = self.meta()
            if meta.get("embedder") and (
                meta["embedder"] != name or int(meta.get("dimension", 0)) != dimension
            ):
                raise EmbedderMismatchError(
                    f"this index was built with embedder {meta['embedder']} "
                    f"(dimension {meta.get('dimension')}), not {name} (dimension {dimension}). "
                    "Mixing them would corrupt search. To re-embed with the new model, ingest "
                    "into a new data directory (--data-dir NEW) and point the server at it, or "
                    f"remove {self.path} and ingest again."
                )
            if not meta.get("embedder"):
                meta.update({"format": INDEX_FORMAT, "embedder": name, "dimension": dimension})
                self._write_meta(meta)

    @property
    def embedder_name(self) -> str | None:
        name = self.meta().get("embedder")
        return str(name) if name else None

    @property
    def dimension(self) -> int | None:
        dim = self.meta().get("dimension")
        return int(dim) if dim else None

    # ---------------------------------------------------------------- tables
    def _table_names(self) -> list[str]:
        names: list[str] = []
        token: str | None = None
        while True:
            page = self._db.list_tables(page_token=token)
            names.extend(page.tables)
            token = page.page_token
            if not token:
                return names

    def documents_table(self) -> Any:
        with self._lock:
            if self._docs is None:
                if DOCUMENTS in self._table_names():
                    self._docs = self._db.open_table(DOCUMENTS)
                else:
                    self._docs = self._db.create_table(
                        DOCUMENTS, schema=documents_schema(), exist_ok=True
                    )
            return self._docs

    def chunks_table(self, *, create: bool = False) -> Any | None:
        with self._lock:
            if self._chunks is None:
                if CHUNKS in self._table_names():
                    self._chunks = self._db.open_table(CHUNKS)
                elif create:
                    dim = self.dimension
                    if dim is None:
                        raise RuntimeError("bind_embedder() before writing chunks")
                    self._chunks = self._db.create_table(
                        CHUNKS, schema=chunks_schema(dim), exist_ok=True
                    )
            return self._chunks

    # ---------------------------------------------------------------- writes
    def replace_documents(
        self, documents: Sequence[DocumentRecord], chunks: Sequence[ChunkRecord]
    ) -> int:
        """Make ``documents`` and exactly ``chunks`` the stored state of those documents.

        Returns how many old chunks were deleted.
        """
        if not documents:
            return 0
        with self._lock:
            ids = [d.doc_id for d in documents]
            deleted = self._delete_chunks(ids)
            if chunks:
                table = self.chunks_table(create=True)
                assert table is not None
                dim = self.dimension
                rows = [c.to_row() for c in chunks]
                table.add(pa.Table.from_pylist(rows, schema=chunks_schema(dim or 0)))
            docs = self.documents_table()
            data = pa.Table.from_pylist([d.to_row() for d in documents], schema=documents_schema())
            (
                docs.merge_insert("doc_id")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(data)
            )
            return deleted

    def append_chunks(self, chunks: Sequence[ChunkRecord]) -> None:
        """Add chunks without touching their documents' rows or other chunks: for a document
        written in slices, whose row the caller writes last (before it, a row that does not
        claim the document complete). One commit."""
        if not chunks:
            return
        with self._lock:
            table = self.chunks_table(create=True)
            assert table is not None
            rows = [c.to_row() for c in chunks]
            table.add(pa.Table.from_pylist(rows, schema=chunks_schema(self.dimension or 0)))

    def _delete_chunks(self, doc_ids: Sequence[str]) -> int:
        table = self.chunks_table()
        if table is None or not doc_ids:
            return 0
        total = 0
        for i in range(0, len(doc_ids), 500):
            part = doc_ids[i : i + 500]
            pred = "doc_id IN (" + ", ".join(sql_str(d) for d in part) + ")"
            n = int(table.count_rows(pred))
            if n:
                table.delete(pred)
                total += n
        return total

    def delete_documents(self, doc_ids: Sequence[str]) -> int:
        """Remove documents and all their chunks. Returns chunks deleted."""
        if not doc_ids:
            return 0
        with self._lock:
            deleted = self._delete_chunks(doc_ids)
            docs = self.documents_table()
            for i in range(0, len(doc_ids), 500):
                part = doc_ids[i : i + 500]
                docs.delete("doc_id IN (" + ", ".join(sql_str(d) for d in part) + ")")
            return deleted

    def upsert_document_rows(self, documents: Sequence[DocumentRecord]) -> None:
        """Write document rows only, leaving their chunks alone (e.g. a new mtime for a file
        whose content hash did not change)."""
        if not documents:
            return
        with self._lock:
            data = pa.Table.from_pylist([d.to_row() for d in documents], schema=documents_schema())
            (
                self.documents_table()
                .merge_insert("doc_id")
                .when_matched_update_all()
                .when_not_matched_insert_all()
                .execute(data)
            )

    def set_groups(self, doc_ids: Sequence[str], groups: list[str]) -> None:
        """Change who may read documents without re-embedding them."""
        bad = [g for g in groups if not valid_group(g)]
        if bad:
            raise UsageError(f"invalid group name: {bad[0]!r}")
        with self._lock:
            for i in range(0, len(doc_ids), 500):
                part = doc_ids[i : i + 500]
                pred = "doc_id IN (" + ", ".join(sql_str(d) for d in part) + ")"
                value = "make_array(" + ", ".join(sql_str(g) for g in groups) + ")"
                if not groups:
                    value = "arrow_cast(make_array(), 'List(Utf8)')"
                self.documents_table().update(where=pred, values_sql={"groups": value})
                chunks = self.chunks_table()
                if chunks is not None:
                    chunks.update(where=pred, values_sql={"groups": value})

    def remove_orphan_chunks(self) -> int:
        """Delete chunks whose document row is missing (left by a killed run)."""
        with self._lock:
            table = self.chunks_table()
            if table is None:
                return 0
            known = set(self.documents_table().to_arrow().column("doc_id").to_pylist())
            present = set(
                table.search()
                .select(["doc_id"])
                .limit(None)
                .to_arrow()
                .column("doc_id")
                .to_pylist()
            )
            orphans = sorted(present - known)
            return self._delete_chunks(orphans)

    def optimize(self) -> None:
        """Compact small fragments and bring the full-text index up to date."""
        with self._lock:
            table = self.chunks_table()
            if table is not None and table.count_rows() > 0:
                self._ensure_fts(table)
                table.optimize()
            self.documents_table().optimize()

    def _ensure_fts(self, table: Any) -> None:
        names = {getattr(i, "name", "") for i in table.list_indices()}
        if "text_idx" not in names:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                table.create_fts_index("text", use_tantivy=False, replace=True)

    # ----------------------------------------------------------------- reads
    def documents_state(self) -> dict[str, DocumentRecord]:
        """Every document row keyed by its path (for incremental runs)."""
        table = self.documents_table()
        rows = table.to_arrow().to_pylist()
        return {r["path"]: DocumentRecord.from_row(r) for r in rows}

    def list_documents(
        self,
        *,
        limit: int | None = None,
        offset: int = 0,
        status: str | None = None,
        groups: list[str] | None = None,
    ) -> list[DocumentRecord]:
        rows = [DocumentRecord.from_row(r) for r in self.documents_table().to_arrow().to_pylist()]
        if status:
            rows = [r for r in rows if r.status == status]
        if groups is not None:
            allowed = set(groups)
            rows = [r for r in rows if allowed.intersection(r.groups)]
        rows.sort(key=lambda r: r.path)
        end = None if limit is None else offset + limit
        return rows[offset:end]

    def get_document(self, doc_id: str) -> DocumentRecord | None:
        if not HEX_ID.match(doc_id):
            return None
        rows = (
            self.documents_table()
            .search()
            .where(f"doc_id = {sql_str(doc_id)}")
            .limit(1)
            .to_arrow()
            .to_pylist()
        )
        return DocumentRecord.from_row(rows[0]) if rows else None

    def document_chunks(self, doc_id: str) -> list[dict[str, Any]]:
        table = self.chunks_table()
        if table is None or not HEX_ID.match(doc_id):
            return []
        rows: list[dict[str, Any]] = (
            table.search()
            .where(f"doc_id = {sql_str(doc_id)}")
            .select([c for c in HIT_COLUMNS if c != "vector"])
            .limit(None)
            .to_arrow()
            .to_pylist()
        )
        rows.sort(key=lambda r: r["ordinal"])
        return rows

    def count_chunks(self, where: str | None = None) -> int:
        table = self.chunks_table()
        return 0 if table is None else int(table.count_rows(where))

    def count_documents(self, where: str | None = None) -> int:
        return int(self.documents_table().count_rows(where))

    def size_bytes(self) -> int:
        return sum(f.stat().st_size for f in self.path.rglob("*") if f.is_file())

    def version(self) -> dict[str, int]:
        out = {"documents": int(self.documents_table().version)}
        table = self.chunks_table()
        if table is not None:
            out["chunks"] = int(table.version)
        return out

    # ---------------------------------------------------------------- search
    def vector_search(
        self, vector: npt.NDArray[np.float32], limit: int, filters: SearchFilters | None = None
    ) -> list[Candidate]:
        """The ``limit`` chunks closest to ``vector`` by cosine, each with its similarity."""
        table = self.chunks_table()
        if table is None:
            return []
        q = table.search(np.asarray(vector, dtype=np.float32), vector_column_name="vector")
        q = q.distance_type("cosine")
        where = build_filter(filters)
        if where:
            q = q.where(where, prefilter=True)
        rows = q.select([*HIT_COLUMNS, "_distance"]).limit(limit).to_arrow().to_pylist()
        return [
            Candidate.from_row(r, similarity=1.0 - float(r["_distance"]))
            if r.get("_distance") is not None
            else Candidate.from_row(r)
            for r in rows
        ]

    def text_search(
        self, text: str, limit: int, filters: SearchFilters | None = None
    ) -> list[Candidate]:
        """Full-text matches of the plain words of ``text`` (stemmed, stop words removed)."""
        table = self.chunks_table()
        query = _fts_query(text)
        if table is None or not query:
            return []
        try:
            q = table.search(query, query_type="fts", fts_columns="text")
        except Exception:
            return []  # no full-text index yet: vector search alone answers
        where = build_filter(filters)
        if where:
            q = q.where(where, prefilter=True)
        try:
            rows = q.select([*HIT_COLUMNS, "_score"]).limit(limit).to_arrow().to_pylist()
        except Exception:
            return []
        return [
            Candidate.from_row(
                r, text_score=None if r.get("_score") is None else float(r["_score"])
            )
            for r in rows
        ]

    def exact_index(self) -> ExactVectorIndex:
        """Every chunk's vector in memory, for exact search over many queries at once."""
        table = self.chunks_table()
        rows = table.to_arrow().select(HIT_COLUMNS).to_pylist() if table is not None else []
        return ExactVectorIndex(rows, self.dimension or 1)


def _fts_query(text: str) -> str:
    """Plain words only: the full-text engine never sees operators from a user's question."""
    words = re.findall(r"\w+", text, flags=re.UNICODE)
    return " ".join(words[:64])


__all__ = ["STATUS_OK", "Store"]
