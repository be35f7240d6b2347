"""The release workflow through the ``enclave`` command line, with the hash embedder: ingest
makes a candidate, rails and the gate decide, promote/rollback/diff/purge/lineage, the
writer lock, and SIGKILL during a promote."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from enclave.offline import offline_env
from enclave.security.audit import read_tail

REPO = Path(__file__).resolve().parents[2]
WORDS = [
    *("ledger", "vault", "quorum", "lattice", "harbor", "signal"),
    *("beacon", "cipher", "orbit", "meadow", "canyon", "prism"),
]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    """The whole ``enclave`` command, as the console script builds it (gate hooks included),
    with the hash embedder."""
    from enclave import cli as root

    monkeypatch.setenv("ENCLAVE_EMBEDDER__MODEL", "hash")
    root._register()
    return root.app


def run(cli: typer.Typer, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def as_json(result: Result) -> dict[str, Any]:
    lines = [ln for ln in result.stdout.splitlines() if ln.strip().startswith("{")]
    assert lines, result.output
    data: dict[str, Any] = json.loads(lines[-1])
    return data


def write_docs(folder: Path, count: int, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        words = " ".join(WORDS[(i + k) % len(WORDS)] for k in range(40))
        (folder / f"doc{i:03d}.txt").write_text(f"{words} uniqueword{i}x.\n", encoding="utf-8")


def live_id(data: Path) -> str | None:
    pointer = data / "lancedb" / "_enclave" / "live.json"
    return json.loads(pointer.read_text())["release"] if pointer.exists() else None


def test_ingest_promotes_its_candidate_at_once_and_unchanged_runs_make_none(
    tmp_path: Path, cli: typer.Typer, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs, data = tmp_path / "docs", str(tmp_path / "data")
    write_docs(docs, 12)
    first = run(cli, "ingest", str(docs), "--data-dir", data, "--json")
    assert first.exit_code == 0, first.output
    release = as_json(first)["release"]
    assert release["id"] == "r-000001" and release["promoted"] and release["live"] == "r-000001"
    quick = as_json(run(cli, "ingest", str(docs), "--data-dir", data, "--json"))
    assert quick["from_snapshot"] and quick["release"]["id"] is None
    monkeypatch.setenv("ENCLAVE_INGEST__REHASH", "true")  # the full path, through LanceDB
    full = as_json(run(cli, "ingest", str(docs), "--data-dir", data, "--json"))
    assert not full["from_snapshot"] and full["release"]["id"] is None
    assert full["release"]["live"] == "r-000001"
    status = as_json(run(cli, "status", "--data-dir", data, "--json"))
    assert status["releases"]["live"]["id"] == "r-000001" and status["documents"] == 12
    listed = as_json(run(cli, "releases", "list", "--data-dir", data, "--json"))
    assert [(r["id"], r["status"]) for r in listed["releases"]] == [("r-000001", "live")]


def test_rails_hold_a_mass_deletion_and_a_failure_jump_until_forced(
    tmp_path: Path, cli: typer.Typer
) -> None:
    docs, data = tmp_path / "docs", tmp_path / "data"
    write_docs(docs, 12)
    assert run(cli, "ingest", str(docs), "--data-dir", str(data)).exit_code == 0
    for i in range(5):  # a share that lost files (or was not mounted), then --prune
        (docs / f"doc{i:03d}.txt").unlink()
    held = run(cli, "ingest", str(docs), "--data-dir", str(data), "--prune", "--json")
    assert held.exit_code == 1, held.output
    release = as_json(held)["release"]
    assert release["state"] == "candidate" and release["blocked"] and not release["promoted"]
    assert "removes 5 of 12 documents" in release["reason"]
    assert "enclave releases promote r-000002 --force" in release["reason"]
    assert live_id(data) == "r-000001"
    status = as_json(run(cli, "status", "--data-dir", str(data), "--json"))
    assert status["documents"] == 12 and status["releases"]["candidate"]["id"] == "r-000002"

    write_docs(docs, 5)  # the files are back: the next run starts from the live release
    for i in range(3):
        (docs / f"broken{i}.pdf").write_bytes(b"%PDF-1.7 this is not a pdf at all")
    jump = run(cli, "ingest", str(docs), "--data-dir", str(data), "--json")
    summary = as_json(jump)
    assert jump.exit_code == 1 and len(summary["failed"]) == 3 and summary["unchanged"] == 12
    assert "failed documents rises from 0% to 20%" in summary["release"]["reason"]
    assert live_id(data) == "r-000001"

    forced = run(cli, "releases", "promote", "--force", "--data-dir", str(data), "--json")
    assert forced.exit_code == 0, forced.output
    assert as_json(forced)["forced"] and live_id(data) == "r-000003"
    record = [r for r in read_tail(data, 5) if r["endpoint"] == "cli:releases promote"][-1]
    assert record["outcome"] == "forced" and record["extra"]["release"] == "r-000003"


def _golden(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    (root / "queries.jsonl").write_text(
        json.dumps({"_id": "q1", "text": "uniqueword1x"}) + "\n", encoding="utf-8"
    )
    (root / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tdoc001.txt\t1\n")
    return root


def test_the_gate_scores_the_candidate_in_place_refuses_it_and_force_is_audited(
    tmp_path: Path, cli: typer.Typer
) -> None:
    docs, data = tmp_path / "docs", tmp_path / "data"
    write_docs(docs, 12)
    gate = tmp_path / "gate.toml"
    gate.write_text('[min]\n"retrieval.recall@1" = 1.0\n', encoding="utf-8")
    (tmp_path / "enclave.toml").write_text(
        f'[release]\ngolden_set = "{_golden(tmp_path / "golden")}"\ngate = "{gate}"\nanswers = 0\n',
        encoding="utf-8",
    )
    passed = run(cli, "ingest", str(docs), "--data-dir", str(data), "--json")
    assert passed.exit_code == 0, passed.output
    release = as_json(passed)["release"]
    assert release["promoted"] and release["gate"]["passed"]
    kept = data / "lancedb" / "_enclave" / "reports" / "r-000001"
    report = json.loads((kept / "report.json").read_text())
    assert report["release"] == "r-000001" and report["mode"] == "in-place"
    assert (kept / "report.md").is_file() and (kept / "report.html").is_file()

    (docs / "doc001.txt").unlink()  # the document the golden question needs
    refused = run(cli, "ingest", str(docs), "--data-dir", str(data), "--prune")
    assert refused.exit_code == 1, refused.output
    assert "FAIL" in refused.output and "retrieval.recall@1" in refused.output
    assert live_id(data) == "r-000001"
    assert (data / "lancedb" / "_enclave" / "reports" / "r-000002" / "report.json").is_file()
    shown = as_json(run(cli, "releases", "show", "r-000002", "--data-dir", str(data), "--json"))
    assert shown["state"] == "rejected" and shown["gate"]["failures"]

    diff = as_json(run(cli, "releases", "diff", "r-000001", "r-000002", "--data-dir",
                       str(data), "--json"))  # fmt: skip
    assert [d["path"].rsplit("/", 1)[-1] for d in diff["removed"]] == ["doc001.txt"]
    assert diff["counts"] == {"added": 0, "changed": 0, "removed": 1, "failed": 0}
    recall = {m["metric"]: m for m in diff["gate"]["metrics"]}["retrieval.recall@1"]
    assert (recall["old"], recall["new"]) == (1.0, 0.0)

    again = run(cli, "releases", "promote", "r-000002", "--data-dir", str(data))
    assert again.exit_code == 1 and "FAIL" in again.output  # the kept verdict stands
    forced = run(cli, "releases", "promote", "r-000002", "--force", "--data-dir", str(data))
    assert forced.exit_code == 0 and live_id(data) == "r-000002"
    audit = [r for r in read_tail(data, 10) if r["endpoint"] == "cli:releases promote"]
    assert audit[-1]["outcome"] == "forced" and audit[-1]["extra"]["gate_failures"]

    out = str(tmp_path / "ev")
    scored = run(cli, "eval", str(tmp_path / "golden"), "--release", "live", "--no-answers",
                 "--no-progress", "--data-dir", str(data), "--out", out)  # fmt: skip
    assert scored.exit_code == 0, scored.output
    assert json.loads((tmp_path / "ev" / "report.json").read_text())["release"] == "r-000002"

    back = run(cli, "releases", "rollback", "--data-dir", str(data), "--json")
    assert back.exit_code == 0 and as_json(back)["id"] == "r-000001"


def test_purge_leaves_no_trace_of_the_document_under_the_data_directory(
    tmp_path: Path, cli: typer.Typer
) -> None:
    canary = "CANARY5b8e2f71d0c4"
    docs, data = tmp_path / "docs", tmp_path / "data"
    write_docs(docs, 12)
    secret = docs / "leaked.txt"
    secret.write_text(f"The vault code is {canary}. Keep it safe.\n", encoding="utf-8")
    for i in range(3):  # it lives on in three releases
        assert run(cli, "ingest", str(docs), "--data-dir", str(data)).exit_code == 0
        write_docs(docs, 1, start=20 + i)
    assert live_id(data) == "r-000003"
    grep = ["grep", "-rlaF", canary, str(data)]
    assert subprocess.run(grep, capture_output=True).stdout

    purged = run(cli, "purge", str(secret), "--data-dir", str(data), "--json")
    assert purged.exit_code == 0, purged.output
    assert sorted(as_json(purged)["releases"]) == ["r-000001", "r-000002", "r-000003"]
    found = subprocess.run(grep, capture_output=True)
    assert found.stdout == b"", found.stdout.decode()
    record = read_tail(data, 1)[0]
    assert record["endpoint"] == "cli:purge" and canary not in json.dumps(record)
    missing = run(cli, "purge", str(secret), "--data-dir", str(data))
    assert missing.exit_code == 1 and "no release holds" in missing.output


def test_a_second_writer_is_refused_with_the_holders_name(tmp_path: Path, cli: typer.Typer) -> None:
    from store.lock import WriterLock

    docs, data = tmp_path / "docs", tmp_path / "data"
    write_docs(docs, 2)
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with WriterLock(data / "lancedb", "enclave ingest /elsewhere"):
            held.set()
            done.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(10)
        busy = run(cli, "ingest", str(docs), "--data-dir", str(data))
        assert busy.exit_code == 2
        assert "enclave ingest /elsewhere" in busy.output and f"pid {os.getpid()}" in busy.output
        promote = run(cli, "releases", "promote", "--data-dir", str(data))
        assert promote.exit_code == 2 and "only one" in promote.output
    finally:
        done.set()
        thread.join()
    assert run(cli, "ingest", str(docs), "--data-dir", str(data)).exit_code == 0


@pytest.mark.parametrize("point", ["before-switch", "after-switch"])
def test_sigkill_during_promote_leaves_the_old_or_the_new_release_live(
    tmp_path: Path, cli: typer.Typer, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    docs, data = tmp_path / "docs", tmp_path / "data"
    write_docs(docs, 4)
    assert run(cli, "ingest", str(docs), "--data-dir", str(data)).exit_code == 0
    write_docs(docs, 2, start=10)
    monkeypatch.setenv("ENCLAVE_RELEASE__AUTO_PROMOTE", "false")
    assert run(cli, "ingest", str(docs), "--data-dir", str(data)).exit_code == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env.update(offline_env(), PYTHONPATH=str(REPO), ENCLAVE_EMBEDDER__MODEL="hash")
    env["ENCLAVE_PAUSE_AT"] = f"{point}:30"
    proc = subprocess.Popen(
        [sys.executable, "-m", "enclave.cli", "releases", "promote", "r-000002",
         "--data-dir", str(data)],
        stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 60
        while "paused at" not in (line := proc.stderr.readline()):
            assert line and time.monotonic() < deadline, "the promote never paused"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    expected = "r-000001" if point == "before-switch" else "r-000002"
    pointer = json.loads((data / "lancedb" / "_enclave" / "live.json").read_text())
    record = json.loads(
        (data / "lancedb" / "_enclave" / "releases" / f"{pointer['release']}.json").read_text()
    )
    assert pointer["release"] == expected and pointer["versions"] == record["versions"]
    again = run(cli, "releases", "promote", "r-000002", "--data-dir", str(data), "--json")
    assert again.exit_code == 0, again.output  # the lock died with the process
    assert live_id(data) == "r-000002"
    shown = as_json(run(cli, "releases", "show", "r-000002", "--data-dir", str(data), "--json"))
    assert shown["state"] == "promoted" and shown["status"] == "live"


def test_the_ci_pipeline_promotes_a_good_candidate_and_stops_a_bad_one(tmp_path: Path) -> None:
    """examples/ci/release-ci.sh end to end, with ``enclave`` the command of this checkout."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    wrapper = bin_dir / "enclave"
    wrapper.write_text(f'#!/bin/sh\nexec {sys.executable} -m enclave.cli "$@"\n')
    wrapper.chmod(0o755)
    docs = tmp_path / "docs"
    subprocess.run(["cp", "-r", str(REPO / "examples" / "docs"), str(docs)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env.update(offline_env(), PYTHONPATH=str(REPO), ENCLAVE_EMBEDDER__MODEL="hash",
               PATH=f"{bin_dir}:{env['PATH']}", PYTHON=sys.executable, DOCS=str(docs),
               DATA_DIR=str(tmp_path / "data"), OUT=str(tmp_path / "out"))  # fmt: skip
    script = str(REPO / "examples" / "ci" / "release-ci.sh")
    good = subprocess.run([script], cwd=REPO, env=env, capture_output=True, text=True)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "release r-000001 is live" in good.stdout
    assert (tmp_path / "out" / "report.json").is_file()

    (docs / "security.txt").unlink()  # the answer to two golden questions goes
    bad = subprocess.run([script], cwd=REPO, env=env, capture_output=True, text=True)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "FAIL retrieval.recall@5" in bad.stdout and "r-000002 refused" in bad.stderr
    assert live_id(tmp_path / "data") == "r-000001"
