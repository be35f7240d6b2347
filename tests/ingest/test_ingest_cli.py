"""``enclave ingest`` and ``enclave status`` through the CLI (CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from ingest.cli import register
from tests.ingest.helpers import write_text_corpus

CONTRACT = {
    "files_seen": int,
    "ingested": int,
    "unchanged": int,
    "updated": int,
    "deleted": int,
    "failed": list,
    "chunks_added": int,
    "chunks_deleted": int,
    "seconds": float,
}


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, bundled_embedder: Any) -> typer.Typer:
    """The ingest commands, loading the session's bundled embedder instead of a new copy."""
    monkeypatch.setattr("models.loading.load_embedder", lambda _settings: bundled_embedder)
    app = typer.Typer()
    register(app)
    return app


def _json(stdout: str) -> dict[str, Any]:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, stdout  # exactly one JSON object, nothing else
    data: dict[str, Any] = json.loads(lines[0])
    return data


def test_json_summary_and_exit_codes(tmp_path: Path, cli: typer.Typer) -> None:
    docs = tmp_path / "docs"
    write_text_corpus(docs, 3, seed=2)
    runner = CliRunner()
    data = str(tmp_path / "data")
    ok = runner.invoke(cli, ["ingest", str(docs), "--data-dir", data, "--json"])
    assert ok.exit_code == 0, ok.output
    summary = _json(ok.stdout)
    for key, kind in CONTRACT.items():
        assert isinstance(summary[key], kind), key
    assert (summary["files_seen"], summary["ingested"], summary["failed"]) == (3, 3, [])
    assert summary["chunks_added"] > 0

    (docs / "empty.txt").write_bytes(b"")
    partial = runner.invoke(cli, ["ingest", str(docs), "--data-dir", data, "--json"])
    assert partial.exit_code == 1, partial.output
    s2 = _json(partial.stdout)
    assert s2["unchanged"] == 3
    assert [f["path"].endswith("empty.txt") and f["error"] for f in s2["failed"]] == [
        "empty file (0 bytes)"
    ]

    human = runner.invoke(cli, ["ingest", str(docs), "--data-dir", data])
    assert human.exit_code == 0  # the failed file is unchanged: not retried, not a new failure
    assert "Ingest summary" in human.stdout

    status = runner.invoke(cli, ["status", "--data-dir", data, "--json"])
    assert status.exit_code == 0, status.output
    st = _json(status.stdout)
    assert st["documents"] == 4 and st["documents_by_status"]["ok"] == 3
    assert st["chunks"] == summary["chunks_added"]
    assert st["failures"] == [
        {
            "path": str((docs / "empty.txt").resolve()),
            "status": "failed",
            "error": "empty file (0 bytes)",
        }
    ]
    assert st["embedder"]["name"] and st["embedder"]["dimension"] == 384
    assert st["index_bytes"] > 0 and st["last_ingest"]
    table = runner.invoke(cli, ["status", "--data-dir", data])
    assert table.exit_code == 0 and "chunks" in table.stdout


def test_usage_errors_exit_2(tmp_path: Path, cli: typer.Typer) -> None:
    runner = CliRunner()
    data = str(tmp_path / "data")
    missing = runner.invoke(cli, ["ingest", str(tmp_path / "nope"), "--data-dir", data])
    assert missing.exit_code == 2 and "no such file" in missing.output
    write_text_corpus(tmp_path / "docs", 1)
    flag = runner.invoke(cli, ["ingest", str(tmp_path / "docs"), "--bogus"])
    assert flag.exit_code == 2
    group = runner.invoke(cli, ["ingest", str(tmp_path / "docs"), "--groups", "a;b", "-d", data])
    assert group.exit_code == 2 and "invalid group" in group.output
    tokens = runner.invoke(cli, ["ingest", str(tmp_path / "docs"), "--chunk-tokens", "3"])
    assert tokens.exit_code == 2
    status = runner.invoke(cli, ["status", "--data-dir", str(tmp_path / "none"), "--json"])
    assert status.exit_code == 2 and "no index" in status.output


def test_embedder_mismatch_exits_2(
    tmp_path: Path, cli: typer.Typer, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_text_corpus(tmp_path / "docs", 1)
    runner = CliRunner()
    data = str(tmp_path / "data")
    first = runner.invoke(cli, ["ingest", str(tmp_path / "docs"), "-d", data, "--json"])
    assert first.exit_code == 0, first.output
    (tmp_path / "docs" / "new.txt").write_text("another document about harbors\n")
    monkeypatch.setenv("ENCLAVE_EMBEDDER__MODEL", "hash")
    refused = runner.invoke(cli, ["ingest", str(tmp_path / "docs"), "-d", data, "--json"])
    assert refused.exit_code == 2
    assert "built with embedder" in refused.output and refused.stdout == ""


def test_include_exclude_and_flags(tmp_path: Path, cli: typer.Typer) -> None:
    docs = tmp_path / "docs"
    write_text_corpus(docs / "keep", 2, seed=6)
    write_text_corpus(docs / "drafts", 2, seed=7)
    (docs / "keep" / "notes.md").write_text("# Notes\n\nSome markdown about willow and ember.\n")
    runner = CliRunner()
    res = runner.invoke(
        cli,
        [
            "ingest", str(docs), "-d", str(tmp_path / "data"), "--json",
            "--include", "*.txt", "--exclude", "drafts/", "--workers", "1",
            "--chunk-tokens", "64", "--chunk-overlap", "8", "--groups", "team-a,team.b",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    s = _json(res.stdout)
    assert s["files_seen"] == 2 and s["ingested"] == 2
    assert "warning" not in res.stderr
    (docs / "keep" / "more.txt").write_text("Another note about willow, ember and moss.\n")
    again = runner.invoke(cli, ["ingest", str(docs), "-d", str(tmp_path / "data"), "--json",
                                "--include", "*.txt", "--chunk-tokens", "100"])  # fmt: skip
    assert again.exit_code == 0 and _json(again.stdout)["ingested"] == 3  # drafts/ now too
    assert "built with other settings (chunk_tokens 64 -> 100; chunk_overlap 8 -> 30)" in (
        again.stderr
    )


def test_progress_lines_on_stderr_keep_stdout_exactly_the_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """stderr is not a terminal here: JSON progress lines go there (at the start, every few
    seconds from a thread, at the end), stdout holds only the summary."""
    monkeypatch.setenv("ENCLAVE_EMBEDDER__MODEL", "hash")
    monkeypatch.setattr("ingest.progress.LINE_INTERVAL_S", 0.01)
    docs = tmp_path / "docs"
    write_text_corpus(docs, 4, seed=8)
    app = typer.Typer()
    register(app)
    runner = CliRunner()
    data = str(tmp_path / "data")
    res = runner.invoke(app, ["ingest", str(docs), "-d", data, "--json"])
    assert res.exit_code == 0, res.output
    summary = _json(res.stdout)
    lines = [json.loads(ln) for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) >= 3 and all(set(ln) == {"progress", "final"} for ln in lines)
    first, last = lines[0]["progress"], lines[-1]
    assert (first["files_done"], first["files_total"], first["eta_s"]) == (0, 4, None)
    assert last["final"] and last["progress"]["files_done"] == 4
    assert last["progress"]["ingested"] == summary["ingested"] == 4
    assert last["progress"]["bytes_done"] == last["progress"]["bytes_total"] > 0
    assert last["progress"]["chunks_written"] == summary["chunks_added"]
    quiet = runner.invoke(app, ["ingest", str(docs), "-d", data, "--json", "--no-progress"])
    assert quiet.exit_code == 0 and quiet.stderr == "" and _json(quiet.stdout)["unchanged"] == 4
