"""End to end: real pipeline, real LanceDB, the bundled embedder; the CLI, in-process and over
HTTP against a real uvicorn."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
import uvicorn
from typer.testing import CliRunner

from enclave.settings import Settings
from eval.cli import register
from eval.harness import EvalOptions, run_eval
from models.generator import FakeGenerator


def _settings(data_dir: Path, **extra: Any) -> Settings:
    return Settings(data_dir=data_dir, **extra)


def _cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """test root"""

    register(app)
    return app


@pytest.fixture
def use_bundled(monkeypatch: pytest.MonkeyPatch, bundled_embedder: Any) -> None:
    """CLI runs get the session's (real, bundled) embedder instead of loading it again."""
    import models.embedder
    import models.loading

    monkeypatch.setattr(models.loading, "load_embedder", lambda _settings: bundled_embedder)


def test_jsonl_in_process_with_fake_answers(
    jsonl_dataset: Path, data_dir: Path, bundled_embedder: Any
) -> None:
    settings = _settings(data_dir)
    out = data_dir / "run1"
    outcome = run_eval(
        settings,
        EvalOptions(dataset_dir=jsonl_dataset, out_dir=out, answers=3, progress=False),
        embedder=bundled_embedder,
        generator=FakeGenerator(),
    )
    report = json.loads((out / "report.json").read_text("utf-8"))
    retrieval = report["metrics"]["retrieval"]
    assert retrieval["recall@10"] == 1.0  # six distinct passages: all are ranked
    assert retrieval["recall@1"] >= 0.75
    assert 0.0 < retrieval["ndcg@10"] <= 1.0
    assert len(report["curves"]["recall_at_k"]) == 10
    assert report["retrieval"]["queries_scored"] == 8
    assert report["retrieval"]["unmapped_hits"] == 0
    assert report["metrics"]["speed"]["queries_per_s"] > 0
    # reproducibility
    assert report["dataset"]["hash"] == outcome.report["dataset"]["hash"]
    assert report["index"]["reused"] is False
    assert report["index"]["version"]["chunks"] >= 1
    files = report["models"]["embedder"]["files"]
    assert any(f["path"].endswith(".safetensors") and len(f["sha256"]) == 64 for f in files)
    assert report["models"]["generator"]["name"] == "fake"
    assert report["seed"] == 0 and report["enclave_version"]
    # answers: the fake model's sentence ("Based on the sources [1].") is supported by no
    # passage, so it never reaches the answer: each falls back to the quotes, cited
    answers = report["metrics"]["answers"]
    assert answers["count"] == 3 and answers["errors"] == 0
    assert answers["citation_validity"] == 1.0
    assert answers["abstention_rate"] == 0.0
    assert answers["latency_total_p95_s"] is not None
    assert answers["faithfulness"] == 1.0 and answers["supported_citation_rate"] == 1.0
    for r in report["answers"]:
        assert "Based on the sources" not in r["answer"]
        assert re.search(r"“[^”]+” \[\d+\]", r["answer"]), r["answer"]
    html = (out / "report.html").read_text("utf-8")
    assert html.count("<svg") == 2 and "recall@k" in html
    assert "| retrieval.recall@10 | 1 |" in (out / "report.md").read_text("utf-8")

    # second run: the index is reused, the corpus not ingested again
    again = run_eval(
        settings,
        EvalOptions(
            dataset_dir=jsonl_dataset,
            out_dir=data_dir / "run2",
            no_answers=True,
            progress=False,
            baseline=out / "report.json",
        ),
        embedder=bundled_embedder,
    )
    assert again.report["index"]["reused"] is True
    assert again.report["index"]["dir"] == report["index"]["dir"]
    assert again.report["metrics"]["retrieval"] == retrieval
    deltas = {d.metric: d for d in again.deltas}
    assert deltas["retrieval.recall@10"].delta == 0.0


def test_documents_folder_with_real_generator(
    documents_dataset: Path, data_dir: Path, bundled_embedder: Any
) -> None:
    from enclave.settings import GeneratorSettings
    from models.loading import load_generator

    settings = _settings(
        data_dir,
        generator={"max_tokens": 40, "n_ctx": 2048, "n_threads": 1},
        server={"answer_reserve_tokens": 40},
        retrieval={"top_k": 2},
    )
    generator = load_generator(GeneratorSettings(n_ctx=2048, n_threads=1))
    try:
        outcome = run_eval(
            settings,
            EvalOptions(
                dataset_dir=documents_dataset,
                out_dir=data_dir / "r",
                answers=2,
                seed=3,
                progress=False,
            ),
            embedder=bundled_embedder,
            generator=generator,
        )
    finally:
        generator.close()
    report = outcome.report
    assert report["dataset"]["corpus"] == "documents"
    assert report["metrics"]["retrieval"]["recall@10"] == 1.0
    assert report["retrieval"]["unmapped_hits"] == 0
    assert report["per_query"]["q3"]["docs"][0] == "d-lighthouse.txt"
    rows = report["answers"]
    assert len(rows) == 2 and all(r["error"] == "" for r in rows)
    # the bundled 135M model: answer.mode "auto" quotes instead of generating (no tokens)
    assert report["answer_mode"] == "extract"
    for r in rows:
        assert r["answer"].strip()
        assert r["total_s"] > 0 and r["completion_tokens"] == 0
        assert all(d is not None for d in r["source_docs"])
    assert report["models"]["generator"]["files"][0]["path"].endswith(".gguf")
    answers = report["metrics"]["answers"]
    assert answers["count"] == 2
    assert answers["latency_total_p50_s"] > 0
    assert 0.0 <= answers["token_f1"] <= 1.0
    assert answers["source_hit_rate"] == 1.0  # the lighthouse/bees/... passage was given


def test_cli_gate_and_usage_errors(
    jsonl_dataset: Path, data_dir: Path, use_bundled: None, tmp_path: Path
) -> None:
    runner = CliRunner()
    app = _cli()
    base = ["eval", str(jsonl_dataset), "--data-dir", str(data_dir), "--no-progress"]

    ok_gate = tmp_path / "ok.toml"
    ok_gate.write_text('[min]\n"retrieval.recall@10" = 0.9\n"retrieval.mrr@10" = 0.5\n')
    res = runner.invoke(
        app, [*base, "--no-answers", "--gate", str(ok_gate), "--out", str(tmp_path / "a")]
    )
    assert res.exit_code == 0, res.output
    assert "gate passed" in res.output and "queries/s" in res.output
    assert (tmp_path / "a" / "report.html").is_file()

    bad_gate = tmp_path / "bad.toml"
    bad_gate.write_text(
        '[min]\n"retrieval.recall@10" = 0.9\n[max]\n"speed.retrieval_seconds" = 0.000001\n'
        '[max_regression]\n"retrieval.ndcg@10" = 0.0\n'
    )
    res = runner.invoke(
        app,
        [
            *base,
            "--no-answers",
            "--gate",
            str(bad_gate),
            "--baseline",
            str(tmp_path / "a" / "report.json"),
            "--out",
            str(tmp_path / "b"),
        ],
    )
    assert res.exit_code == 1, res.output
    assert "gate FAILED" in res.output and "FAIL speed.retrieval_seconds" in res.output
    assert "retrieval.ndcg@10" not in [
        c["metric"]
        for c in json.loads((tmp_path / "b" / "report.json").read_text())["gate"]["checks"]
        if not c["ok"]
    ]

    unknown = tmp_path / "unknown.toml"
    unknown.write_text('[min]\n"retrieval.recal@10" = 0.9\n')
    res = runner.invoke(app, [*base, "--gate", str(unknown)])
    assert res.exit_code == 2 and "unknown metric name" in res.output

    res = runner.invoke(app, [*base, "--gate", str(ok_gate.with_name("nope.toml"))])
    assert res.exit_code == 2 and "gate file not found" in res.output
    res = runner.invoke(app, ["eval", str(tmp_path / "missing"), "--data-dir", str(data_dir)])
    assert res.exit_code == 2 and "dataset folder not found" in res.output
    needs_answers = tmp_path / "ans.toml"
    needs_answers.write_text('[max]\n"answers.latency_total_p95_s" = 30\n')
    res = runner.invoke(app, [*base, "--no-answers", "--gate", str(needs_answers)])
    assert res.exit_code == 2 and "answers are not evaluated" in res.output
    regress = tmp_path / "regress.toml"
    regress.write_text('[max_regression]\n"retrieval.ndcg@10" = 0.02\n')
    res = runner.invoke(app, [*base, "--gate", str(regress)])
    assert res.exit_code == 2 and "--baseline" in res.output


# ------------------------------------------------------------------------------- HTTP
@contextmanager
def _serve(app: Any) -> Iterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if server.started and httpx.get(base + "/readyz", timeout=5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not become ready")
        time.sleep(0.05)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def test_http_matches_in_process(
    documents_dataset: Path, data_dir: Path, bundled_embedder: Any
) -> None:
    """A server over the same index scores the same retrieval as the in-process run."""
    from server.app import create_app

    local = run_eval(
        _settings(data_dir),
        EvalOptions(
            dataset_dir=documents_dataset,
            out_dir=data_dir / "local",
            no_answers=True,
            progress=False,
        ),
        embedder=bundled_embedder,
    )
    index_dir = Path(local.report["index"]["dir"])
    from store.db import Store

    server_settings = _settings(index_dir, security={"auth": False})
    app = create_app(
        server_settings,
        generator=FakeGenerator(),
        embedder=bundled_embedder,
        store=Store(server_settings.lance_dir),
    )
    with _serve(app) as url:
        remote = run_eval(
            _settings(data_dir),
            EvalOptions(
                dataset_dir=documents_dataset,
                out_dir=data_dir / "remote",
                answers=2,
                url=url,
                progress=False,
            ),
            embedder=bundled_embedder,
        )
        with pytest.raises(Exception, match="cannot reach"):
            run_eval(
                _settings(data_dir),
                EvalOptions(
                    dataset_dir=documents_dataset,
                    no_answers=True,
                    progress=False,
                    url="http://127.0.0.1:9",
                    out_dir=data_dir / "x",
                ),
            )
    r = remote.report
    assert r["mode"] == "http"
    assert r["retrieval"]["unmapped_hits"] == 0
    assert r["metrics"]["retrieval"] == local.report["metrics"]["retrieval"]
    assert r["per_query"] == local.report["per_query"]
    answers = r["metrics"]["answers"]
    assert answers["count"] == 2 and answers["errors"] == 0
    assert answers["citation_validity"] == 1.0
    assert answers["latency_first_token_p50_s"] is not None
    for row in r["answers"]:
        assert re.search(r"“[^”]+” \[\d+\]", row["answer"]), row["answer"]
        assert (
            row["source_docs"]
            and row["source_docs"][0] in local.report["per_query"][row["id"]]["docs"]
        )
