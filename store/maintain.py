"""Keeping the index small without rewriting what releases share.

LanceDB's ``optimize()`` compacts, updates indices and removes old versions in one call. Its
compaction merges every run of small fragments (below a million rows, so every fragment of an
Enclave index) that the same indices cover, which rewrites the whole chunks table at nearly
every ingest run. Each retained release would then pin its own full copy of the data: five
rollback targets, six copies. Enclave therefore never lets LanceDB compact the index, and
keeps its files itself:

* :func:`tidy_table` rewrites only what needs it: a fragment whose rows are mostly deleted
  (its live rows go to a new fragment and the old fragment leaves the version), and, once a
  table has more than ``max_fragments`` fragments, its smallest ones together. Fragments
  nobody touched stay shared by every release that has them. The releases retained before a
  rewrite keep the old fragment's file until they expire: with ``release.keep = 5`` and 5%
  of the documents changing per run, the index settles near twice the size of one release
  (docs/releases.md has the measured figures).
* :func:`refresh_fts` keeps the full-text index: built when missing, rebuilt when the rows
  it does not cover pass ``rebuild_share`` of the table (LanceDB searches uncovered rows by a
  flat scan meanwhile, so results stay complete).
* the scalar indexes of the filter columns and the vector index (store/ann.py
  :func:`~store.ann.upkeep`), in the same step; not on an index on object storage.
* :func:`prune` removes every version older than the oldest tagged one: the head is tagged,
  every row of the latest version is deleted (a commit that drops whole fragments and writes
  nothing), ``optimize()`` runs on that empty version (nothing to compact or index, only the
  cleanup), and the head is restored. A marker file (``_enclave/prune.json``) names the head
  meanwhile; a writer killed half way has it restored by the next one (:func:`recover`).
  While a vector index build runs (store/ann.py, outside the writer lock) no cleanup runs:
  its files belong to no version until it commits.

Only the writer runs these (holding the writer lock, store/lock.py).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from store.ann import AnnTuning
    from store.location import IndexLocation
    from store.registry import Registry


class Store(Protocol):
    """What upkeep needs of the writer's head (``store.db.Store``, which calls this module:
    named here by its methods so that the two do not import each other)."""

    tables: str | None
    root: IndexLocation
    location: IndexLocation

    def chunks_table(self, *, create: bool = False) -> Any | None: ...
    def documents_table(self) -> Any: ...
    def existing_tables(self) -> list[Any]: ...
    def head_versions(self) -> dict[str, int | None]: ...
    def restore(self, versions: Mapping[str, int | None]) -> None: ...
    def tag(self, name: str, versions: Mapping[str, int | None]) -> None: ...
    def untag(self, name: str) -> None: ...


PRUNE_FILE = "prune.json"
HEAD_TAG = "prune-head"
#: a fragment with more than this share of its rows deleted is rewritten
MAX_DELETED_SHARE = 0.5
#: past this many fragments, the smallest ones are merged into one
MAX_FRAGMENTS = 64
#: the full-text index is rebuilt once this share of the rows is not covered by it
FTS_REBUILD_SHARE = 0.2


def fragment_rows(table: Any, where: str | None = None) -> dict[int, tuple[int, int]]:
    """fragment id -> (live rows, physical rows as far as the live ones tell: the highest
    live offset + 1)."""
    query = table.search()
    if where:
        query = query.where(where)
    addrs = query.select(["_rowaddr"]).limit(None).to_arrow().column("_rowaddr").to_numpy()
    if len(addrs) == 0:
        return {}
    addrs = addrs.astype(np.uint64)
    frags = (addrs >> np.uint64(32)).astype(np.int64)
    offsets = (addrs & np.uint64(0xFFFFFFFF)).astype(np.int64)
    out: dict[int, tuple[int, int]] = {}
    for frag in np.unique(frags):
        mask = frags == frag
        out[int(frag)] = (int(mask.sum()), int(offsets[mask].max()) + 1)
    return out


def _ranges(fragments: Iterable[int]) -> str:
    return " OR ".join(
        f"(_rowaddr >= {f << 32} AND _rowaddr < {(f + 1) << 32})" for f in sorted(fragments)
    )


def rewrite_fragments(table: Any, fragments: Iterable[int], exclude: str | None = None) -> int:
    """Move the live rows of ``fragments`` (but those matching ``exclude``) to a new
    fragment, then delete every row of the old ones, which drops them (and, once no kept
    version references them, their files). Returns the rows moved."""
    frags = sorted(set(fragments))
    if not frags:
        return 0
    ranges = _ranges(frags)
    where = f"({ranges}) AND NOT ({exclude})" if exclude else ranges
    keep = table.search().where(where).limit(None).to_arrow()
    if keep.num_rows:
        schema = table.schema
        table.add(keep.select(schema.names).cast(schema))
    table.delete(ranges)
    return int(keep.num_rows)


def tidy_table(
    table: Any, *, max_fragments: int | None = None, max_deleted: float | None = None
) -> int:
    """Rewrite mostly-deleted fragments, and the small ones once there are too many.
    Returns how many fragments were rewritten."""
    max_fragments = MAX_FRAGMENTS if max_fragments is None else max_fragments
    max_deleted = MAX_DELETED_SHARE if max_deleted is None else max_deleted
    rows = fragment_rows(table)
    chosen = {f for f, (live, phys) in rows.items() if phys and 1 - live / phys > max_deleted}
    rest = {f: v for f, v in rows.items() if f not in chosen}
    if len(rest) > max_fragments:  # merge the smallest half: a few rows each, rarely
        small = sorted(rest, key=lambda f: rest[f][0])[: len(rest) // 2]
        if len(small) >= 2:
            chosen.update(small)
    if chosen:
        rewrite_fragments(table, chosen)
    return len(chosen)


def refresh_fts(table: Any, rebuild_share: float = FTS_REBUILD_SHARE) -> bool:
    """Build the full-text index when missing or when too many rows are not covered;
    returns whether it was (re)built."""
    total = int(table.count_rows())
    if total == 0:
        return False
    index = next((i for i in table.list_indices() if getattr(i, "name", "") == "text_idx"), None)
    if index is not None:
        uncovered = int(getattr(index, "num_unindexed_rows", 0) or 0)
        if uncovered <= rebuild_share * total:
            return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        table.create_fts_index("text", use_tantivy=False, replace=True)
    return True


def prune(store: Store, registry: Registry) -> None:
    """Remove every version older than the oldest tagged one, compacting nothing (module
    docstring)."""
    from store.ann import BuildLock

    if BuildLock.held(store.root):
        return  # a vector index build writes files no version names yet: clean up next time
    head = store.head_versions()
    store.tag(HEAD_TAG, head)
    marker = {"head": head, "tables": store.tables}
    registry.files.write(PRUNE_FILE, json.dumps(marker).encode())
    for table in store.existing_tables():
        table.delete("true")  # whole fragments leave the latest version: nothing to compact
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            for margin in (PRUNE_MARGIN, timedelta(seconds=2)):
                try:
                    table.optimize(
                        cleanup_older_than=prune_age(table, margin), delete_unverified=True
                    )
                    break
                except RuntimeError as exc:
                    if "tagged" not in str(exc):
                        raise
    store.restore(head)
    registry.files.delete(PRUNE_FILE)
    store.untag(HEAD_TAG)


def recover(store: Store, registry: Registry) -> bool:
    """Restore the head a killed :func:`prune` left empty; returns whether it did."""
    data = registry.files.read(PRUNE_FILE)
    if data is None:
        return False
    marker = json.loads(data)
    if marker.get("tables") != store.tables:
        return False  # another table set's prune: its own writer recovers it
    head = {k: (None if v is None else int(v)) for k, v in marker["head"].items()}
    store.restore(head)
    registry.files.delete(PRUNE_FILE)
    store.untag(HEAD_TAG)
    return True


def compact(store: Store, registry: Registry, tuning: AnnTuning | None = None) -> dict[str, Any]:
    """Tidy both tables, keep the full-text index and the other indexes (store/ann.py
    :func:`~store.ann.upkeep`; module docstring)."""
    from store.ann import DEFAULT_TUNING, DOCUMENT_INDEXES, refresh_scalar_indexes, upkeep

    recover(store, registry)
    rewritten = 0
    for table in store.existing_tables():
        rewritten += tidy_table(table)
    chunks = store.chunks_table()
    rebuilt = int(chunks is not None and refresh_fts(chunks))
    out: dict[str, Any] = {"fragments_rewritten": rewritten, "fts_rebuilt": rebuilt}
    if store.location.is_remote:  # no index builds on object storage (store/ann.py)
        return out
    tuning = tuning or DEFAULT_TUNING
    if chunks is not None and int(chunks.count_rows()) > 0:
        out.update(upkeep(chunks, tuning))
    refresh_scalar_indexes(store.documents_table(), tuning.retrain_share, DOCUMENT_INDEXES)
    return out


#: versions this close before the oldest tagged one are left alone by a cleanup (LanceDB takes
#: its own clock when it applies the age; a cut-off past a tagged version is an error, and the
#: cleanup is tried again with a wider margin)
PRUNE_MARGIN = timedelta(milliseconds=20)


def prune_age(table: Any, margin: timedelta = PRUNE_MARGIN) -> timedelta:
    """How old a version must be for a cleanup to remove it: older than the oldest tagged
    version, less ``margin``; without tags, every version but the latest."""
    tagged = {int(info["version"]) for info in table.tags.list().values()}
    if not tagged:
        return timedelta(milliseconds=1)
    stamps: list[datetime] = [
        v["timestamp"] for v in table.list_versions() if int(v["version"]) in tagged
    ]
    if not stamps:
        return timedelta(milliseconds=1)
    age: timedelta = datetime.now() - min(stamps) + margin
    return max(age, timedelta(milliseconds=1))
