"""The writer's side of the index: the head (latest versions) of both tables, and its writes.

Two tables live under ``<data_dir>/lancedb``:

* ``documents``: one row per file ever seen (ok, empty or failed), keyed by ``doc_id``.
* ``chunks``: text, vector and metadata of every chunk, with a native full-text index.

Only an ingest run (holding the writer lock, store/lock.py) writes here; what it writes is a
*candidate* that nobody serves until it is promoted (store/releases.py). Readers of a release
open a pinned view of its versions (store/view.py); :class:`Store` reads the head.

Crash safety: a batch first deletes every chunk of its documents, then adds the new chunks,
then upserts the document rows. Each LanceDB commit is atomic, so a process killed at any
point leaves tables that open; a document row is only written (with the file's sha256) after
its chunks are in, so the next run sees the file as changed and redoes it, deleting whatever
half-written chunks it finds first. No duplicates, no orphans.

Old versions and files: :meth:`Store.optimize` keeps the index small without rewriting what
releases share (store/maintain.py), and removes every version older than the oldest tagged
one (a release's versions are tagged, store/releases.py), never a tagged one. LanceDB refuses
a cleanup whose cut-off would pass a tagged version, so the cut-off is computed from the
tags' own timestamps.
"""

from __future__ import annotations

import json
import threading
import warnings
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from enclave.errors import EmbedderMismatchError, UsageError
from store.location import IndexLocation, locate
from store.reader import TableReader
from store.records import (
    META_FILE,
    STATUS_OK,
    ChunkRecord,
    DocumentRecord,
    read_index_meta,
    valid_group,
)
from store.schema import (
    ADDED_DOCUMENT_COLUMNS,
    chunks_schema,
    documents_schema,
    sql_str,
)

if TYPE_CHECKING:
    from store.ann import AnnTuning

DOCUMENTS = "documents"
CHUNKS = "chunks"
TABLES = (DOCUMENTS, CHUNKS)
INDEX_FORMAT = 1
#: a release's versions: {"documents": N, "chunks": M}; chunks is None before any chunk
Versions = Mapping[str, int | None]


class Store(TableReader):
    """The head of the Enclave index at ``<data_dir>/lancedb``. Safe to share between
    threads; one writer process at a time (store/lock.py)."""

    def __init__(
        self,
        lance_dir: IndexLocation | Path | str,
        *,
        read_consistency_s: float = 0.0,
        tables: str | None = None,
        tuning: AnnTuning | None = None,
    ) -> None:
        from store.ann import DEFAULT_TUNING
        from store.sets import set_location

        #: the index's location (registry, lock, pointer); ``location`` holds this set's tables
        self.root = locate(lance_dir)
        #: the table set (store/sets.py): None for the root set
        self.tables = tables
        #: the ``vector_index`` settings vector search and index upkeep follow (store/ann.py)
        self.tuning = tuning or DEFAULT_TUNING
        #: where this set's tables live (a local folder or an s3:// prefix)
        self.location = set_location(self.root, tables)
        self.location.check()
        #: the local folder of the tables, or this host's side folder of a remote index
        self.path = self.location.local_root
        self._db = self.location.connect(timedelta(seconds=read_consistency_s))
        self._lock = threading.RLock()
        self._docs: Any = None
        self._chunks_t: Any = None

    # ------------------------------------------------------------------ meta
    def meta(self) -> dict[str, Any]:
        return read_index_meta(self.location)

    def _write_meta(self, meta: dict[str, Any]) -> None:
        self.location.files().write(META_FILE, json.dumps(meta, indent=2).encode("utf-8"))

    def bind_embedder(self, name: str, dimension: int, build: dict[str, Any] | None = None) -> None:
        """Record the embedder on a new index (with ``build``: the settings it is built
        with, so a server can load the same embedder); refuse a different one on an existing
        index."""
        with self._lock:
            meta = self.meta()
            if meta.get("embedder") and (
                meta["embedder"] != name or int(meta.get("dimension", 0)) != dimension
            ):
                raise EmbedderMismatchError(
                    f"this index was built with embedder {meta['embedder']} "
                    f"(dimension {meta.get('dimension')}), not {name} (dimension {dimension}). "
                    "Mixing them would corrupt search. To re-embed with the new model while "
                    "the server keeps serving, run `enclave reindex` (docs/sync.md)."
                )
            if not meta.get("embedder"):
                meta.update({"format": INDEX_FORMAT, "embedder": name, "dimension": dimension})
                if build:
                    meta["build"] = build
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
    @property
    def connection(self) -> Any:
        """The LanceDB connection (pinned views share it)."""
        return self._db

    def _documents(self) -> Any | None:
        return self.documents_table()

    def _chunks(self) -> Any | None:
        return self.chunks_table()

    def has_tables(self) -> bool:
        """Whether the documents table exists (an index was ever written here)."""
        return DOCUMENTS in self._table_names()

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

    def _writable_documents(self) -> Any:
        """The documents table with every column of :func:`documents_schema`: a table written
        before a column existed (or restored to such a version) gets it first, one commit
        (older versions keep their schema: readers take a missing column as empty)."""
        docs = self.documents_table()
        names = set(docs.schema.names)
        missing = {k: v for k, v in ADDED_DOCUMENT_COLUMNS.items() if k not in names}
        if missing:
            docs.add_columns(missing)
        return docs

    def chunks_table(self, *, create: bool = False) -> Any | None:
        with self._lock:
            if self._chunks_t is None:
                if CHUNKS in self._table_names():
                    self._chunks_t = self._db.open_table(CHUNKS)
                elif create:
                    dim = self.dimension
                    if dim is None:
                        raise RuntimeError("bind_embedder() before writing chunks")
                    self._chunks_t = self._db.create_table(
                        CHUNKS, schema=chunks_schema(dim), exist_ok=True
                    )
            return self._chunks_t

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
            docs = self._writable_documents()
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
                self._writable_documents()
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

    def optimize(self, tuning: AnnTuning | None = None) -> dict[str, Any]:
        """:meth:`compact`, then :meth:`prune`. Only the writer calls it."""
        out = self.compact(tuning)
        self.prune()
        return out

    def compact(self, tuning: AnnTuning | None = None) -> dict[str, Any]:
        """Rewrite mostly-deleted fragments (and merge small ones when there are many) and
        keep the full-text, scalar and vector indexes up to date, rewriting nothing releases
        share that does not need it (store/maintain.py, store/ann.py)."""
        from store.maintain import compact
        from store.registry import Registry

        with self._lock:
            self.documents_table()
            return compact(self, Registry.at(self.root), tuning or self.tuning)

    def prune(self) -> None:
        """Remove every version older than the oldest tagged one, and the files only they
        referenced (store/maintain.py)."""
        from store.maintain import prune
        from store.registry import Registry

        with self._lock:
            self.documents_table()
            prune(self, Registry.at(self.root))

    def rebuild_fts(self) -> None:
        """Build the full-text index of the head again from its rows (a purge: the old
        index's postings hold the words of what was removed)."""
        table = self.chunks_table()
        if table is not None and table.count_rows() > 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                table.create_fts_index("text", use_tantivy=False, replace=True)

    # --------------------------------------------------------------- versions
    def size_bytes(self) -> int:
        return self.location.size_bytes()

    def version(self) -> dict[str, int]:
        out = {"documents": int(self.documents_table().version)}
        table = self.chunks_table()
        if table is not None:
            out["chunks"] = int(table.version)
        return out

    def head_versions(self) -> dict[str, int | None]:
        """The head's versions of both tables (chunks None while it does not exist)."""
        table = self.chunks_table()
        return {
            DOCUMENTS: int(self.documents_table().version),
            CHUNKS: None if table is None else int(table.version),
        }

    def tag(self, name: str, versions: Versions) -> None:
        """Tag both tables' ``versions`` as ``name`` (moving the tag when it exists)."""
        with self._lock:
            for table, version in self._pairs(versions):
                tags = table.tags
                if name in tags.list():
                    if int(tags.get_version(name)) != version:
                        tags.update(name, version)
                else:
                    tags.create(name, version)

    def untag(self, name: str) -> None:
        """Drop the tag ``name`` from both tables (its versions may then be cleaned up)."""
        with self._lock:
            for table in self._existing_tables():
                if name in table.tags.list():
                    table.tags.delete(name)

    def tags(self) -> dict[str, dict[str, int]]:
        """``{tag: {table: version}}`` over both tables."""
        out: dict[str, dict[str, int]] = {}
        for name, table in zip(TABLES, self._existing_tables(), strict=False):
            for tag, info in table.tags.list().items():
                out.setdefault(tag, {})[name] = int(info["version"])
        return out

    def restore(self, versions: Versions) -> None:
        """Make the head equal to ``versions`` (a new version each, no data copied); a table
        whose version is None is emptied."""
        with self._lock:
            docs = self.documents_table()
            if versions.get(DOCUMENTS) is None:
                docs.delete("true")
            else:
                docs.restore(int(versions[DOCUMENTS] or 0))
            chunks = self.chunks_table()
            if chunks is not None:
                if versions.get(CHUNKS) is None:
                    chunks.delete("true")
                else:
                    chunks.restore(int(versions[CHUNKS] or 0))

    def existing_tables(self) -> list[Any]:
        """The head's tables that exist (documents always, chunks once written)."""
        return self._existing_tables()

    def _existing_tables(self) -> list[Any]:
        chunks = self.chunks_table()
        return [self.documents_table(), *([chunks] if chunks is not None else [])]

    def _pairs(self, versions: Versions) -> list[tuple[Any, int]]:
        out = [(self.documents_table(), int(versions[DOCUMENTS] or 0))]
        chunks = self.chunks_table()
        if chunks is not None and versions.get(CHUNKS) is not None:
            out.append((chunks, int(versions[CHUNKS] or 0)))
        return out


__all__ = ["CHUNKS", "DOCUMENTS", "STATUS_OK", "TABLES", "Store", "Versions"]
