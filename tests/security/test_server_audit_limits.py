"""Audit, limits and start-up refusals against a real server (real uvicorn on loopback, the
real pipeline and bundled embedder; FakeGenerator: the prose is not under test)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import typer
from typer.testing import CliRunner

from enclave.security.audit import read_tail, verify_log
from enclave.settings import RetrievalSettings, Settings
from models.generator import FakeGenerator
from tests.security.server_support import auth, ingest, make_key, sdk, serve
from tests.server.conftest import DOCS, Live, write_docs

QUESTION = [{"role": "user", "content": "When does Project Falcon launch?"}]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, bundled_embedder: Any) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("audit")
    settings = Settings(data_dir=root / "data", retrieval=RetrievalSettings(top_k=3))
    write_docs(root / "docs", DOCS)
    ingest(settings, root / "docs", bundled_embedder, ["staff"])
    with serve(settings, FakeGenerator(context_size=4096), bundled_embedder) as server:
        yield server


def _records(data_dir: Path, want: int, timeout: float = 10) -> list[dict[str, Any]]:
    """The audit records, once ``want`` of them are written (they follow the response)."""
    deadline = time.monotonic() + timeout
    while True:
        recs = read_tail(data_dir, n=10_000)
        if len(recs) >= want or time.monotonic() > deadline:
            return recs
        time.sleep(0.05)


def test_audit_log_written_by_the_server_verifies_and_detects_tampering(
    live: Live, cli_app: typer.Typer, tmp_path: Path
) -> None:
    data = live.settings.data_dir
    user = make_key(live.settings, "auditor", groups=["staff"])
    client = sdk(live, user)
    before = len(read_tail(data, n=10_000))
    # a mixed session: chat (plain and streaming), search, documents, embeddings, errors
    answer = client.chat.completions.create(model="x", messages=QUESTION)  # type: ignore[arg-type]
    assert answer.choices[0].message.content
    stream = client.chat.completions.create(model="x", messages=QUESTION, stream=True)  # type: ignore[arg-type]
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)  # type: ignore[union-attr]
    client.embeddings.create(model="x", input=["hello world", "second"])
    with httpx.Client(base_url=live.base_url, timeout=60) as http:
        h = auth(user)
        assert http.post("/v1/search", json={"query": "Falcon"}, headers=h).status_code == 200
        assert http.get("/v1/documents", headers=h).status_code == 200
        assert http.get("/v1/documents/" + "0" * 24, headers=h).status_code == 404
        assert http.post("/v1/search", json={"query": "x"}).status_code == 401
        assert http.post("/v1/search", json={"top_k": 0}, headers=h).status_code == 400
    recs = _records(data, before + 8)[before:]
    assert len(recs) == 8, [r["endpoint"] for r in recs]
    by_endpoint = [(r["endpoint"], r["outcome"]) for r in recs]
    assert ("/v1/search", "invalid_api_key") in by_endpoint
    assert ("/v1/search", "invalid_request") in by_endpoint
    assert ("/v1/documents/" + "0" * 24, "not_found") in by_endpoint
    chats = [r for r in recs if r["endpoint"] == "/v1/chat/completions"]
    assert len(chats) == 2 and {r["extra"]["stream"] for r in chats} == {True, False}
    for r in chats:
        assert r["principal"]["name"] == "auditor" and r["outcome"] == "ok"
        assert r["retrieved"] and r["cited"]
        assert all(len(ref["doc_sha256"]) == 64 for ref in r["retrieved"] + r["cited"])
        assert r["tokens"]["prompt"] > 0 and r["tokens"]["completion"] > 0
        assert "Falcon" not in json.dumps(r)  # questions are hashed by default
    embed = next(r for r in recs if r["endpoint"] == "/v1/embeddings")
    assert embed["extra"] == {"inputs": 2} and "hello" not in json.dumps(embed)
    unauth = next(r for r in recs if r["outcome"] == "invalid_api_key")
    assert unauth["principal"] is None and unauth["status"] == 401

    runner = CliRunner()
    ok = runner.invoke(cli_app, ["audit", "verify", "--data-dir", str(data)])
    assert ok.exit_code == 0 and "ok:" in ok.output
    assert verify_log(data).ok

    # each kind of tampering, on a copy of the server-written log
    lines = (data / "audit" / "audit.jsonl").read_text(encoding="utf-8").splitlines(True)
    assert len(lines) >= 8

    def tampered(name: str, new_lines: list[str]) -> bool:
        copy = tmp_path / name
        shutil.copytree(data / "audit", copy / "audit")
        (copy / "audit" / "audit.jsonl").write_text("".join(new_lines), encoding="utf-8")
        result = runner.invoke(cli_app, ["audit", "verify", "--data-dir", str(copy)])
        return result.exit_code == 1 and "TAMPERED" in result.output

    edited = json.loads(lines[2])
    edited["outcome"] = "ok" if edited["outcome"] != "ok" else "forbidden"
    assert tampered("edit", [*lines[:2], json.dumps(edited) + "\n", *lines[3:]])
    assert tampered("delete", lines[:3] + lines[4:])
    assert tampered("swap", [*lines[:2], lines[3], lines[2], *lines[4:]])
    assert tampered("truncate", lines[:-2])
    assert tampered("append", [*lines, lines[-1]])


def test_rate_limit_and_budget_answer_429_through_the_sdk(live: Live) -> None:
    slow = sdk(live, make_key(live.settings, "one-per-minute", groups=["staff"], rpm=1))
    slow.chat.completions.create(model="x", messages=QUESTION)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError) as info:
        slow.chat.completions.create(model="x", messages=QUESTION)  # type: ignore[arg-type]
    assert "rate limit of 1 requests per minute for key 'one-per-minute'" in str(info.value)
    assert 1 <= int(info.value.response.headers["Retry-After"]) <= 60

    budget = sdk(live, make_key(live.settings, "small-budget", groups=["staff"], daily_tokens=60))
    budget.chat.completions.create(model="x", messages=QUESTION)  # type: ignore[arg-type]
    with pytest.raises(openai.RateLimitError) as info:
        budget.chat.completions.create(model="x", messages=QUESTION)  # type: ignore[arg-type]
    assert "daily token budget of 60 tokens for key 'small-budget'" in str(info.value)
    assert "resets at 00:00 UTC" in str(info.value)
    assert int(info.value.response.headers["Retry-After"]) <= 86400
    with pytest.raises(openai.RateLimitError, match="daily token budget"):
        budget.embeddings.create(model="x", input="hello")

    # caps: max_tokens is clamped, over-long prompts are refused
    root = make_key(live.settings, "usage-admin", admin=True)
    with httpx.Client(base_url=live.base_url, timeout=60) as http:
        usage = http.get("/v1/usage", headers=auth(root)).json()
        rows = {k["name"]: k for k in usage["keys"]}
        assert rows["small-budget"]["total_tokens"] > 60
        assert rows["small-budget"]["remaining_tokens"] == 0
        assert rows["one-per-minute"]["rpm"] == 1
        metrics = http.get("/metrics", headers=auth(root)).text
        assert 'enclave_key_tokens_today{key="small-budget"}' in metrics
        assert 'enclave_rate_limited_total{limit="rpm"} 1.0' in metrics
        assert 'enclave_rate_limited_total{limit="daily"}' in metrics
        long = {"role": "user", "content": "word " * 7000}
        r = http.post(
            "/v1/chat/completions",
            json={"model": "x", "messages": [long]},
            headers=auth(root),
        )
        assert r.status_code == 400 and "security.max_prompt_tokens" in r.text


def test_serve_refuses_no_auth_off_loopback(tmp_path: Path) -> None:
    import server.cli as server_cli

    app = typer.Typer()
    server_cli.register(app)
    app.command("noop")(lambda: None)
    args = ["serve", "--data-dir", str(tmp_path / "d"), "--host", "0.0.0.0", "--no-auth"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "refusing to serve without authentication on 0.0.0.0" in result.output
