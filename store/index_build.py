"""Vector index builds as releases: ``enclave index optimize`` and the background build an
ingest run starts (the rules: store/ann.py). Kept apart from store/ann.py so that the search
paths, which every reader imports, import no writer code (no import circles in store/)."""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from store.ann import (
    AnnTuning,
    BuildLock,
    build_vector_index,
    require_local_index,
    vector_index_due,
)
from store.db import CHUNKS, Store
from store.lock import WriterBusyError, WriterLock
from store.maintain import recover
from store.purge import pending_purge
from store.registry import CANDIDATE, REGISTRY_DIR, HeadState
from store.releases import Releases
from store.sets import active_tables

if TYPE_CHECKING:
    from enclave.settings import Settings
    from store.location import IndexLocation

log = logging.getLogger(__name__)


def _with_writer_lock(lance_dir: IndexLocation, what: str, wait_s: float) -> Any:
    """The writer lock, waiting up to ``wait_s`` for another writer to finish."""
    deadline = time.monotonic() + wait_s
    while True:
        lock = WriterLock(lance_dir, what)
        try:
            lock.acquire()
            return lock
        except WriterBusyError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def optimize(
    settings: Settings, *, force: bool = False, lock_wait_s: float = 600.0
) -> dict[str, Any]:
    """``enclave index optimize``: build the vector index on the head when due (``force``:
    whatever the counts say), holding the writer lock only to look and to publish, never
    while it builds; then publish it through a release of the live release's table set
    (module docstring). UsageError on an index on object storage."""
    lance_dir = settings.index
    require_local_index(lance_dir, "enclave index optimize")
    tuning = AnnTuning.from_settings(settings.vector_index)
    build_lock = BuildLock(lance_dir)
    if not build_lock.try_acquire():
        return {"built": False, "reason": "another index build is running"}
    try:
        lock = _with_writer_lock(lance_dir, "enclave index optimize (looking)", lock_wait_s)
        try:
            tables = active_tables(lance_dir)
            store = Store(lance_dir, tables=tables)
            rels = Releases(store)
            recover(store, rels.registry)
            table = store.chunks_table()
            head0 = rels.registry.head(tables)
            due = None if table is None else vector_index_due(table, tuning)
            if table is None or (due is None and not force):
                return {"built": False, "reason": "not due", "due": due}
            if head0.dirty or pending_purge(rels.registry, tables):
                return {"built": False, "reason": "an unfinished ingest run or purge"}
            before = int(table.version)
        finally:
            lock.release()
        # the build itself: no writer lock (writers may run; LanceDB merges the commits)
        try:
            seconds = build_vector_index(table, tuning)
        except Exception as exc:  # a writer restored the head meanwhile (a commit conflict)
            log.warning("vector index build failed: %s", exc)
            return {"built": False, "reason": f"build failed, retried next time: {exc}"}
        out: dict[str, Any] = {"built": True, "reason": due or "forced", "build_s": seconds}
        lock = _with_writer_lock(lance_dir, "enclave index optimize (publishing)", lock_wait_s)
        try:
            store = Store(lance_dir, tables=tables)
            rels = Releases(store)
            head1 = rels.registry.head(tables)
            versions = store.head_versions()
            same = head1 == head0 and not head1.dirty and versions.get(CHUNKS) == before + 1
            out["published"] = None
            if not same or head0.release is None:
                out["note"] = "the head changed meanwhile: the next release carries the index"
                return out
            rec = rels.registry.find(head0.release)
            live = rels.registry.live()
            if rec is None or rec.tables != tables:
                return out
            if live is not None and rec.id == live.release:
                new = rels.record_index_release(rec, versions)
                if settings.release.auto_promote:
                    rels.promote(new, by="enclave index optimize", keep=settings.release.keep)
                out["published"] = new.id
                out["live"] = settings.release.auto_promote
            elif rec.state == CANDIDATE and not rec.held:
                rels.move_candidate(rec, versions)
                rels.registry.set_head(HeadState(release=rec.id), tables)
                out["published"] = rec.id
                out["live"] = False
            return out
        finally:
            lock.release()
    finally:
        build_lock.release()


def start_background_build(settings: Settings) -> int | None:
    """Start ``enclave index optimize`` in its own process (niced, detached, its output in
    ``_enclave/index-build.log``); returns its pid, None when a build already runs or the
    index is on object storage (no builds there: module docstring)."""
    import subprocess
    import sys

    if settings.index.is_remote or BuildLock.held(settings.index):
        return None
    env = dict(os.environ)
    for key, value in settings.vector_index.model_dump().items():
        name = f"ENCLAVE_VECTOR_INDEX__{key.upper()}"
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value).lower() if isinstance(value, bool) else str(value)
    env["ENCLAVE_RELEASE__AUTO_PROMOTE"] = str(settings.release.auto_promote).lower()
    env["ENCLAVE_RELEASE__KEEP"] = str(settings.release.keep)
    if settings.store.uri:  # a local index outside data_dir
        env["ENCLAVE_STORE__URI"] = settings.store.uri
    log_path = settings.index.local_root / REGISTRY_DIR / "index-build.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "enclave.cli",
                "index",
                "optimize",
                "--data-dir",
                str(settings.data_dir),
                "--json",
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=lambda: os.nice(10),
        )
    return int(proc.pid)
