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


def golden(root: Path, word: str, doc: str) -> tuple[Path, Path]:
    """A golden set of one question (``word``, answered by ``doc``) and a gate that needs it
    at rank 1."""
    (root / "qrels").mkdir(parents=True)
    (root / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": word}) + "\n", "utf-8")
    (root / "qrels" / "test.tsv").write_text(f"query-id\tcorpus-id\tscore\nq1\t{doc}\t1\n")
    gate = root / "gate.toml"
    gate.write_text('[min]\n"retrieval.recall@1" = 1.0\n', encoding="utf-8")
    return root, gate


def test_a_failing_gate_is_never_served_and_a_scanned_page_is_answered(tmp_path: Path) -> None:
    from eval.release_gate import release_hooks
    from tests.ingest.quality_docs import make_scanned_pdf, needs_tesseract

    needs_tesseract()
    docs = tmp_path / "docs"
    corpus(docs)
    gold, gate = golden(tmp_path / "golden", "alpha3", "d03.txt")
    settings = sync_settings(tmp_path, docs).model_copy(
        update={
            "release": Settings(release={"golden_set": gold, "gate": gate, "answers": 0}).release
        }
    )
    service = SyncService(settings, sync_roots(settings), hooks=release_hooks(), embedder=EMB)
    service.run_once()
    assert service.state["last_release"] == {**service.state["last_release"], "state": "live"}
    with serving(settings) as live, running(service):
        base = live.base_url
        wait_for(lambda: service.state["watcher"] == "watching", 10, "the watcher")
        # a change that loses the golden question's answer: the gate rejects it, never served
        (docs / "d03.txt").rename(tmp_path / "d03.txt")
        write(docs, "d04.txt", "bravo4")
        wait_for(lambda: service.state["last_release"]["state"] == "rejected", 20, "the gate")
        wait_for(lambda: service.state["state"] == "blocked", 10, "blocked by the gate")
        time.sleep(0.6)  # past the server's pointer poll
        assert found(base, "alpha3") == {"d03.txt"} and found(base, "bravo4") == set()
        # the file is back: the next candidate passes the gate and is served, edit included
        (tmp_path / "d03.txt").rename(docs / "d03.txt")
        wait_for(lambda: found(base, "bravo4") == {"d04.txt"}, 20, "the change after the fix")
        assert found(base, "alpha3") == {"d03.txt"}
        # a scanned page, read by OCR, answered after its promotion
        make_scanned_pdf(docs / "scan.pdf", pages=1)
        wait_for(lambda: found(base, "conveyor") == {"scan.pdf"}, 60, "the scanned page")
        page = httpx.post(base + "/v1/search", json={"query": "conveyor", "top_k": 1}).json()
        assert page["results"][0]["page"] == 1
        assert service.state["last_release"]["state"] == "live"


def live_chunks(settings: Settings) -> int:
    from store.db import Store
    from store.releases import Releases

    view = Releases(Store(settings.lance_dir)).live_view()
    return sum(d.chunk_count for d in view.list_documents())


def test_a_settings_change_reindexes_in_the_background(tmp_path: Path) -> None:
    from store.registry import Registry

    docs = tmp_path / "docs"
    docs.mkdir()
    long = " ".join(f"word{k}" for k in range(150))
    for i in range(4):
        (docs / f"f{i}.txt").write_text(f"Document f{i} starts. {long} Code alpha{i}.\n")
    first = sync_settings(tmp_path, docs)
    SyncService(first, sync_roots(first), embedder=EMB).run_once()
    chunks = live_chunks(first)
    # restarted with a smaller chunk size and sync.reindex off: edits keep the live chunking
    small = first.model_copy(update={"ingest": first.ingest.model_copy(
        update={"chunk_tokens": 40, "chunk_overlap": 0})})  # fmt: skip
    off = small.model_copy(update={"sync": small.sync.model_copy(update={"reindex": "off"})})
    write(docs, "f9.txt", "echo9")
    SyncService(off, sync_roots(off), embedder=EMB).run_once()
    assert live_chunks(first) == chunks + 1  # one chunk: the old size
    assert Registry.at(first.lance_dir).live().tables is None  # type: ignore[union-attr]
    # with reindex auto: a complete new table set, promoted through the rails
    with serving(small) as live, running(SyncService(small, sync_roots(small))) as service:
        wait_for(lambda: (service.state.get("last_run") or {}).get("trigger") == "reindex", 60,
                 "the re-index run")  # fmt: skip
        assert service.state["reindex"]["state"] == "live"  # reported before the run's record
        job = service.state["reindex"]
        assert job["changes"] == ["chunk_tokens 200 -> 40", "chunk_overlap 30 -> 0"]
        assert job["progress"]["files_done"] == 5 and job["progress"]["eta_s"] == 0.0
        assert job["tables"] == "t-000002" and service.state["last_run"]["trigger"] == "reindex"
        from ingest.cli import _sync_line

        shown = _sync_line(read_sync_state(small.data_dir) or {})
        assert (
            f"re-index live (chunk_tokens 200 -> 40, chunk_overlap 30 -> 0) as {job['release']}"
            in shown
        )
        ready = lambda: httpx.get(live.base_url + "/readyz", timeout=10).json()["index"]  # noqa: E731
        wait_for(lambda: ready()["release"] == job["release"], 5, "the server to follow")
        assert ready()["chunks"] > chunks * 2
        # the next edit goes to the new set, with the new chunking, and no second re-index
        write(docs, "f8.txt", "foxtrot8")
        wait_for(lambda: found(live.base_url, "foxtrot8") == {"f8.txt"}, 20, "the edit")
        wait_for(lambda: service.state["last_run"]["trigger"] == "changes", 10, "its record")
        assert service.state["reindex"]["release"] == job["release"]


def test_a_rejected_reindex_is_not_retried_and_edits_go_on(tmp_path: Path) -> None:
    from eval.release_gate import release_hooks

    docs = tmp_path / "docs"
    corpus(docs, 4)
    first = sync_settings(tmp_path, docs)
    SyncService(first, sync_roots(first), embedder=EMB).run_once()
    chunks = live_chunks(first)
    gold, gate = golden(tmp_path / "golden", "alpha1", "absent.txt")  # fails every release
    changed = first.model_copy(
        update={
            "ingest": first.ingest.model_copy(update={"chunk_overlap": 5}),
            "release": Settings(release={"golden_set": gold, "gate": gate, "answers": 0}).release,
        }
    )
    service = SyncService(changed, sync_roots(changed), hooks=release_hooks())
    service.run_once()
    job = service.state["reindex"]
    assert (job["state"], job["changes"]) == ("rejected", ["chunk_overlap 30 -> 5"])
    write(docs, "d01.txt", "golf1")
    service.run_once()  # an ordinary run into the live set; the gate holds it too
    assert service.state["last_run"]["trigger"] == "changes"
    assert service.state["reindex"]["release"] == job["release"]
    assert service.state["last_release"]["state"] == "rejected"
    assert live_chunks(first) == chunks


def test_a_refused_reindex_is_known_again_after_ordinary_releases() -> None:
    """The re-index tried is keyed by the table set and the changes, not by the live release:
    ordinary runs that go live in between do not start it again."""
    from ingest.reindex import Drift

    one = Drift("r-000004", None, ("chunk_tokens 200 -> 40",), {}, "hash-64")
    later = Drift("r-000009", None, ("chunk_tokens 200 -> 40",), {}, "hash-64")
    assert one.key == later.key
    assert one.key != Drift("r-000009", "t-000002", one.changes, {}, "hash-64").key
    assert one.key != Drift("r-000009", None, ("chunk_tokens 200 -> 60",), {}, "hash-64").key
