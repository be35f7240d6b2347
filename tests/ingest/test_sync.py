"""``enclave sync`` under a running server: an edit and a deletion are answered after their
promotion, a release the rails hold is never served, another writer is waited for, and a
sync killed with SIGKILL picks up at restart what changed while it was down. Real LanceDB,
uvicorn and watchfiles; the hash embedder (the plumbing is under test, not the model)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from enclave.errors import ConfigError, UsageError
from enclave.settings import Settings, load_settings
from ingest.sync import STATE_FILE, SyncService, read_sync_state, sync_roots
from store.lock import WriterBusyError, WriterLock
from tests.server.test_releases_live import EMB, serving

REPO = Path(__file__).resolve().parents[2]


def write(folder: Path, name: str, word: str) -> None:
    (folder / name).write_text(f"Document {name}. The code word is {word}.\n", encoding="utf-8")


def corpus(folder: Path, n: int = 12) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write(folder, f"d{i:02d}.txt", f"alpha{i}")


def sync_settings(root: Path, docs: Path) -> Settings:
    return Settings(
        data_dir=root / "data",
        embedder={"model": "hash"},
        security={"auth": False},
        retrieval={"top_k": 20, "candidates": 50, "min_similarity": 0.0},
        sync={"roots": [docs], "debounce_s": 0.2, "rescan_interval_s": 30, "lock_retry_s": 0.2},
    )


def found(base: str, word: str) -> set[str]:
    """The files whose passages a search for ``word`` returns with the word in them."""
    body = httpx.post(base + "/v1/search", json={"query": word, "top_k": 20}, timeout=30)
    assert body.status_code == 200, body.text
    return {h["source"].rsplit("/", 1)[-1] for h in body.json()["results"] if word in h["text"]}


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"not within {timeout} s: {what}"
        time.sleep(0.05)
    return time.monotonic() - started


@contextmanager
def locked(settings: Settings) -> Iterator[None]:
    """Hold the writer lock as another writer would (once the sync's run in flight ends)."""
    lock = WriterLock(settings.lance_dir, "a test writer")
    deadline = time.monotonic() + 10
    while True:
        try:
            lock.acquire()
            break
        except WriterBusyError:
            assert time.monotonic() < deadline
            time.sleep(0.02)
    try:
        yield
    finally:
        lock.release()


@contextmanager
def running(service: SyncService) -> Iterator[SyncService]:
    thread = threading.Thread(target=service.run_forever, daemon=True)
    thread.start()
    try:
        yield service
    finally:
        service.stop.set()
        with service._wake:
            service._wake.notify_all()
        thread.join(30)


def test_edit_delete_rails_and_lock_under_a_running_sync(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    corpus(docs)
    settings = sync_settings(tmp_path, docs)
    service = SyncService(settings, sync_roots(settings), embedder=EMB)
    service.run_once()  # the first release, before the server starts
    assert service.state["last_release"]["state"] == "live"
    with serving(settings) as live, running(service):
        base = live.base_url
        assert found(base, "alpha3") == {"d03.txt"}
        wait_for(lambda: service.state["watcher"] == "watching", 10, "the watcher")
        # an edit: answered after its promotion, within seconds
        write(docs, "d03.txt", "bravo3")
        took = wait_for(lambda: found(base, "bravo3") == {"d03.txt"}, 10, "the edit")
        assert found(base, "alpha3") == set()
        assert took < 10
        # a deletion: the sync prunes it
        (docs / "d05.txt").unlink()
        wait_for(lambda: found(base, "alpha5") == set(), 10, "the deletion")
        state = read_sync_state(settings.data_dir)
        assert state is not None and state["running"] and state["errors_total"] == 0
        assert state["last_release"]["state"] == "live"
        assert live.metric("enclave_sync_up") == 1.0
        assert live.metric("enclave_sync_runs") >= 3
        # another writer holds the lock: the change waits, then goes through
        with locked(settings):
            write(docs, "d04.txt", "charlie4")
            wait_for(lambda: service.state["state"] == "waiting", 10, "waiting for the lock")
            assert "a test writer" in service.state["waiting_for"]
            time.sleep(0.3)
            assert found(base, "alpha4") == {"d04.txt"}
        wait_for(lambda: found(base, "charlie4") == {"d04.txt"}, 10, "after the lock")
        # an unmounted share (most files gone): the rails hold it, nothing is served
        served = live.metric("enclave_sync_runs")
        with locked(settings):  # one run sees them all
            for i in range(6, 12):
                (docs / f"d{i:02d}.txt").unlink()
            time.sleep(0.5)
        wait_for(lambda: service.state["state"] == "blocked", 10, "the rails")
        assert service.state["last_release"]["state"] == "candidate"
        assert "removes" in service.state["last_release"]["reason"]
        assert found(base, "alpha7") == {"d07.txt"}  # still the live release
        assert live.metric("enclave_sync_runs") > served
    assert read_sync_state(settings.data_dir)["state"] == "stopped"  # type: ignore[index]


def test_sync_killed_by_sigkill_picks_up_changes_at_restart(tmp_path: Path) -> None:
    from store.db import Store
    from store.releases import Releases

    docs = tmp_path / "docs"
    corpus(docs, 4)
    data = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(REPO), "ENCLAVE_EMBEDDER__MODEL": "hash",
           "ENCLAVE_SECURITY__AUDIT": "false"}  # fmt: skip
    cmd = [sys.executable, "-m", "enclave.cli", "sync", str(docs), "-d", str(data),
           "--debounce", "0.2"]  # fmt: skip

    def runs() -> int:
        state = read_sync_state(data)
        return int(state["runs"]) if state else 0

    def words() -> set[str]:
        view = Releases(Store(data / "lancedb")).live_view()
        out = set()
        for doc in view.list_documents():
            for chunk in view.document_chunks(doc.doc_id):
                out.add(str(chunk["text"]).split()[-1].rstrip("."))
        return out

    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: runs() >= 1, 60, "the first run")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        write(docs, "d01.txt", "delta1")  # while it is down
        (docs / "d02.txt").unlink()
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
        wait_for(lambda: runs() >= 1 and "delta1" in words(), 60, "the change made while down")
        assert "alpha2" not in words() and "alpha1" not in words()
        assert json.loads((data / STATE_FILE).read_text())["pid"] == proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert read_sync_state(data)["state"] == "stopped"  # type: ignore[index]


def test_bad_sync_settings_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="debounce_s"):
        load_settings(overrides={"sync": {"debounce_s": -1}})
    with pytest.raises(ConfigError, match="rescan_interval_s"):
        load_settings(overrides={"sync": {"rescan_interval_s": 1}})
    with pytest.raises(UsageError, match="nothing to watch"):
        sync_roots(Settings(data_dir=tmp_path))
