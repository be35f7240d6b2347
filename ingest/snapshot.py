"""A snapshot of the documents table, so that a run over an unchanged corpus costs seconds.

The LanceDB documents table is the authority on what is indexed, but opening it means
importing LanceDB (about 2 s of CPU here) and reading every row. After each run Enclave writes
``<data_dir>/ingest-snapshot.json``: every document's size, mtime, status and whether its
failure is worth retrying, keyed by path, plus a *signature* of the index: the names, sizes
and mtimes of the version files of both tables (``<table>.lance/_versions``). Every commit to
a Lance table writes a version file, so any change to the index after the snapshot (another
ingest, a delete through the API, a run killed half-way, a compaction) changes the
signature, and the snapshot is ignored. The snapshot also names the release that was live
when it was written (``live``): a promote or rollback since then sends the next run down the
full path, which builds on the release live now (store/releases.py).

The next run uses the snapshot only to conclude that there is nothing to do: when the
signature still matches, every walked file is in the snapshot with the same size and mtime,
none is due for a retry, no file under the roots is gone (with ``--prune``), and neither
``--groups``, an ACL policy nor ``ingest.rehash`` asks for more. Anything else takes the full
path through LanceDB, exactly as without a snapshot. A snapshot is written only when the
index did not move while its rows were read (same signature before and after).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from store.records import STATUS_FAILED, DocumentRecord

SNAPSHOT_FILE = "ingest-snapshot.json"
SNAPSHOT_FORMAT = 1
TABLES = ("documents", "chunks")


def index_signature(lance_dir: Any) -> str | None:
    """A digest of both tables' version files, or None when a table is missing (and for an
    index on an object store: there every run takes the full path)."""
    if hasattr(lance_dir, "is_remote"):
        if lance_dir.is_remote:
            return None
        lance_dir = lance_dir.local_path
    digest = hashlib.sha256()
    for table in TABLES:
        versions = Path(lance_dir) / f"{table}.lance" / "_versions"
        try:
            entries = sorted(os.scandir(versions), key=lambda e: e.name)
            for entry in entries:
                st = entry.stat()
                digest.update(f"{table}/{entry.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        except OSError:
            return None
        if not entries:
            return None
    return digest.hexdigest()


@dataclass(frozen=True)
class Entry:
    size: int
    mtime: float
    status: str
    #: a failure that the next run retries even when the file did not change
    retry: bool


@dataclass(frozen=True)
class Snapshot:
    signature: str
    docs: dict[str, Entry]
    live: str | None = None


def live_release(lance_dir: Any) -> str | None:
    """The live release's id, read from the registry's pointer file (no LanceDB)."""
    from store.registry import Registry

    try:
        pointer = Registry.at(lance_dir).live()
    except (OSError, ValueError, KeyError):
        return None
    return None if pointer is None else pointer.release


def write_snapshot(
    data_dir: str | Path,
    signature: str,
    state: Mapping[str, DocumentRecord],
    retryable: Callable[[str], bool],
    live: str | None = None,
) -> None:
    """Write the snapshot of ``state`` (taken while the index had ``signature`` and
    ``live`` was the live release) atomically. ``retryable(error)`` says whether a failure
    is retried on an unchanged file."""
    docs = {
        path: [
            rec.size,
            rec.mtime,
            rec.status,
            bool(rec.status == STATUS_FAILED and retryable(rec.error)),
        ]
        for path, rec in state.items()
    }
    data = {"format": SNAPSHOT_FORMAT, "signature": signature, "docs": docs, "live": live}
    path = Path(data_dir) / SNAPSHOT_FILE
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(OSError):
        tmp.write_text(json.dumps(data, separators=(",", ":")), "utf-8")
        os.replace(tmp, path)


def forget_snapshot(data_dir: str | Path) -> None:
    with contextlib.suppress(OSError):
        (Path(data_dir) / SNAPSHOT_FILE).unlink()


def load_snapshot(data_dir: str | Path, lance_dir: Any, tables_dir: Any = None) -> Snapshot | None:
    """The snapshot, when present, well formed and still matching the index (the tables at
    ``tables_dir``, by default ``lance_dir``: store/sets.py; both a folder or an
    IndexLocation); else None."""
    try:
        data = json.loads((Path(data_dir) / SNAPSHOT_FILE).read_text("utf-8"))
        if data.get("format") != SNAPSHOT_FORMAT:
            return None
        signature = str(data["signature"])
        docs = {
            str(path): Entry(int(v[0]), float(v[1]), str(v[2]), bool(v[3]))
            for path, v in data["docs"].items()
        }
        live = data.get("live")
    except (OSError, ValueError, KeyError, TypeError, IndexError, AttributeError):
        return None
    tables_dir = lance_dir if tables_dir is None else tables_dir
    if index_signature(tables_dir) != signature or live_release(lance_dir) != live:
        return None
    return Snapshot(signature=signature, docs=docs, live=live)
