"""Under load and failure: the bounded queue (429 + Retry-After), cancellation when the client
goes away, request timeouts, readiness, and answers that need no model skipping the queue.
Real uvicorn and the openai SDK; the generator is a fake (blocking or slow) because the
behaviour under test is the server's, not the model's. The fake's words are supported by no
document, so the server never passes them on: an answer whose sentences are all dropped is
the extract (the quotes)."""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from enclave.settings import SecuritySettings, Settings
from models.generator import FakeGenerator
from server.app import create_app
from tests.server.conftest import BlockingGenerator, Live, hash_store, live_server

DOCS = {
    "falcon.md": "Project Falcon launches on 14 March 2027 with a budget of 3.2 million euros.",
    "leave.txt": "Every employee receives 27 days of paid annual leave.",
}
QUESTION = [{"role": "user", "content": "When does Project Falcon launch?"}]
LONG_REPLY = " ".join(f"word{i} [1]" for i in range(3000))


def _server(tmp_path: Path, generator: Any, mode: str = "auto", **server: Any) -> Any:
    settings = Settings(
        data_dir=tmp_path / "data",
        server=server,
        answer={"mode": mode},
        security=SecuritySettings(auth=False),
    )
    store, emb = hash_store(tmp_path / "data", DOCS)
    app = create_app(settings, generator=generator, embedder=emb, store=store)
    return live_server(app, settings)


def sdk(live: Live, timeout: float = 30) -> OpenAI:
    return OpenAI(base_url=live.v1, api_key="x", max_retries=0, timeout=timeout)


def test_full_queue_answers_429_with_retry_after(tmp_path: Path) -> None:
    gen = BlockingGenerator()
    with _server(tmp_path, gen, queue_size=1) as live:
        results: list[Any] = []

        def ask() -> None:
            try:
                results.append(sdk(live).chat.completions.create(model="x", messages=QUESTION))
            except Exception as exc:  # collected and asserted below
                results.append(exc)

        first = threading.Thread(target=ask)
        first.start()
        assert gen.started.acquire(timeout=10)  # the model is busy
        second = threading.Thread(target=ask)
        second.start()
        deadline = time.monotonic() + 10
        while live.metric("enclave_queue_depth") < 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        with pytest.raises(openai.RateLimitError) as info:
            sdk(live).chat.completions.create(model="x", messages=QUESTION)
        assert int(info.value.response.headers["retry-after"]) >= 1
        assert isinstance(info.value.body, dict) and info.value.body["code"] == "queue_full"
        r = httpx.post(live.v1 + "/chat/completions", json={"messages": QUESTION, "stream": True})
        assert r.status_code == 429 and r.json()["error"]["type"] == "rate_limit_error"
        gen.release.set()
        first.join(20)
        second.join(20)
        assert len(results) == 2
        assert all(not isinstance(r, Exception) for r in results), results
        assert live.metric("enclave_rejected_total", cause="queue_full") == 2
        assert live.metric("enclave_queue_depth") == 0


def test_stream_disconnect_cancels_within_a_second(tmp_path: Path) -> None:
    gen = FakeGenerator(reply=LONG_REPLY, token_delay_s=0.01)  # 3,000 tokens: ~60 s if uncut
    with _server(tmp_path, gen) as live:
        stream = sdk(live).chat.completions.create(
            model="x", messages=QUESTION, stream=True, max_tokens=512
        )
        for _chunk in stream:  # the role chunk: the model has started
            break
        stream.close()
        closed = time.monotonic()
        while live.metric("enclave_generations_in_flight") > 0:
            assert time.monotonic() - closed < 1.0, "generation still running after 1 s"
            time.sleep(0.02)
        assert live.metric("enclave_generations_total", finish_reason="cancelled") == 1
        assert live.metric("enclave_cancellations_total", cause="disconnect") == 1
        # the model is free again: the next request is served at once; its one sentence is
        # supported by the passage it cites, so it is the answer
        gen.reply = "Project Falcon launches on 14 March 2027 [1]."
        resp = sdk(live).chat.completions.create(model="x", messages=QUESTION)
        assert resp.choices[0].message.content == "Project Falcon launches on 14 March 2027 [1]."
        gen.reply = "Done [1]."  # supported by nothing: the answer is the quote instead
        resp = sdk(live).chat.completions.create(model="x", messages=QUESTION)
        extra = resp.model_extra or {}
        assert extra["enclave"]["fell_back"] is True
        assert [d.rstrip(".") for d in extra["enclave"]["dropped"]] == ["Done"]
        assert "14 March 2027" in (resp.choices[0].message.content or "")


def test_non_streaming_disconnect_cancels(tmp_path: Path) -> None:
    gen = FakeGenerator(reply=LONG_REPLY, token_delay_s=0.01)
    with _server(tmp_path, gen) as live:
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(
                live.v1 + "/chat/completions",
                json={"messages": QUESTION, "max_tokens": 512},
                timeout=httpx.Timeout(10, read=0.5),
            )
        closed = time.monotonic()
        while live.metric("enclave_generations_in_flight") > 0:
            assert time.monotonic() - closed < 1.0, "generation still running after 1 s"
            time.sleep(0.02)
        assert live.metric("enclave_generations_total", finish_reason="cancelled") == 1


def test_request_timeout(tmp_path: Path) -> None:
    gen = FakeGenerator(reply=LONG_REPLY, token_delay_s=0.01)
    with _server(tmp_path, gen, request_timeout_s=0.6) as live:
        started = time.monotonic()
        r = httpx.post(live.v1 + "/chat/completions", json={"messages": QUESTION}, timeout=10)
        assert r.status_code == 504
        assert r.json()["error"]["code"] == "generation_timeout"
        assert time.monotonic() - started < 3
        chunks = list(sdk(live).chat.completions.create(model="x", messages=QUESTION, stream=True))
        final = chunks[-1]
        assert final.choices[0].finish_reason == "timeout"
        extra = final.model_extra or {}
        assert "word0" not in extra["enclave"]["content"]  # unsupported: never sent
        assert "14 March 2027" in extra["enclave"]["content"]  # the quote instead
        assert extra["citations"][0]["index"] == 1
        assert live.metric("enclave_cancellations_total", cause="timeout") == 2


def test_max_tokens_is_clamped_to_the_cap(tmp_path: Path) -> None:
    gen = FakeGenerator(reply=LONG_REPLY)
    settings = Settings(
        data_dir=tmp_path / "data",
        generator={"max_tokens": 20},
        security=SecuritySettings(auth=False),
    )
    store, emb = hash_store(tmp_path / "data", DOCS)
    app = create_app(settings, generator=gen, embedder=emb, store=store)
    with live_server(app, settings) as live:
        resp = sdk(live).chat.completions.create(model="x", messages=QUESTION, max_tokens=100_000)
        assert resp.choices[0].finish_reason == "length"
        assert resp.usage is not None and resp.usage.completion_tokens == 20


def test_models_load_in_the_lifespan(tmp_path: Path) -> None:
    ok = Settings(
        data_dir=tmp_path / "ok",
        embedder={"model": "hash"},
        generator={"model": "fake"},
        security=SecuritySettings(auth=False),
    )
    with live_server(create_app(ok), ok) as live:  # waits until /readyz says 200
        ready = httpx.get(live.base_url + "/readyz").json()
        assert ready["generator"] == "fake" and ready["embedder"] == "hash-64"


def test_failed_loading_is_503_not_500(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    broken = Settings(
        data_dir=tmp_path / "broken",
        embedder={"model": str(tmp_path / "no-such-model")},
        generator={"model": "fake"},
        security=SecuritySettings(auth=False),
    )
    app = create_app(broken)
    with TestClient(app) as client:
        app.state.enclave.wait_loaded(30)
        assert client.get("/healthz").status_code == 200
        r = client.get("/readyz")
        assert r.status_code == 503 and "no-such-model" in r.json()["error"]["message"]
        r = client.post("/v1/search", json={"query": "x"})
        assert r.status_code == 503 and r.json()["error"]["code"] == "model_unavailable"
        assert r.headers["retry-after"] == "5"


def test_a_burst_beyond_capacity_is_refused_at_once_never_timed_out(tmp_path: Path) -> None:
    """Every answer holds the model about a second (20 tokens at 50 ms) and a request may take
    4 s: of a burst of 10, the ones that fit are admitted and answered (streams included),
    the rest are refused at once with a Retry-After that matches the measured hold; no 504."""
    reply = " ".join(f"w{i}" for i in range(19)) + " [1]"
    gen = FakeGenerator(reply=reply, token_delay_s=0.05)
    with _server(tmp_path, gen, request_timeout_s=4.0, queue_size=8) as live:
        body = {"messages": QUESTION, "max_tokens": 20}
        warm = httpx.post(live.v1 + "/chat/completions", json=body, timeout=30)
        assert warm.status_code == 200  # one measured generation
        per_token = live.metric("enclave_expected_decode_seconds_per_token")
        assert 0.045 <= per_token <= 0.1, per_token
        hold = 20 * per_token  # the expected hold of each request of the burst
        results: list[tuple[int, float, httpx.Response]] = []
        lock = threading.Lock()
        go = threading.Event()

        def ask(i: int) -> None:
            stream = i % 2 == 1
            go.wait(10)
            started = time.monotonic()
            with httpx.Client(timeout=30) as client:
                r = client.post(live.v1 + "/chat/completions", json={**body, "stream": stream})
                took = time.monotonic() - started
            with lock:
                results.append((i, took, r))

        clients = [threading.Thread(target=ask, args=(i,)) for i in range(10)]
        for c in clients:
            c.start()
        go.set()
        for c in clients:
            c.join(30)
        codes = sorted(r.status_code for _, _, r in results)
        assert len(codes) == 10 and set(codes) <= {200, 429}, codes
        served = [(i, took, r) for i, took, r in results if r.status_code == 200]
        refused = [(i, took, r) for i, took, r in results if r.status_code == 429]
        # about 3.6 s of work fits before a deadline 4 s away, at about a second each
        assert 2 <= len(served) <= 5 and len(refused) >= 5, codes
        for i, took, r in served:  # within the deadline, counted by the server from arrival
            assert took < 6.0, (i, took)
            if i % 2 == 1:  # a stream that started ends normally, with its whole answer
                assert r.headers["content-type"].startswith("text/event-stream")
                assert '"finish_reason":"stop"' in r.text and r.text.endswith("data: [DONE]\n\n")
            else:
                answer = r.json()
                assert answer["choices"][0]["finish_reason"] == "stop"
                assert answer["enclave"]["timings"]["total_s"] < 4.0
        for _, took, r in refused:
            assert took < 2.0  # at once, not after a wait (a served answer takes 1 s or more)
            error = r.json()["error"]
            assert error["code"] == "queue_full" and "retry in" in error["message"]
            # seconds until the work ahead leaves room: at most the admitted work
            retry_after = int(r.headers["retry-after"])
            assert 1 <= retry_after <= math.ceil(len(served) * hold) + 1, (retry_after, hold)
        assert live.metric("enclave_rejected_total", cause="deadline") == len(refused)
        assert live.metric("enclave_cancellations_total", cause="timeout") == 0
        assert live.metric("enclave_admitted_requests") == 0
        # a refused client that waits as told is served
        time.sleep(max(int(r.headers["retry-after"]) for _, _, r in refused))
        again = httpx.post(live.v1 + "/chat/completions", json=body, timeout=30)
        assert again.status_code == 200


def test_extract_answers_are_not_refused_while_the_model_is_busy(tmp_path: Path) -> None:
    """With queue_size 0 and the model busy, a request that needs the model gets 429; with
    ``answer.mode = "extract"`` no answer needs it, so none waits for it nor is refused."""
    gen = BlockingGenerator()
    with _server(tmp_path, gen, mode="generate", queue_size=0) as live:
        answer = live.app.state.enclave.services.rag.settings.answer
        busy = threading.Thread(
            target=lambda: sdk(live).chat.completions.create(model="x", messages=QUESTION)
        )
        busy.start()
        try:
            assert gen.started.acquire(timeout=10)  # the model is busy
            with pytest.raises(openai.RateLimitError):
                sdk(live).chat.completions.create(model="x", messages=QUESTION)
            answer.mode = "extract"
            started = time.monotonic()
            resp = sdk(live).chat.completions.create(model="x", messages=QUESTION)
            chunks = list(
                sdk(live).chat.completions.create(model="x", messages=QUESTION, stream=True)
            )
            assert time.monotonic() - started < 5
            extra = resp.model_extra or {}
            assert extra["enclave"]["mode"] == "extract" and 1 in extra["enclave"]["verified"]
            assert "14 March 2027" in (resp.choices[0].message.content or "")
            assert chunks[-1].choices[0].finish_reason == "stop"
            assert live.metric("enclave_rejected_total", cause="queue_full") == 1
        finally:
            gen.release.set()
            busy.join(20)
