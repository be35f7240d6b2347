"""The chunks table's indexes: the ANN vector index, the scalar indexes of the filter columns,
and how vector search picks its path.

**Search** over these indexes (which path a query takes, the in-memory ranking of small
prefilters, one hop to LanceDB per query) is store/vector_search.py.

**Lifecycle** (:func:`upkeep` inside an ingest run; store/index_build.py for
``enclave index optimize`` and the background build an ingest run starts):

* scalar indexes (BTREE on ``doc_id`` and ``source``, LABEL_LIST on ``groups``) are built
  when missing and rebuilt when the rows added since pass ``vector_index.retrain_share``
  (seconds at a million chunks), inside the ingest run, so every candidate release carries
  them;
* the vector index is built once the table reaches ``vector_index.ann_min_rows`` and rebuilt
  when the rows added since its build pass ``vector_index.retrain_share`` (LanceDB 0.40's
  Python API has no incremental index update without compacting the table, which Enclave
  avoids: see store/maintain.py). With ``vector_index.background`` (the default) the build
  runs after the ingest run in its own process and never holds the writer lock while it
  builds: it builds on the head, then takes the lock for a moment to publish
  (:func:`store.index_build.optimize`).

Index builds and releases: a build is a new version of the chunks table, and a release is
pinned to its versions, so an index only reaches readers through a release. When the head
held exactly the live release's rows while the index was built (nothing written meanwhile),
the build (store/index_build.py) records a new release (same rows, same documents version,
now indexed) and promotes it under ``release.auto_promote``: the server switches to it like
to any release. When the head held a pending candidate, the candidate is moved to the
indexed version. When the head changed meanwhile, the index stays in the head and the next
candidate carries it.
Rolling back to a release without the index serves it by the flat or exact paths above.

**Table sets** (store/sets.py): the indexes live in the tables they index. A writer keeps the
indexes of the set it writes to; a build works on the head of the live release's set and
publishes a release of that set. A set built by ``enclave reindex`` gets its scalar
indexes during the run and its vector index from ``enclave index optimize`` once it is live.

**An index on object storage** (``store.uri = "s3://..."``): no index upkeep runs there (no
scalar or vector index is built, automatic or background), and ``enclave index optimize``
refuses with a usage error: the build lock is a local file lock and the build would write
index files the writers' cleanup on other hosts does not know about. Vector search on S3
takes the exact path (vectors in memory) or, past
:data:`store.vector_search.EXACT_MAX_ROWS`, LanceDB's flat scan.

The builds' orchestration (the writer lock, publishing a release, the background process)
is store/index_build.py, which imports the rest of store/; this module imports none of it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from store.registry import REGISTRY_DIR

if TYPE_CHECKING:
    from enclave.settings import VectorIndexSettings
    from store.location import IndexLocation

log = logging.getLogger(__name__)

VECTOR_INDEX = "vector_idx"
#: column -> (index name, LanceDB index type)
SCALAR_INDEXES = {
    "doc_id": ("doc_id_idx", "btree"),
    "source": ("source_idx", "btree"),
    "groups": ("groups_idx", "label_list"),
}
#: the documents table's: answers carry their documents' rows, fetched by id
DOCUMENT_INDEXES = {"doc_id": ("doc_id_idx", "btree")}
BUILD_LOCK = "index-build.lock"


@dataclass(frozen=True)
class AnnTuning:
    """The ``index`` settings the search and build paths need (store/ knows no Settings)."""

    ann_min_rows: int = 50_000
    kind: str = "ivf_hnsw_sq"
    ef: int = 100
    nprobes: int = 20
    refine_factor: int | None = None
    retrain_share: float = 0.1
    filtered_exact_rows: int = 20_000
    background: bool = True
    row_cache_mb: int = 1536
    row_cache_text: bool = True

    @property
    def refine(self) -> int:
        """The re-rank factor: the quantized index's candidates, times k, re-ranked with
        the full vectors (an IVF_HNSW_SQ index alone tops out near recall@10 0.94)."""
        if self.refine_factor:
            return self.refine_factor
        return 50 if self.kind == "ivf_pq" else 2

    @classmethod
    def from_settings(cls, s: VectorIndexSettings) -> AnnTuning:
        return cls(
            ann_min_rows=s.ann_min_rows,
            kind=s.kind,
            ef=s.ef,
            nprobes=s.nprobes,
            refine_factor=s.refine_factor,
            retrain_share=s.retrain_share,
            filtered_exact_rows=s.filtered_exact_rows,
            background=s.background,
            row_cache_mb=s.row_cache_mb,
            row_cache_text=s.row_cache_text,
        )


DEFAULT_TUNING = AnnTuning()


# ----------------------------------------------------------------------------- state
def index_named(table: Any, name: str) -> Any | None:
    return next((i for i in table.list_indices() if getattr(i, "name", "") == name), None)


def unindexed_rows(table: Any, name: str) -> int | None:
    """Rows the index ``name`` does not cover (None: no such index)."""
    if index_named(table, name) is None:
        return None
    stats = table.index_stats(name)
    return int(getattr(stats, "num_unindexed_rows", 0) or 0)


def vector_index_due(table: Any, tuning: AnnTuning) -> str | None:
    """``"build"`` (past the threshold without an index), ``"retrain"`` (too many rows
    added since the build) or None."""
    total = int(table.count_rows())
    if total < tuning.ann_min_rows:
        return None
    left = unindexed_rows(table, VECTOR_INDEX)
    if left is None:
        return "build"
    return "retrain" if left > tuning.retrain_share * total else None


def index_status(table: Any | None, tuning: AnnTuning) -> dict[str, Any]:
    """What ``enclave index status`` shows for one table version."""
    if table is None:
        return {"chunks": 0, "indexes": {}, "vector_index_due": None}
    out: dict[str, Any] = {"chunks": int(table.count_rows()), "version": int(table.version)}
    indexes: dict[str, Any] = {}
    for idx in table.list_indices():
        stats = table.index_stats(idx.name)
        indexes[idx.name] = {
            "type": str(getattr(stats, "index_type", idx.index_type)),
            "columns": list(idx.columns),
            "indexed": int(getattr(stats, "num_indexed_rows", 0) or 0),
            "unindexed": int(getattr(stats, "num_unindexed_rows", 0) or 0),
        }
    out["indexes"] = indexes
    out["vector_index_due"] = vector_index_due(table, tuning)
    return out


# ----------------------------------------------------------------------------- builds
def build_vector_index(table: Any, tuning: AnnTuning) -> float:
    """Build (or rebuild) the vector index of ``table``'s latest version: one commit.
    Returns the seconds it took."""
    from lancedb.index import HnswSq, IvfPq

    started = time.perf_counter()
    config: Any
    if tuning.kind == "ivf_pq":
        dim = int(table.schema.field("vector").type.list_size)
        sub = next((s for s in (dim // 8, dim // 4, dim // 2, 1) if s and dim % s == 0), 1)
        config = IvfPq(distance_type="cosine", num_sub_vectors=sub)
    else:
        config = HnswSq(distance_type="cosine")
    table.create_index("vector", config=config, name=VECTOR_INDEX, replace=True)
    return time.perf_counter() - started


def refresh_scalar_indexes(
    table: Any, retrain_share: float, columns: dict[str, tuple[str, str]] | None = None
) -> list[str]:
    """Build the filter columns' indexes (``columns``: the chunks table's by default) when
    missing, rebuild them once the rows they do not cover pass ``retrain_share``; returns the
    names (re)built."""
    from lancedb.index import BTree, LabelList

    total = int(table.count_rows())
    if total == 0:
        return []
    built: list[str] = []
    for column, (name, kind) in (SCALAR_INDEXES if columns is None else columns).items():
        left = unindexed_rows(table, name)
        if left is not None and left <= retrain_share * total:
            continue
        config = LabelList() if kind == "label_list" else BTree()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            table.create_index(column, config=config, name=name, replace=True)
        built.append(name)
    return built


def forget_indexed_values(
    table: Any, columns: dict[str, tuple[str, str]] | None = None, *, rebuild: bool = True
) -> None:
    """After rows were purged: the scalar indexes are rebuilt (``rebuild``; on an index on
    object storage they are only dropped) and the vector index dropped (both hold values of
    the removed rows: paths, ids, quantized vectors). The table is then searched exactly or
    by a flat scan until ``enclave index optimize`` builds its vector index again."""
    columns = SCALAR_INDEXES if columns is None else columns
    if index_named(table, VECTOR_INDEX) is not None:
        table.drop_index(VECTOR_INDEX)
    for _column, (name, _kind) in columns.items():
        if index_named(table, name) is not None:
            table.drop_index(name)
    if rebuild:
        refresh_scalar_indexes(table, 1.0, columns)


def upkeep(table: Any, tuning: AnnTuning) -> dict[str, Any]:
    """The index upkeep inside an ingest run (holding the writer lock, before the candidate is
    recorded): scalar indexes always; the vector index too unless ``tuning.background``
    (then :func:`vector_index_due` tells the run to start a build after it:
    store/index_build.py)."""
    out: dict[str, Any] = {"scalar_built": refresh_scalar_indexes(table, tuning.retrain_share)}
    due = vector_index_due(table, tuning)
    out["vector_due"] = due
    if due and not tuning.background:
        out["vector_build_s"] = round(build_vector_index(table, tuning), 3)
        out["vector_due"] = None
    return out


class BuildLock:
    """One vector index build at a time per index (``_enclave/index-build.lock``); a cleanup
    (store/maintain.py ``prune``) leaves files alone while a build holds it."""

    #: locks this process holds for something else than a build (a purge): path -> why
    _others: ClassVar[dict[str, str]] = {}

    def __init__(self, lance_dir: IndexLocation | Path | str, purpose: str = "build") -> None:
        self.path = _local_root(lance_dir) / REGISTRY_DIR / BUILD_LOCK
        self.purpose = purpose
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {self.purpose}\n".encode(), 0)
        self._fd = fd
        if self.purpose != "build":
            BuildLock._others[str(self.path.resolve())] = self.purpose
        return True

    def acquire(self, wait_s: float) -> bool:
        """Wait up to ``wait_s`` for a running build to finish; returns whether acquired."""
        deadline = time.monotonic() + wait_s
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)
        return True

    def release(self) -> None:
        if self._fd is not None:
            BuildLock._others.pop(str(self.path.resolve()), None)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @staticmethod
    def held(lance_dir: IndexLocation | Path | str) -> bool:
        """Whether a build (of any process) holds the lock now."""
        probe = BuildLock(lance_dir)
        if not probe.path.exists() or str(probe.path.resolve()) in BuildLock._others:
            return False
        if probe.try_acquire():
            probe.release()
            return False
        return True


def _local_root(where: IndexLocation | Path | str) -> Path:
    """The index's host-local folder (the index folder itself for a local index)."""
    from store.location import IndexLocation

    return where.local_root if isinstance(where, IndexLocation) else Path(where)


def require_local_index(location: IndexLocation, what: str) -> None:
    """Vector index builds run on a local index only (module docstring)."""
    if location.is_remote:
        from enclave.errors import UsageError

        raise UsageError(
            f"{what} is not available on an index on object storage ({location.uri}): "
            "Enclave builds the vector and filter indexes on a local index only. Vector "
            "search there is exact (in memory) or a flat scan (docs/architecture.md)."
        )
