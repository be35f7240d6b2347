"""Releases over a real LanceDB: candidates, the atomic switch, rollback, retention, purge."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from store.compare import check_rails, compare_documents
from store.db import Store
from store.live import LiveIndex
from store.lock import WriterBusyError, WriterLock
from store.purge import purge_documents
from store.records import ChunkRecord, DocumentRecord, doc_id_for_path
from store.registry import EXPIRED, PROMOTED, SUPERSEDED
from store.releases import ReleaseGoneError, Releases, open_release
from tests.store.release_support import candidate, new_store, paths

REPO = Path(__file__).resolve().parents[2]
DOCS = {f"doc{i:02d}.txt": f"alpha{i} topic{i} words{i}" for i in range(20)}


def data_files(lance_dir: Path) -> set[str]:
    return {str(p) for p in lance_dir.rglob("*.lance") if "/data/" in str(p)}


def test_candidate_is_not_served_until_promoted(tmp_path: Path) -> None:
    store, releases = new_store(tmp_path)
    live = LiveIndex(store.path, check_s=0)
    first = candidate(releases, write=dict(list(DOCS.items())[:3]))
    assert live.reader().count_documents() == 0 and live.release_id is None
    releases.promote(first, by="test")
    assert paths(live.reader()) == {"doc00.txt", "doc01.txt", "doc02.txt"}
    assert live.release_id == first.id
    second = candidate(releases, write={"new.txt": "fresh words"}, delete=["doc00.txt"])
    assert second.parent == first.id and second.state == "candidate"
    assert paths(live.reader()) == {"doc00.txt", "doc01.txt", "doc02.txt"}  # not promoted yet
    assert paths(store) == {"new.txt", "doc01.txt", "doc02.txt"}  # the head has it


def test_promote_and_rollback_switch_one_pointer_without_touching_data(tmp_path: Path) -> None:
    store, releases = new_store(tmp_path)
    first = candidate(releases, write=DOCS)
    releases.promote(first, by="test")
    second = candidate(releases, write={"doc00.txt": "changed text"})
    files = data_files(store.path)
    started = time.perf_counter()
    releases.promote(second, by="test")
    promote_s = time.perf_counter() - started
    started = time.perf_counter()
    was, now = releases.rollback(by="test")
    rollback_s = time.perf_counter() - started
    assert (was, now.id) == (second.id, first.id)
    assert promote_s < 1.0 and rollback_s < 1.0
    assert data_files(store.path) == files  # nothing copied, nothing re-embedded
    pointer = json.loads((store.path / "_enclave" / "live.json").read_text())
    assert pointer["release"] == first.id and pointer["versions"] == first.versions
    events = [e["what"] for e in releases.registry.get(second.id).events]
    assert "rolled back" in events


def test_a_run_after_a_rollback_or_a_held_candidate_builds_on_the_live_release(
    tmp_path: Path,
) -> None:
    store, releases = new_store(tmp_path)
    first = candidate(releases, write=DOCS)
    releases.promote(first, by="test")
    bad = candidate(releases, delete=list(DOCS)[:15])
    releases.hold(bad, "too many removed")
    prepared = releases.prepare_head()
    assert prepared.restored_from == bad.id and paths(store) == set(DOCS)
    # a pending candidate (waiting for a manual promote) is built on
    pending = candidate(releases, write={"extra.txt": "more words"})
    assert releases.registry.get(bad.id).state == SUPERSEDED
    assert releases.prepare_head().restored_from is None
    releases.promote(pending, by="test")
    releases.rollback(by="test")
    assert releases.prepare_head().restored_from == pending.id
    assert "extra.txt" not in paths(store)


def test_adopts_an_index_written_before_releases(tmp_path: Path) -> None:
    from tests.store.release_support import records

    store, releases = new_store(tmp_path)
    store.replace_documents(*records(dict(list(DOCS.items())[:4])))
    live = LiveIndex(store.path, check_s=0)
    assert live.release_id == "r-000001" and live.reader().count_documents() == 4
    rec = releases.registry.get("r-000001")
    assert rec.state == PROMOTED and rec.promoted_by == "adopted"


def test_retention_keeps_live_and_the_last_promoted_and_bounds_disk(tmp_path: Path) -> None:
    """200 documents of 384-dimension chunks, 8 runs each changing 5% of them, keep=2: the
    releases share what they did not change, and what only expired releases held is gone.
    (At scale, with fragments rewritten as they empty: benchmarks/release_bench.py.)"""
    rng = np.random.default_rng(0)
    store = Store(tmp_path / "lancedb")
    store.bind_embedder("random", 384)
    releases = Releases(store)

    def run(ids: list[int], generation: int) -> None:
        prepared = releases.prepare_head()
        releases.begin_writes()
        docs, chunks = [], []
        for i in ids:
            path = f"/corp/doc{i:03d}.txt"
            doc_id = doc_id_for_path(path)
            vectors = rng.standard_normal((2, 384)).astype(np.float32)
            docs.append(DocumentRecord(doc_id, path, sha256=f"{i}-{generation}", chunk_count=2))
            chunks += [
                ChunkRecord(f"{doc_id}-{k:05d}", doc_id, k, f"doc {i} gen {generation} part {k}",
                            vectors[k] / np.linalg.norm(vectors[k]), path)
                for k in range(2)
            ]  # fmt: skip
        store.replace_documents(docs, chunks)
        store.compact()
        rec = releases.record_candidate(prepared.parent, {})
        releases.promote(rec, by="test", keep=2)
        store.prune()

    run(list(range(200)), 0)
    one_release = store.size_bytes()
    for generation in range(1, 9):
        run([(generation * 10 + k * 7) % 200 for k in range(10)], generation)
    registry = releases.registry
    states = {r.id: registry.status_of(r, registry.live()) for r in registry.records()}
    assert list(states.values()).count("live") == 1
    assert list(states.values()).count("retained") == 2
    assert set(store.tags()) == {rid for rid, s in states.items() if s in ("live", "retained")}
    expired = [rid for rid, s in states.items() if s == EXPIRED]
    assert len(expired) == 6
    with pytest.raises(ReleaseGoneError):
        open_release(store.path, expired[0])
    for rid, s in states.items():
        if s != EXPIRED:
            assert open_release(store.path, rid).count_documents() == 200
    manifests = list((store.path / "chunks.lance" / "_versions").glob("*.manifest"))
    assert len(manifests) < 20, len(manifests)  # only the retained window's versions
    assert store.size_bytes() <= 1.6 * one_release, (store.size_bytes(), one_release)


def test_rails_judge_removals_and_failures_against_the_parent(tmp_path: Path) -> None:
    _, releases = new_store(tmp_path)
    first = candidate(releases, write=DOCS)
    releases.promote(first, by="test")
    limits = {"max_removed_share": 0.2, "max_failure_jump": 0.1, "min_documents": 10}
    removed = candidate(releases, delete=list(DOCS)[:5])
    verdict = check_rails(releases.live_view(), releases.view(removed), **limits)
    assert not verdict.ok and "removes 5 of 20" in verdict.reasons[0]
    releases.hold(removed, verdict.reasons[0])  # the next run builds on the live release
    failing = candidate(releases, failed=list(DOCS)[:4])
    verdict = check_rails(releases.live_view(), releases.view(failing), **limits)
    assert not verdict.ok and "failed documents rises from 0% to 20%" in verdict.reasons[0]
    small = check_rails(releases.live_view(), releases.view(removed), **{**limits,
                        "min_documents": 50})  # fmt: skip
    assert small.ok
    changes = compare_documents(releases.live_view(), releases.view(failing))
    assert len(changes.failed) == 4 and len(changes.changed) == 4 and not changes.removed


def test_purge_leaves_no_trace_of_a_canary_in_any_release_or_file(tmp_path: Path) -> None:
    canary = "CANARY7f3d9e1b"
    store, releases = new_store(tmp_path)
    releases.promote(candidate(releases, write=DOCS), by="test")
    releases.promote(candidate(releases, write={"secret.txt": f"the code is {canary}"}), by="t")
    releases.promote(candidate(releases, write={"doc03.txt": "a later change"}), by="test")
    pending = candidate(releases, write={"doc04.txt": "still a candidate"})
    assert subprocess.run(["grep", "-rlF", canary, str(tmp_path)], capture_output=True).stdout
    live = LiveIndex(store.path, check_s=0)
    assert live.reader().text_search(canary, 5)

    result = purge_documents(store, releases.registry, [doc_id_for_path("/corp/secret.txt")])
    assert sorted(result.releases) == ["r-000001", "r-000002", "r-000003", "r-000004"]
    found = subprocess.run(["grep", "-rlaF", canary, str(tmp_path)], capture_output=True)
    assert found.stdout == b"", found.stdout.decode()
    assert "secret.txt" not in paths(live.reader()) and not live.reader().text_search(canary, 5)
    for rec in releases.registry.records():  # every retained release still reads, without it
        view = releases.view(rec)
        assert "secret.txt" not in paths(view) and view.count_documents() >= 20
        assert view.text_search("alpha5", 5)  # the rebuilt full-text index answers
    assert paths(releases.view(releases.registry.get(pending.id))) >= {"doc04.txt"}


def test_a_second_writer_is_refused_and_the_lock_survives_sigkill(tmp_path: Path) -> None:
    lance = tmp_path / "lancedb"
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom store.lock import WriterLock\n"
         f"with WriterLock({str(lance)!r}, 'enclave ingest /shares'):\n"
         "    print('held', flush=True)\n    time.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(WriterBusyError) as refused:
            WriterLock(lance).acquire()
        assert f"pid {holder.pid}" in refused.value.message
        assert "enclave ingest /shares" in refused.value.message
        assert refused.value.exit_code == 2 and refused.value.status_code == 409
    finally:
        holder.kill()
        holder.wait()
    with WriterLock(lance, "after the crash"):  # the kernel released it
        pass


def test_a_prune_killed_half_way_is_finished_by_the_next_writer(tmp_path: Path) -> None:
    import json as json_

    from store.maintain import HEAD_TAG, PRUNE_FILE

    store, releases = new_store(tmp_path)
    releases.promote(candidate(releases, write=DOCS), by="test")
    head = store.head_versions()
    store.tag(HEAD_TAG, head)  # what prune() does before it empties the latest version...
    releases.registry.files.write(PRUNE_FILE, json_.dumps({"head": head}).encode())
    for table in store.existing_tables():
        table.delete("true")  # ...and the process dies here
    assert store.count_documents() == 0
    assert releases.prepare_head().restored_from is None
    assert store.count_documents() == 20 and HEAD_TAG not in store.tags()
    assert releases.registry.files.read(PRUNE_FILE) is None
