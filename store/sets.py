"""Table sets: one index, several pairs of tables, so a re-index never stops the serving.

An index is bound to one embedder and one way of cutting chunks. Changing either means
embedding everything again into *new* tables while the server keeps serving the old ones.
A **table set** is such a pair of tables (``documents``, ``chunks``) with its own
``enclave-index.json`` (the embedder, its dimension, and the settings it was built with):

* the **root set** (id ``None``) is ``<lance_dir>`` itself: every index has it;
* a **side set** ``<lance_dir>/sets/<id>/`` (ids ``t-000002``, ...) is built by
  ``enclave reindex``.

Every release names its set (``ReleaseRecord.tables``, ``LivePointer.tables``); the registry
(``<lance_dir>/_enclave``), the writer lock and the pointer stay with the root. Promoting a
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

SETS_DIR = "sets"
_SET_ID = re.compile(r"^t-(\d{6,})$")


def set_dir(lance_dir: Path | str, tables: str | None) -> Path:
    """The folder holding the tables of set ``tables`` (None: the root set)."""
    root = Path(lance_dir)
    if tables is None:
        return root
    if not _SET_ID.match(tables):
        raise ValueError(f"not a table set id: {tables[:40]!r}")
    return root / SETS_DIR / tables


def side_sets(lance_dir: Path | str) -> list[str]:
    """The ids of the side sets on disk, oldest first."""
    folder = Path(lance_dir) / SETS_DIR
    try:
        names = [p.name for p in folder.iterdir() if p.is_dir() and _SET_ID.match(p.name)]
    except FileNotFoundError:
        return []
    return sorted(names, key=lambda n: int(n[2:]))


def new_set_id(lance_dir: Path | str, taken: Iterable[str | None] = ()) -> str:
    """A set id used by no folder and no record (``taken``)."""
    numbers = [int(n[2:]) for n in side_sets(lance_dir)]
    numbers += [int(t[2:]) for t in taken if t and _SET_ID.match(t)]
    return f"t-{max(numbers, default=1) + 1:06d}"


def active_tables(lance_dir: Path | str) -> str | None:
    """The set writers write to: the live release's (the root set before any release)."""
    from store.registry import Registry

    try:
        live = Registry.at(lance_dir).live()
    except (OSError, ValueError, KeyError):
        return None
    return None if live is None else live.tables


def drop_unused_sets(lance_dir: Path | str, keep: Iterable[str | None]) -> list[str]:
    """Delete every side set not in ``keep`` (the sets of the retained releases and of the
    writer's head). The caller holds the writer lock. Returns the ids deleted."""
    wanted = set(keep)
    dropped = []
    for tables in side_sets(lance_dir):
        if tables not in wanted:
            shutil.rmtree(set_dir(lance_dir, tables), ignore_errors=True)
            dropped.append(tables)
    return dropped
