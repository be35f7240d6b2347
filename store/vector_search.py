"""Vector search over one version of the chunks table: which path a query takes, and how.

The paths (:class:`VectorSearch`, one per reader and table version; the indexes themselves:
store/ann.py):

* below ``vector_index.ann_min_rows`` chunks and without a vector index: an exact scan of
  every vector held in memory (one matrix product, ~7 ms per 100k chunks, where LanceDB's
  own flat scan takes ~140 ms). The matrix is loaded once per release view; a prefilter selects its
  rows through the scalar indexes;
* with a vector index (IVF_HNSW_SQ by default, or IVF_PQ): the index, its best
  ``refine_factor`` x k candidates re-ranked with the full vectors (the index's own are
  quantized: IVF_HNSW_SQ alone tops out near recall@10 0.94; 2 x k for IVF_HNSW_SQ by
  default, recall@10 1.00 at 100k chunks, where 3 x k read half as many vectors again for
  the same recall), plus LanceDB's flat scan of the rows added after the build (they are always
  found);
* a prefilter (ACL groups, path prefix, document ids) is applied *before* ranking. When it
  matches at most ``vector_index.filtered_exact_rows`` chunks, those chunks are ranked
  exactly (found through the scalar indexes, no ANN): a key that can read 1% of the index still gets
  its full top_k. Their vectors are read at the prefilter's first search and kept with the
  table version (up to :data:`SUBSET_CACHE_BYTES` of vectors for all prefilters together, the
  least recently used dropped first): the next searches of that key are a matrix product and one
  read of the k rows' columns by row id (p50 3.3-4.2 ms against 8.1-10.0 ms for LanceDB's
  flat scan over the same 1,000 rows at 100k chunks, 6.0-6.3 against 12.2-16.4 ms over 3,000
  rows at 300k; same runs, under load: README). The
  count of rows a prefilter matches is kept too. A larger filtered set goes through the ANN
  index with the filter as a prefilter, and should the index return fewer than k rows, an
  exact ranking of the filtered rows replaces its answer;
* every LanceDB query of a search (and the full-text and document reads of store/reader.py)
  is built and run on LanceDB's async table in one hop to its event loop
  (:func:`run_query`): the sync API makes about seven hops per query, reads the table schema
  several times and rebuilds the query in Python. The async handle and the loop are
  LanceDB internals of the pinned 0.40 series; where either is missing, the sync API runs
  the same query. ``ef`` is raised to ``refine_factor`` x k
  when a deep candidate list needs it (LanceDB refuses a smaller one);
* with a vector index, every chunk is held once the server serves the release
  (:class:`RowCache`, loaded off-request, up to ``vector_index.row_cache_mb``): its ids,
  source, title, places and flags (~150 bytes) and its vector as float16 (768 bytes at 384
  dimensions; cosine within ~1e-3) in memory, its text in a file beside the index
  (``vector_index.row_cache_text``). A search then asks LanceDB only for the index's
  ``refine_factor`` x k best row ids by its quantized distance (the text read with them
  would cost 0.9 ms at 100k chunks, 1.6-2 ms at 1M), ranks them by their exact cosine from
  memory (LanceDB's own re-rank reads the full vectors from disk) and takes every column of
  the k best from the cache; a full-text search asks for row ids and scores alike. At 1M
  chunks: vector p50 3.2-3.4 ms with the text file (3.6-4.4 ms in a slower hour), 5.4-6.2
  ms with the cache but the text read from LanceDB, 6.8-7.3 ms without the cache (README).
  Without a text file, the candidates' text is read with them. The cache of a new release
  of the same table is built on the served one's (an append-only arena shared by both): only
  the rows it adds are read (0.2 s at 1M chunks, against 6-9 s for a full read). Vector hits
  carry their similarity, not their vector, as without the cache; full-text hits carry their
  vector (float16, from memory). Until it is loaded, or where it does not fit, every column
  is read with the search;
* a table past the threshold without a vector index (a release from before the build, a
  rollback target, a release a purge rewrote) is searched in memory too up to
  :data:`EXACT_MAX_ROWS` chunks, past that by LanceDB's flat scan: slower, exact.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from store.ann import VECTOR_INDEX, AnnTuning, index_named
from store.lance_query import run_query, take_rows
from store.records import Candidate
from store.row_cache import RowCache, unit, unit_vectors
from store.schema import HIT_COLUMNS

log = logging.getLogger(__name__)

#: a table without a vector index is searched in memory up to this many rows (~300 MB of
#: vectors), past the threshold too (a release from before its build, a rollback target)
EXACT_MAX_ROWS = 200_000
#: what vector search returns of a row: its similarity stands for its vector
ROW_COLUMNS = [c for c in HIT_COLUMNS if c != "vector"]
#: with a row cache but no text file, the text is read with the index's candidates while
#: they are at most this many times k (IVF_HNSW_SQ's 2 x k); more (IVF_PQ's 50 x k) have
#: their k best's text read by row id after the ranking
TEXT_WITH_SEARCH = 4


#: matrix elements per matrix-vector product: below OpenBLAS's threshold for using a second
#: thread (460,800). On this 2-core machine shared with other work, a threaded product waits
#: for a time slice of the busy core: 12 ms for 3,000 x 384 under load, where one thread
#: takes 0.2 ms (and a 100k scan is no slower single-threaded when idle)
GEMV_ELEMENTS = 400_000


def similarities(
    matrix: npt.NDArray[np.float32], q: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """``matrix @ q``, in blocks of rows each computed on one thread (:data:`GEMV_ELEMENTS`)."""
    n, dim = matrix.shape
    rows = max(1, GEMV_ELEMENTS // max(dim, 1))
    q = np.asarray(q, dtype=np.float32)
    if n <= rows:
        return np.asarray(matrix @ q, dtype=np.float32)
    out = np.empty(n, dtype=np.float32)
    for start in range(0, n, rows):
        np.matmul(matrix[start : start + rows], q, out=out[start : start + rows])
    return out


@dataclass
class _Exact:
    """Every vector of one table version in memory, with the rows they belong to."""

    rows: Any  # pyarrow.Table of HIT_COLUMNS
    matrix: npt.NDArray[np.float32]
    rowids: npt.NDArray[np.uint64]
    order: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @classmethod
    def load(cls, table: Any) -> _Exact:
        data = table.search().select([*HIT_COLUMNS, "_rowid"]).limit(None).to_arrow()
        matrix = unit_vectors(data.column("vector"))
        rowids = data.column("_rowid").to_numpy().astype(np.uint64)
        return cls(data.drop(["_rowid", "vector"]), matrix, rowids, np.argsort(rowids))

    def positions(self, rowids: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        sorted_ids = self.rowids[self.order]
        at = np.searchsorted(sorted_ids, rowids)
        at = np.clip(at, 0, max(len(sorted_ids) - 1, 0))
        found = sorted_ids[at] == rowids if len(sorted_ids) else np.zeros(0, dtype=bool)
        return np.asarray(self.order[at[found]], dtype=np.int64)

    def search(
        self, vector: npt.NDArray[np.float32], limit: int, subset: npt.NDArray[np.int64] | None
    ) -> list[Candidate]:
        q = unit(vector)
        if subset is None:
            sims = similarities(self.matrix, q)
            index = np.arange(len(sims))
        else:
            sims = similarities(self.matrix[subset], q)
            index = subset
        if len(sims) == 0:
            return []
        k = min(limit, len(sims))
        top = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
        ranked = top[np.argsort(-sims[top], kind="stable")]
        picked = self.rows.take(index[ranked])
        return [
            Candidate.from_row(row, similarity=float(sim))
            for row, sim in zip(picked.to_pylist(), sims[ranked].tolist(), strict=True)
        ]


#: the filtered row sets (a prefilter's vectors) a :class:`VectorSearch` keeps in memory, in
#: bytes of vectors all together (100,000 rows of 384 dimensions); the least recently used
#: goes first
SUBSET_CACHE_BYTES = 160 * 2**20
#: the prefilters whose matching row count a :class:`VectorSearch` remembers
COUNT_CACHE = 256


@dataclass
class _Subset:
    """The vectors (normalized) and row ids of the rows one prefilter matches, in one table
    version: an ACL key's searches are ranked exactly over them without reading them again."""

    matrix: npt.NDArray[np.float32]
    rowids: npt.NDArray[np.uint64]


class VectorSearch:
    """Vector search over one version of the chunks table by the path that fits it (module
    docstring). Thread-safe; the in-memory matrix is loaded at the first query that needs
    it, a prefilter's rows at its first search (and kept, least recently used out first)."""

    def __init__(self, table: Any, tuning: AnnTuning) -> None:
        self.table = table
        self.tuning = tuning
        self.rows = int(table.count_rows())
        self.has_ann = index_named(table, VECTOR_INDEX) is not None
        self._exact: _Exact | None = None
        self._lock = threading.Lock()
        self._cache: RowCache | None = None
        self._cache_lock = threading.Lock()
        self._cache_tried = False
        self._subsets: OrderedDict[str, _Subset] = OrderedDict()
        self._subset_bytes = 0
        self._counts: OrderedDict[str, int] = OrderedDict()

    @property
    def path(self) -> str:
        if self.has_ann:
            return "ann"
        return "exact" if self.rows <= max(self.tuning.ann_min_rows, EXACT_MAX_ROWS) else "flat"

    @property
    def row_cache(self) -> RowCache | None:
        """The :class:`RowCache` once loaded (:meth:`load_row_cache`); None until then."""
        return self._cache

    def load_row_cache(self, handoff: list[RowCache] | None = None) -> RowCache | None:
        """Load the :class:`RowCache` of an ANN-indexed table (once; a second caller waits
        for the first). ``handoff``: a list holding the served release's cache, emptied
        here: the new cache is built on it where it can be, else read in full without it
        held (twice the memory otherwise). None: no vector index, ``row_cache_mb`` 0, or
        too big for it."""
        with self._cache_lock:
            if self._cache_tried or self.path != "ann":
                return self._cache
            self._cache_tried = True
            started = time.perf_counter()
            budget = self.tuning.row_cache_mb * 2**20
            previous = handoff.pop() if handoff else None
            cache = None
            if previous is not None and budget > 0:
                try:
                    cache = RowCache.update(previous, self.table, budget)
                except Exception as exc:  # read it in full instead
                    log.warning("cannot update the row cache: %s", exc)
            del previous
            try:
                if cache is None:
                    cache = RowCache.load(self.table, budget, self.tuning.row_cache_text)
            except Exception as exc:  # every column is read with the search instead
                log.warning("cannot load the row cache: %s", exc)
            if cache is not None:
                log.info(
                    "row cache: %d chunks, %d MiB (%d read) in %.2f s",
                    len(cache.rowids),
                    cache.nbytes // 2**20,
                    cache.rows_read,
                    time.perf_counter() - started,
                )
            self._cache = cache
            return cache

    def hydrate(
        self,
        cache: RowCache,
        rowids: list[int],
        texts: dict[int, str | None] | None = None,
        *,
        vectors: bool = False,
        at: npt.NDArray[np.int64] | None = None,
    ) -> dict[int, dict[str, Any]]:
        """The rows ``rowids`` (those that exist) by row id: their cached columns (with
        ``vectors``, their vector too) and their text (from ``texts`` when the search read
        it, else from the cache's text file, else by row id). ``at``: their places in the
        cache, where :meth:`RowCache.rank` found them."""
        if not rowids:
            return {}
        if texts is None and cache.has_text:  # every column from the cache
            return cache.rows_of(rowids, vectors=vectors, text=True, at=at)
        held = cache.rows_of(rowids, vectors=vectors, at=at)
        if texts is None:
            texts = {int(r["_rowid"]): r["text"] for r in self._take(rowids, ["text"]).to_pylist()}
        return {rid: {**row, "text": texts[rid]} for rid, row in held.items() if rid in texts}

    def exact(self) -> _Exact:
        with self._lock:
            if self._exact is None:
                self._exact = _Exact.load(self.table)
            return self._exact

    def search(
        self, vector: npt.NDArray[np.float32], limit: int, where: str | None
    ) -> list[Candidate]:
        if self.rows == 0 or limit < 1:
            return []
        path = self.path
        if path == "exact":
            subset = None
            if where:
                ids = self._filtered_rowids(where)
                subset = self.exact().positions(ids)
            return self.exact().search(vector, limit, subset)
        if path == "flat" or not where:
            return self._lance(vector, limit, where, ann=path == "ann")
        matching = self._count(where)
        if matching == 0:
            return []
        if matching <= self.tuning.filtered_exact_rows:
            return self._subset_search(vector, limit, where)
        found = self._lance(vector, limit, where, ann=True)
        if len(found) < min(limit, matching):  # the graph ran dry under the filter
            return self._lance(vector, limit, where, ann=False)
        return found

    def _count(self, where: str) -> int:
        """The rows ``where`` matches (remembered: the table version never changes)."""
        with self._lock:
            known = self._counts.get(where)
            if known is not None:
                self._counts.move_to_end(where)
                return known
        n = int(self.table.count_rows(where))
        with self._lock:
            self._counts[where] = n
            while len(self._counts) > COUNT_CACHE:
                self._counts.popitem(last=False)
        return n

    def _filtered_rowids(self, where: str) -> npt.NDArray[np.uint64]:
        data = self.table.search().where(where).select(["_rowid"]).limit(None).to_arrow()
        return np.asarray(data.column("_rowid").to_numpy(), dtype=np.uint64)

    def _subset(self, where: str) -> _Subset:
        """The vectors of the rows ``where`` matches, read once (through the scalar indexes;
        from the row cache when it is loaded: 0.06 s against 0.15 s for 10,000 rows of 1M)
        and kept while :data:`SUBSET_CACHE_BYTES` allows."""
        with self._lock:
            found = self._subsets.get(where)
            if found is not None:
                self._subsets.move_to_end(where)
                return found
        cache = self._cache
        if cache is not None:  # the row ids through the scalar indexes, the vectors from memory
            ids = self._filtered_rowids(where)
            pos, held = cache.held(ids)
            matrix = cache.matrix[pos].astype(np.float32)  # normalized already
            rowids = ids[held]
        else:
            data = (
                self.table.search()
                .where(where)
                .select(["vector"])
                .with_row_id(True)
                .limit(None)
                .to_arrow()
            )
            matrix = unit_vectors(data.column("vector"))
            rowids = np.asarray(data.column("_rowid").to_numpy(), dtype=np.uint64)
        sub = _Subset(matrix, rowids)
        with self._lock:
            if where not in self._subsets and sub.matrix.nbytes <= SUBSET_CACHE_BYTES:
                self._subsets[where] = sub
                self._subset_bytes += sub.matrix.nbytes
                while self._subset_bytes > SUBSET_CACHE_BYTES:
                    _, old = self._subsets.popitem(last=False)
                    self._subset_bytes -= old.matrix.nbytes
        return sub

    def _subset_search(
        self, vector: npt.NDArray[np.float32], limit: int, where: str
    ) -> list[Candidate]:
        """Exact ranking of the rows ``where`` matches (the vectors in memory), then the
        columns of the ``limit`` best read by row id."""
        sub = self._subset(where)
        if len(sub.rowids) == 0:
            return []
        sims = similarities(sub.matrix, unit(vector))
        k = min(limit, len(sims))
        top = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(len(sims))
        ranked = top[np.argsort(-sims[top], kind="stable")]
        ids = [int(i) for i in sub.rowids[ranked]]
        cache = self._cache
        if cache is not None:  # from the cache (the text from LanceDB without its file)
            rows = self.hydrate(cache, ids)
        else:
            rows = {int(r["_rowid"]): r for r in self._take(ids, ROW_COLUMNS).to_pylist()}
        return [
            Candidate.from_row(rows[i], similarity=float(s))
            for i, s in zip(ids, sims[ranked].tolist(), strict=True)
            if i in rows
        ]

    def _take(self, rowids: list[int], columns: list[str]) -> Any:
        """``columns`` (and ``_rowid``) of the rows ``rowids``, in any order."""
        return take_rows(self.table, rowids, columns)

    def _ef(self, limit: int) -> int:
        """HNSW's candidate list: ``ef``, and never fewer than the re-rank reads (LanceDB
        refuses an ef below refine x k)."""
        return max(self.tuning.ef, limit * self.tuning.refine)

    def _lance(
        self, vector: npt.NDArray[np.float32], limit: int, where: str | None, *, ann: bool
    ) -> list[Candidate]:
        vec = np.asarray(vector, dtype=np.float32)
        cache = self._cache
        tuning = self.tuning
        # with the row cache: the index's refine x k best by its own (quantized) distance,
        # with row ids only, ranked here by their exact cosine; else LanceDB re-ranks
        depth = limit * tuning.refine if cache is not None and ann else limit
        # without the cache's text file: the text with the search while the candidates are
        # few (a column read with the search costs a quarter of one read by row id after
        # it), else for the k best only by row id after the ranking
        with_text = cache is not None and not cache.has_text and depth <= TEXT_WITH_SEARCH * limit
        if cache is None:
            columns = [*ROW_COLUMNS, "_distance"]
        else:
            columns = ["text", "_distance"] if with_text else ["_distance"]

        def search_options(q: Any) -> Any:
            """The index options, alike on the async query and the sync search builder."""
            if not ann:
                return q.bypass_vector_index()
            q = q.nprobes(tuning.nprobes)
            if cache is None:
                q = q.refine_factor(tuning.refine)
            return q.ef(self._ef(limit)) if tuning.kind != "ivf_pq" else q

        def build(t: Any) -> Any:
            q = search_options(t.query().nearest_to(vec).column("vector").distance_type("cosine"))
            if where:
                q = q.where(where)  # a prefilter (the async API's default)
            if cache is not None:
                q = q.with_row_id()
            return q.select(columns).limit(depth)

        data = run_query(self.table, build)
        if data is None:
            s = search_options(
                self.table.search(vec, vector_column_name="vector").distance_type("cosine")
            )
            if where:
                s = s.where(where, prefilter=True)
            data = s.select(columns).with_row_id(cache is not None).limit(depth).to_arrow()
        if cache is None:
            return [Candidate.from_row(r, similarity=_similarity(r)) for r in data.to_pylist()]
        found = np.asarray(data.column("_rowid").to_numpy(), dtype=np.uint64)
        texts = (
            dict(zip(found.tolist(), data.column("text").to_pylist(), strict=True))
            if with_text
            else None
        )
        at: npt.NDArray[np.int64] | None = None
        if ann:
            ids, sims, at = cache.rank(vec, found, limit)
        else:  # LanceDB's flat scan is exact: its own float32 distances
            ids = found.tolist()
            sims = [1.0 - float(d) for d in data.column("_distance").to_pylist()]
        rows = self.hydrate(cache, ids, texts, at=at)
        return [
            Candidate.from_row(rows[rid], similarity=sim)
            for rid, sim in zip(ids, sims, strict=True)
            if rid in rows
        ]


def _similarity(row: dict[str, Any]) -> float | None:
    """Cosine similarity from LanceDB's cosine distance."""
    distance = row.get("_distance")
    return None if distance is None else 1.0 - float(distance)
