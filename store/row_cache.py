"""The row cache: every chunk of one table version, for the server's searches over an
ANN-indexed release (store/vector_search.py uses it; docs/architecture.md, "Row cache"): all
but the text in memory, the text in an unnamed file beside the index. Its rows live in an
append-only arena shared by the caches of successive versions of one table: a new release's
cache reads only the rows it adds."""

from __future__ import annotations

import logging
import os
import tempfile
import threading
import weakref
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from store.lance_query import run_query, stream_query, take_rows
from store.schema import HIT_COLUMNS

log = logging.getLogger(__name__)

#: what :class:`RowCache` holds in memory of every row: all but the text (in its text file)
#: and the vector
CACHED_COLUMNS = [c for c in HIT_COLUMNS if c not in ("text", "vector")]
#: rows sampled to estimate a :class:`RowCache`'s size before it is loaded
CACHE_SAMPLE_ROWS = 2_000
#: a new version's :class:`RowCache` is read in full, not built on an earlier version's
#: arena, when the rows the arena holds that the new version lacks (deleted, rewritten by a
#: compaction) would pass this share of the new version's rows
GARBAGE_MAX = 0.5
#: pieces an arena grows to (one per version that added rows) before a full read makes one
#: again: a search takes its hits' columns from each piece they are in
ARENA_TABLES_MAX = 64
#: room for rows added by later versions, as a share of the rows a full read holds
ARENA_ROOM = 0.25
#: rows per batch while a :class:`RowCache` loads (24 MiB of float32 vectors of 384 dimensions)
LOAD_BATCH_ROWS = 16_384


def unit_vectors(column: Any) -> npt.NDArray[np.float32]:
    """An Arrow column of fixed-size vectors as a float32 matrix of unit rows (a zero row
    stays zero)."""
    if hasattr(column, "combine_chunks"):  # a ChunkedArray: one array
        column = column.combine_chunks()
    dim = column.type.list_size
    flat = np.asarray(column.flatten().to_numpy(zero_copy_only=False), dtype=np.float32)
    matrix = flat.reshape(-1, dim)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.asarray(matrix / np.where(norms == 0, 1.0, norms), dtype=np.float32)


def unit(vector: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
    """``vector`` as float32 of length 1 (a zero vector stays zero)."""
    q = np.asarray(vector, dtype=np.float32)
    return np.asarray(q / (float(np.linalg.norm(q)) or 1.0), dtype=np.float32)


class TextFile:
    """The texts of an arena's rows in an unnamed temporary file (removed by the system when
    the file is closed or the process ends; nothing is left behind), each row's place and
    length in memory (12 bytes a row). Reading ten texts is ten ``pread`` calls served by the
    system's page cache (~0.02 ms), where reading them with LanceDB's search costs 0.9 ms at
    100k chunks and 1.6-2 ms at 1M: the column read is most of a search. The file holds only
    text the index holds already, so it takes the disk room of the text, not of the memory
    budget; the page cache keeps its hot part and drops the rest under memory pressure.
    Appends and reads may run at once: a row is read only after its cache was built, and
    written text never changes."""

    def __init__(self, capacity: int, where: str | None) -> None:
        self.file: IO[bytes] = _unnamed_file(where)
        self.fd = self.file.fileno()
        weakref.finalize(self, self.file.close)  # with the last cache of its arena
        # untouched pages of the zeroed offsets take no memory until written
        self.offsets = np.zeros(capacity, dtype=np.int64)
        self.lengths = np.full(capacity, -1, dtype=np.int32)  # -1: no text (null)
        self.size = 0

    def write(self, positions: npt.NDArray[np.int64], column: Any) -> None:
        """Append the texts of the Arrow string ``column`` of the rows at ``positions``."""
        for chunk in _chunks(column):
            n = len(chunk)
            if n == 0:
                continue
            arr = chunk.cast(pa.large_string())
            ends = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
            first, last = int(ends[0]), int(ends[-1])
            data = arr.buffers()[2]
            view, at_byte = memoryview(data)[first:last], self.size
            while len(view):  # a regular file takes it all at once; a short write goes on
                written = os.pwrite(self.fd, view, at_byte)
                view, at_byte = view[written:], at_byte + written
            lengths = np.diff(ends).astype(np.int32)
            if arr.null_count:
                lengths[np.asarray(arr.is_null().to_numpy(zero_copy_only=False))] = -1
            at, positions = positions[:n], positions[n:]
            self.offsets[at] = self.size + ends[:-1] - first
            self.lengths[at] = lengths
            self.size += last - first

    def read(self, positions: npt.NDArray[np.int64]) -> list[str | None]:
        """The texts of the rows at ``positions``."""
        out: list[str | None] = []
        for offset, length in zip(
            self.offsets[positions].tolist(), self.lengths[positions].tolist(), strict=True
        ):
            if length < 0:
                out.append(None)
            else:
                out.append(os.pread(self.fd, length, offset).decode("utf-8") if length else "")
        return out

    def nbytes(self) -> int:
        """Memory (the places and lengths; the text is on disk)."""
        return int(self.offsets.nbytes + self.lengths.nbytes)


class _Arena:
    """Append-only storage of the cached columns, vectors and texts of one table's rows,
    shared by the :class:`RowCache` of successive versions: a new version appends the rows it
    adds and maps its row ids to positions here; nothing written is ever changed, so the
    caches of older versions stay valid while a newer one appends."""

    def __init__(self, capacity: int, dim: int, text: TextFile | None) -> None:
        # untouched rows of a zeroed matrix take no memory until written
        self.matrix = np.zeros((capacity, dim), dtype=np.float16)
        self.tables: list[Any] = []  # pyarrow.Tables of CACHED_COLUMNS, positions in order
        self.text = text  # None: the texts are read from LanceDB with each search
        self.used = 0
        self.lock = threading.Lock()

    @property
    def room(self) -> int:
        return len(self.matrix) - self.used

    def append(self, rows: Any, vectors: npt.NDArray[np.float32], texts: Any) -> int:
        """Store ``rows``, their unit ``vectors`` and their ``texts`` (an Arrow string
        column); their first position."""
        with self.lock:
            start = self.used
            if len(rows) > self.room:
                raise ValueError("the row cache's arena is full")
            self.matrix[start : start + len(rows)] = vectors
            if self.text is not None:
                self.text.write(np.arange(start, start + len(rows), dtype=np.int64), texts)
            self.tables.append(rows)
            self.used += len(rows)
            return start

    def nbytes(self) -> int:
        text = self.text.nbytes() if self.text is not None else 0
        return int(self.used * self.matrix.shape[1] * 2 + sum(t.nbytes for t in self.tables) + text)


class RowCache:
    """Every row of one table version: :data:`CACHED_COLUMNS` and the vector (normalized,
    float16: half the memory, cosine within ~1e-3) in memory, the text in a
    :class:`TextFile`. A search asks LanceDB for the index's candidates' row ids only, ranks
    them by their exact cosine here (in place of LanceDB's re-rank, which reads the full
    vectors from disk) and takes every column of the rows it returns from here. Where no text
    file could be made, the search reads the text with the candidates (:attr:`has_text`)."""

    def __init__(
        self,
        arena: _Arena,
        rowids: npt.NDArray[np.uint64],
        places: npt.NDArray[np.int64],
        uri: str | None = None,
    ) -> None:
        self.arena = arena
        self.matrix = arena.matrix
        # the arena's tables as they are now (a newer version may append meanwhile), each in
        # one piece: a take over a table of several pieces copies whole columns first
        self.tables = list(arena.tables)
        self.starts = np.cumsum([0, *(len(t) for t in self.tables)])
        self.rowids = rowids
        self.uri = uri  # the table's: a later version's cache may build on this one's arena
        order = np.argsort(rowids, kind="stable")
        self.sorted_ids = rowids[order]
        self.sorted_places = places[order]  # arena positions, in the order of sorted_ids
        self.nbytes = arena.nbytes() + int(3 * rowids.nbytes)
        #: rows read from disk to build this cache (the rest were in the arena already)
        self.rows_read = len(rowids)

    @classmethod
    def load(cls, table: Any, max_bytes: int, text: bool = True) -> RowCache | None:
        """The cache of ``table`` read in full (with ``text``, its texts in a
        :class:`TextFile`), or None when its estimated size passes ``max_bytes``."""
        if max_bytes <= 0:
            return None
        uri = _table_uri(table)
        total = int(table.count_rows())
        sample = table.search().select(CACHED_COLUMNS).limit(CACHE_SAMPLE_ROWS).to_arrow()
        dim = int(table.schema.field("vector").type.list_size)
        per_row = sample.nbytes / max(len(sample), 1) + 2 * dim + 24
        if per_row * total > max_bytes:
            log.info(
                "row cache not held: ~%d MiB for %d chunks passes vector_index.row_cache_mb",
                per_row * total / 2**20,
                total,
            )
            return None
        # two passes: the small columns, then the vectors a batch at a time into the arena
        # (a batch kept for its small columns would keep its vectors' memory too)
        data = table.search().select(CACHED_COLUMNS).with_row_id(True).limit(None).to_arrow()
        rowids = np.asarray(data.column("_rowid").to_numpy(), dtype=np.uint64)
        n = len(rowids)
        capacity = n + int(n * ARENA_ROOM) + 1_024
        arena = _Arena(capacity, dim, _text_file(capacity, uri) if text else None)
        arena.tables.append(data.drop(["_rowid"]).combine_chunks())
        arena.used = n
        cache = cls(arena, rowids, np.arange(n, dtype=np.int64), uri)
        filled = 0
        columns = ["vector", "text"] if arena.text is not None else ["vector"]
        batches = stream_query(
            table, lambda t: t.query().select(columns).with_row_id(), LOAD_BATCH_ROWS
        )
        if batches is None:  # the sync API (it reads the whole result first)
            query = table.search().select(columns).with_row_id(True).limit(None)
            batches = iter(query.to_batches(LOAD_BATCH_ROWS))
        for batch in batches:
            pos, held = cache.positions([int(r) for r in batch.column("_rowid").to_pylist()])
            if len(held) != len(batch):  # the version is fixed: never
                return None
            arena.matrix[pos] = unit_vectors(batch.column("vector"))
            if arena.text is not None:
                try:
                    arena.text.write(pos, batch.column("text"))
                except OSError as exc:  # a full disk: the cache without it (no one shares it yet)
                    log.warning("row cache without its text file (read with each search): %s", exc)
                    arena.text.file.close()
                    arena.text = None
            filled += len(batch)
        del batches
        _release_freed_memory()
        if filled != n or cache.nbytes > max_bytes:
            return None
        return cache

    @classmethod
    def update(cls, previous: RowCache, table: Any, max_bytes: int) -> RowCache | None:
        """The cache of ``table``, a later version of ``previous``'s table, on
        ``previous``'s arena: the rows already there, and the rows added since read by row id
        and appended (a row id names the same row in every version of a table: written rows
        never change, an edit deletes a row and appends one, a compaction writes new row
        ids). None when the table is another one, or the arena has no room for the new rows
        or would hold too many rows this version lacks (then read it in full)."""
        uri = _table_uri(table)
        dim = int(table.schema.field("vector").type.list_size)
        if uri is None or uri != previous.uri or dim != previous.matrix.shape[1]:
            return None
        ids = run_query(table, lambda t: t.query().select([]).with_row_id())
        if ids is None:
            ids = table.search().select([]).with_row_id(True).limit(None).to_arrow()
        rowids = np.asarray(ids.column("_rowid").to_numpy(), dtype=np.uint64)
        places, held = previous.held(rowids)
        new = rowids[~held]
        arena = previous.arena
        garbage = arena.used + len(new) - len(rowids)
        if len(new) > arena.room or garbage > GARBAGE_MAX * len(rowids):
            return None
        if new.size and len(arena.tables) >= ARENA_TABLES_MAX:
            return None
        added: list[npt.NDArray[np.int64]] = []
        columns = ["vector", "text"] if arena.text is not None else ["vector"]
        for start in range(0, len(new), LOAD_BATCH_ROWS):
            some = [int(r) for r in new[start : start + LOAD_BATCH_ROWS]]
            # the small columns and the vectors in two reads: a result kept for its small
            # columns would keep the memory of its vectors too
            rows = take_rows(table, some, CACHED_COLUMNS)
            vecs = take_rows(table, some, columns)
            if len(rows) != len(some) or len(vecs) != len(some):
                return None
            got = np.asarray(rows.column("_rowid").to_numpy(), dtype=np.uint64)
            order = np.argsort(np.asarray(vecs.column("_rowid").to_numpy(), dtype=np.uint64))
            align = order[np.argsort(np.argsort(got))]  # vecs' row for each of rows' rows
            vectors = unit_vectors(vecs.column("vector"))[align]
            texts = vecs.column("text").take(pa.array(align)) if arena.text is not None else None
            kept = rows.select(CACHED_COLUMNS).cast(arena.tables[0].schema).combine_chunks()
            at = arena.append(kept, vectors, texts)
            new[start : start + len(some)] = got  # in the order appended
            added.append(np.arange(at, at + len(some), dtype=np.int64))
        cache = cls(
            arena,
            np.concatenate([rowids[held], new]),
            np.concatenate([places, *added]),
            previous.uri,
        )
        cache.rows_read = len(new)
        return cache if cache.nbytes <= max_bytes else None

    def held(
        self, rowids: npt.NDArray[np.uint64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """Arena positions of the held rows among ``rowids``, and which of them are held."""
        if len(rowids) == 0 or len(self.rowids) == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(len(rowids), dtype=bool)
        at = np.minimum(np.searchsorted(self.sorted_ids, rowids), len(self.sorted_ids) - 1)
        held = self.sorted_ids[at] == rowids
        return np.asarray(self.sorted_places[at[held]], dtype=np.int64), held

    def positions(self, rowids: list[int]) -> tuple[npt.NDArray[np.int64], list[int]]:
        """The rows of ``rowids`` that are held (their arena positions, and those row ids)."""
        want = np.asarray(rowids, dtype=np.uint64)
        pos, held = self.held(want)
        return pos, want[held].tolist()

    def rows_of(
        self,
        rowids: list[int],
        vectors: bool = False,
        text: bool = False,
        at: npt.NDArray[np.int64] | None = None,
    ) -> dict[int, dict[str, Any]]:
        """The cached columns of ``rowids`` (those held) by row id; with ``vectors``, each
        row's ``vector`` too (normalized); with ``text``, its ``text`` where the cache holds
        the texts (:attr:`has_text`). ``at``: the rows' arena positions where they are known
        (from :meth:`rank`: every row held)."""
        if at is None:
            pos, held = self.positions(rowids)
        else:
            pos, held = at, rowids
        if not held:
            return {}
        if len(self.tables) == 1:  # read in full: one piece
            rows: list[dict[str, Any]] = self.tables[0].take(pos).to_pylist()
        else:
            rows = [{} for _ in held]
            which = np.searchsorted(self.starts, pos, side="right") - 1
            for t in np.unique(which).tolist():  # one take from each table the rows are in
                here = np.flatnonzero(which == t)
                local = pos[here] - self.starts[t]
                taken = self.tables[t].take(local).to_pylist()
                for i, row in zip(here.tolist(), taken, strict=True):
                    rows[i] = row
        if vectors:
            for row, vec in zip(rows, self.matrix[pos].astype(np.float32), strict=True):
                row["vector"] = vec
        if text and self.arena.text is not None:
            for row, t in zip(rows, self.arena.text.read(pos), strict=True):
                row["text"] = t
        return dict(zip(held, rows, strict=True))

    @property
    def has_text(self) -> bool:
        """Whether the rows' texts are held (in the arena's :class:`TextFile`)."""
        return self.arena.text is not None

    @property
    def text_bytes(self) -> int:
        """Disk bytes of the texts held (of every version sharing the arena)."""
        return self.arena.text.size if self.arena.text is not None else 0

    def texts_of(self, rowids: list[int]) -> dict[int, str | None] | None:
        """The texts of ``rowids`` (those held) by row id; None when no text is held."""
        text = self.arena.text
        if text is None:
            return None
        pos, held = self.positions(rowids)
        return dict(zip(held, text.read(pos), strict=True))

    def rank(
        self, vector: npt.NDArray[np.float32], rowids: npt.NDArray[np.uint64], limit: int
    ) -> tuple[list[int], list[float], npt.NDArray[np.int64]]:
        """The ``limit`` of ``rowids`` (those held) closest to ``vector`` by cosine, best
        first: their row ids, cosines and arena positions (for :meth:`rows_of`)."""
        want = np.asarray(rowids, dtype=np.uint64)
        pos, held = self.held(want)
        if len(pos) == 0:
            return [], [], pos
        sims = self.matrix[pos].astype(np.float32) @ unit(vector)
        best = np.argsort(-sims, kind="stable")[:limit]
        return want[held][best].tolist(), sims[best].tolist(), pos[best]


def _chunks(column: Any) -> list[Any]:
    """The arrays of an Arrow column (a ChunkedArray's chunks, or the array itself)."""
    return list(column.chunks) if hasattr(column, "chunks") else [column]


def _unnamed_file(where: str | None) -> IO[bytes]:
    """A temporary file without a name (the system removes it when it is closed or the
    process ends) in ``where``, else in the system's temporary directory (said in the log:
    where that is a memory file system, the text takes memory)."""
    try:
        return tempfile.TemporaryFile(buffering=0, dir=where, prefix=".enclave-text-")
    except OSError as exc:
        if where is None:
            raise
        log.warning(
            "row cache text file in %s, not beside the index (%s)", tempfile.gettempdir(), exc
        )
        return tempfile.TemporaryFile(buffering=0, prefix="enclave-text-")


def _text_file(capacity: int, uri: str | None) -> TextFile | None:
    """A :class:`TextFile` beside the index of the table at ``uri`` (on its disk, which holds
    that text already), or None when none can be made (the texts are read with the search)."""
    try:
        where = None
        if uri is not None and "://" not in uri and Path(uri).parent.is_dir():
            where = str(Path(uri).parent)
        return TextFile(capacity, where)
    except OSError as exc:
        log.warning("row cache without its text file (read with each search): %s", exc)
        return None


def _table_uri(table: Any) -> str | None:
    uri = getattr(table, "uri", None)
    return uri if isinstance(uri, str) else None


def _release_freed_memory() -> None:
    """Hand the memory a large read freed back to the system (glibc keeps it otherwise:
    ~300 MB after the vectors of 1M chunks were read)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: its allocator decides
        pass
