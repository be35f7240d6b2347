"""Table sets: one index, several pairs of tables, so a re-index never stops the serving.

An index is bound to one embedder and one way of cutting chunks. Changing either means
embedding everything again into *new* tables while the server keeps serving the old ones.
A **table set** is such a pair of tables (``documents``, ``chunks``) with its own
``enclave-index.json`` (the embedder, its dimension, and the settings it was built with):

* the **root set** (id ``None``) is the index location itself (``store.uri``, by default
  ``<data_dir>/lancedb``): every index has it;
* a **side set** ``<index>/sets/<id>/`` (ids ``t-000002``, ...) is built by
  ``enclave reindex``. Its location is the index location's child
  (:meth:`store.location.IndexLocation.child`), so readers open a set the same way on a
  local disk and on S3.

Every release names its set (``ReleaseRecord.tables``, ``LivePointer.tables``); the registry
(``<index>/_enclave``), the writer lock and the pointer stay with the root.

``enclave reindex`` builds side sets on a local index only; on an ``s3://`` index it refuses
(:func:`require_local_sets`): listing and deleting set prefixes on an object store is not
implemented yet. Promoting a
release of another set switches servers to that set's tables (and embedder) at once; a
rollback switches back. Writers (ingest, sync) write to the set of the live release. A set
that no retained release names any more is deleted by the next cleanup
(:func:`drop_unused_sets`).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from pathlib import Path

from enclave.errors import UsageError
from store.location import IndexLocation, locate

SETS_DIR = "sets"
_SET_ID = re.compile(r"^t-(\d{6,})$")


def check_set_id(tables: str) -> str:
    if not _SET_ID.match(tables):
        raise ValueError(f"not a table set id: {tables[:40]!r}")
    return tables


def set_location(index: IndexLocation | Path | str, tables: str | None) -> IndexLocation:
    """The location of the tables of set ``tables`` (None: the root set, the index itself)."""
    root = locate(index)
    if tables is None:
        return root
    return root.child(f"{SETS_DIR}/{check_set_id(tables)}")


def set_dir(index: IndexLocation | Path | str, tables: str | None) -> Path:
    """The local folder of set ``tables`` of a local index."""
    return set_location(index, tables).local_path


def require_local_sets(index: IndexLocation | Path | str, what: str) -> None:
    """Side sets are built on a local index only (module docstring): UsageError otherwise."""
    location = locate(index)
    if location.is_remote:
        raise UsageError(
            f"{what} is not available on an index on object storage ({location.uri}): a "
            "re-index builds a new table set beside the live one, which Enclave supports on a "
            "local index only. Re-embed into a new store.uri prefix instead (docs/scale.md)."
        )


def side_sets(index: IndexLocation | Path | str) -> list[str]:
    """The ids of the side sets of the index, oldest first (none on object storage, where
    ``enclave reindex`` does not build them)."""
    location = locate(index)
    if location.is_remote:
        return []
    folder = location.local_path / SETS_DIR
    try:
        names = [p.name for p in folder.iterdir() if p.is_dir() and _SET_ID.match(p.name)]
    except FileNotFoundError:
        return []
    return sorted(names, key=lambda n: int(n[2:]))


def new_set_id(index: IndexLocation | Path | str, taken: Iterable[str | None] = ()) -> str:
    """A set id used by no folder and no record (``taken``)."""
    numbers = [int(n[2:]) for n in side_sets(index)]
    numbers += [int(t[2:]) for t in taken if t and _SET_ID.match(t)]
    return f"t-{max(numbers, default=1) + 1:06d}"


def active_tables(index: IndexLocation | Path | str) -> str | None:
    """The set writers write to: the live release's (the root set before any release)."""
    from store.registry import Registry

    try:
        live = Registry.at(index).live()
    except (OSError, ValueError, KeyError):
        return None
    return None if live is None else live.tables


def drop_unused_sets(index: IndexLocation | Path | str, keep: Iterable[str | None]) -> list[str]:
    """Delete every side set not in ``keep`` (the sets of the retained releases and of the
    writer's head). The caller holds the writer lock. Returns the ids deleted."""
    wanted = set(keep)
    dropped = []
    for tables in side_sets(index):
        if tables not in wanted:
            shutil.rmtree(set_dir(index, tables), ignore_errors=True)
            dropped.append(tables)
    return dropped
