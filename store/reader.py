"""Reading an index: the methods every reader shares, over a documents and a chunks table.

Two kinds of reader: the writer's head (:class:`store.db.Store`, the latest versions, what an
ingest run builds on) and a release's pinned, read-only view (:class:`store.view.IndexView`).
Both answer the same questions with the same code: :class:`TableReader` holds it, and each
subclass says which table handles to read through (:meth:`TableReader._documents` and
:meth:`TableReader._chunks`; None when a table does not exist).

``reader()`` is the one method a request calls first: it returns the reader to use from the
request's start to its end, so a request never mixes two versions of the index. A pinned view
and the head return themselves; the server's :class:`store.live.LiveIndex` returns the view of
the release live at that moment.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from store.ann import DEFAULT_TUNING, AnnTuning
from store.exact import ExactVectorIndex
from store.lance_query import run_query
from store.records import Candidate, DocumentRecord, SearchFilters
from store.schema import HEX_ID, HIT_COLUMNS, build_filter, sql_str
from store.vector_search import VectorSearch

#: columns of a chunk row shown by documents and lineage (the vector left out)
CHUNK_COLUMNS = [c for c in HIT_COLUMNS if c != "vector"]


class IndexSource(Protocol):
    """Anything that hands out the reader a request uses from its start to its end."""

    def reader(self) -> TableReader: ...


class TableReader:
    """The read methods of an index. Subclasses supply the table handles."""

    #: the release this reader shows (None: the writer's head, or an index without releases)
    release_id: str | None = None
    #: the ``index`` settings vector search follows (store/ann.py)
    tuning: AnnTuning = DEFAULT_TUNING
    _search: VectorSearch | None = None
    _search_key: tuple[int, int] | None = None
    _search_lock = threading.Lock()

    def _documents(self) -> Any | None:
        raise NotImplementedError

    def _chunks(self) -> Any | None:
        raise NotImplementedError

    @property
    def dimension(self) -> int | None:
        raise NotImplementedError

    def reader(self) -> TableReader:
        return self

    # ------------------------------------------------------------------ documents
    def documents_state(self) -> dict[str, DocumentRecord]:
        """Every document row keyed by its path."""
        table = self._documents()
        rows = table.to_arrow().to_pylist() if table is not None else []
        return {r["path"]: DocumentRecord.from_row(r) for r in rows}

    def list_documents(
        self,
        *,
        limit: int | None = None,
        offset: int = 0,
        status: str | None = None,
        groups: list[str] | None = None,
    ) -> list[DocumentRecord]:
        """Document rows sorted by path, those readable by ``groups`` (None: all)."""
        rows = list(self.documents_state().values())
        if status:
            rows = [r for r in rows if r.status == status]
        if groups is not None:
            allowed = set(groups)
            rows = [r for r in rows if allowed.intersection(r.groups)]
        rows.sort(key=lambda r: r.path)
        end = None if limit is None else offset + limit
        return rows[offset:end]

    def get_document(self, doc_id: str) -> DocumentRecord | None:
        table = self._documents()
        if table is None or not HEX_ID.match(doc_id):
            return None
        rows = table.search().where(f"doc_id = {sql_str(doc_id)}").limit(1).to_arrow().to_pylist()
        return DocumentRecord.from_row(rows[0]) if rows else None

    def documents_by_id(self, doc_ids: Iterable[str]) -> dict[str, DocumentRecord]:
        """The rows of ``doc_ids`` (those that exist), in one query."""
        ids = sorted({d for d in doc_ids if HEX_ID.match(d)})
        table = self._documents()
        if table is None or not ids:
            return {}
        pred = "doc_id IN (" + ", ".join(sql_str(d) for d in ids) + ")"
        data = run_query(table, lambda t: t.query().where(pred))  # a request's hits: one hop
        if data is None:
            data = table.search().where(pred).limit(None).to_arrow()
        rows = data.to_pylist()
        return {r["doc_id"]: DocumentRecord.from_row(r) for r in rows}

    # --------------------------------------------------------------------- chunks
    def document_chunks(self, doc_id: str) -> list[dict[str, Any]]:
        """A document's chunk rows (without vectors), in order."""
        table = self._chunks()
        if table is None or not HEX_ID.match(doc_id):
            return []
        rows: list[dict[str, Any]] = (
            table.search()
            .where(f"doc_id = {sql_str(doc_id)}")
            .select(CHUNK_COLUMNS)
            .limit(None)
            .to_arrow()
            .to_pylist()
        )
        rows.sort(key=lambda r: r["ordinal"])
        return rows

    def chunks_by_id(self, chunk_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Chunk rows (without vectors) by chunk id, for those that exist."""
        ids = sorted({c for c in chunk_ids if _CHUNK_ID.match(c)})
        table = self._chunks()
        if table is None or not ids:
            return {}
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(ids), 500):
            pred = "chunk_id IN (" + ", ".join(sql_str(c) for c in ids[i : i + 500]) + ")"
            rows = table.search().where(pred).select(CHUNK_COLUMNS).limit(None).to_arrow()
            for row in rows.to_pylist():
                out[row["chunk_id"]] = row
        return out

    def chunk_texts_at(
        self, places: Iterable[tuple[str, int]], filters: SearchFilters | None = None
    ) -> dict[tuple[str, int], str]:
        """The texts of the chunks at ``(doc_id, ordinal)`` places that exist and pass the
        prefilter, in one query."""
        wanted = sorted({(d, int(o)) for d, o in places if HEX_ID.match(d) and int(o) >= 0})
        table = self._chunks()
        if table is None or not wanted:
            return {}
        pred = " OR ".join(f"(doc_id = {sql_str(d)} AND ordinal = {o})" for d, o in wanted)
        where = build_filter(filters)
        if where:
            pred = f"({pred}) AND {where}"
        rows = (
            table.search()
            .where(pred)
            .select(["doc_id", "ordinal", "text"])
            .limit(len(wanted))
            .to_arrow()
            .to_pylist()
        )
        return {(r["doc_id"], int(r["ordinal"])): r["text"] or "" for r in rows}

    def count_chunks(self, where: str | None = None) -> int:
        table = self._chunks()
        return 0 if table is None else int(table.count_rows(where))

    def count_documents(self, where: str | None = None) -> int:
        table = self._documents()
        return 0 if table is None else int(table.count_rows(where))

    # --------------------------------------------------------------------- search
    def vector_search(
        self, vector: npt.NDArray[np.float32], limit: int, filters: SearchFilters | None = None
    ) -> list[Candidate]:
        """The ``limit`` chunks closest to ``vector`` by cosine, each with its similarity,
        among those ``filters`` allow (a prefilter: the full ``limit`` whenever that many
        match). The path (exact in memory, ANN index, flat scan) is store/ann.py's."""
        searcher = self.vector_searcher()
        if searcher is None:
            return []
        return searcher.search(vector, limit, build_filter(filters))

    def vector_searcher(self) -> VectorSearch | None:
        """The :class:`VectorSearch` of the chunks table as this reader sees it now."""
        table = self._chunks()
        if table is None:
            return None
        key = (id(table), self._chunks_version(table))
        searcher = self._search
        if searcher is not None and self._search_key == key:
            return searcher
        with self._search_lock:
            if self._search is None or self._search_key != key:
                self._search = VectorSearch(table, self.tuning)
                self._search_key = key
            return self._search

    def searcher_in_use(self) -> VectorSearch | None:
        """The :class:`VectorSearch` this reader made last, if any (none is made here)."""
        return self._search

    def _chunks_version(self, table: Any) -> int:
        """The version of the chunks table this reader reads now (a call to LanceDB's event
        loop; a pinned view knows it without one)."""
        return int(table.version)

    def text_search(
        self, text: str, limit: int, filters: SearchFilters | None = None
    ) -> list[Candidate]:
        """Full-text matches of the plain words of ``text`` (stemmed, stop words removed)."""
        table = self._chunks()
        query = fts_query(text)
        if table is None or not query:
            return []
        where = build_filter(filters)
        try:
            searcher = self.vector_searcher()
        except Exception:  # the full-text search does not depend on it
            searcher = None
        cache = searcher.row_cache if searcher is not None else None
        # with a row cache: row ids and scores (and the text where the cache has none); the
        # other columns from the cache
        if cache is None:
            columns = [*HIT_COLUMNS, "_score"]
        else:
            columns = ["_score"] if cache.has_text else ["text", "_score"]

        def build(t: Any) -> Any:
            q = t.query().nearest_to_text(query, columns=["text"])
            if where:
                q = q.where(where)  # a prefilter (the async API's default)
            if cache is not None:
                q = q.with_row_id()
            return q.select(columns).limit(limit)

        # a query LanceDB refuses: vector search alone answers (without a full-text index
        # LanceDB 0.40 searches the text unindexed, slower)
        try:
            data = run_query(table, build)  # built and run in one hop
            if data is None:
                q = table.search(query, query_type="fts", fts_columns="text")
                if where:
                    q = q.where(where, prefilter=True)
                data = q.select(columns).with_row_id(cache is not None).limit(limit).to_arrow()
        except Exception:
            return []
        if cache is not None and searcher is not None:
            found = data.to_pylist()
            ids = [int(r["_rowid"]) for r in found]
            texts = None if cache.has_text else {int(r["_rowid"]): r["text"] for r in found}
            rows = searcher.hydrate(cache, ids, texts, vectors=True)
            return [
                Candidate.from_row(rows[rid], text_score=_score(r))
                for rid, r in zip(ids, found, strict=True)
                if rid in rows
            ]
        return [Candidate.from_row(r, text_score=_score(r)) for r in data.to_pylist()]

    def exact_index(self) -> ExactVectorIndex:
        """Every chunk's vector in memory, for exact search over many queries at once."""
        table = self._chunks()
        rows = table.to_arrow().select(HIT_COLUMNS).to_pylist() if table is not None else []
        return ExactVectorIndex(rows, self.dimension or 1)


def _score(row: dict[str, Any]) -> float | None:
    return None if row.get("_score") is None else float(row["_score"])


_CHUNK_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")


def fts_query(text: str) -> str:
    """Plain words only: the full-text engine never sees operators from a user's question."""
    words = re.findall(r"\w+", text, flags=re.UNICODE)
    return " ".join(words[:64])
