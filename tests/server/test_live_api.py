"""The API end to end: real uvicorn on loopback, the official openai SDK, the real bundled
embedder and SmolLM2 over documents ingested by the pipeline.

The server runs the default ``answer.mode = "auto"``, which with the bundled 135M model
quotes (extract); tests of the model's path switch it to ``generate`` (:func:`generate_mode`).
The 135M model's prose is not asserted; the sources retrieval put forward, the citation and
support checks are."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from rag.citations import strip_citations, verify_citations
from rag.prompt import ABSTAIN_TEXT
from tests.server.conftest import DOCS, Live, write_docs


@pytest.fixture
def generate_mode(rag_server: Live) -> Any:
    """The server answers with the model (``answer.mode = "generate"``) for one test."""
    answer = rag_server.app.state.enclave.services.rag.settings.answer
    answer.mode = "generate"
    yield rag_server
    answer.mode = "auto"


def _squash(text: str) -> str:
    return " ".join(text.split())


DOC_TEXT = _squash(" ".join(DOCS.values()))


def sdk(live: Live) -> OpenAI:
    return OpenAI(base_url=live.v1, api_key="x", max_retries=0, timeout=180)


def generations(live: Live) -> float:
    return sum(
        live.metric("enclave_generations_total", finish_reason=r)
        for r in ("stop", "length", "cancelled", "error")
    )


def _check_citations(content: str, extra: dict[str, Any]) -> None:
    sources = extra["sources"]
    assert [s["index"] for s in sources] == list(range(1, len(sources) + 1))
    for n in re.findall(r"\[(\d+)\]", content):
        assert 1 <= int(n) <= len(sources), content
    cited = extra["enclave"]["verified"]
    assert [c["index"] for c in extra["citations"]] == cited
    for c in extra["citations"]:
        assert c["verified"] is True
        assert sources[c["index"] - 1]["chunk_id"] == c["chunk_id"]
    for s in sources:
        assert s["verified"] == (s["index"] in cited)
        assert set(s) >= {
            "index",
            "doc_id",
            "source",
            "title",
            "page",
            "heading_path",
            "chunk_id",
            "score",
            "snippet",
            "verified",
            "attributed",
        }
    # uncited sentences matched to sources: in the text, pointing at a listed source
    attributed = extra["enclave"]["attributed"]
    for a in attributed:
        assert a["sentence"] in strip_citations(content) or a["sentence"] in content
        assert a["index"] not in cited or a["sentence"] not in content
        assert 1 <= a["index"] <= len(sources)
    for s in sources:
        assert s["attributed"] == (s["index"] in {a["index"] for a in attributed})


def test_chat_answer_lists_the_right_file(rag_server: Live) -> None:
    resp = sdk(rag_server).chat.completions.create(
        model="whatever-the-client-says",
        messages=[{"role": "user", "content": "When is the launch date of Project Falcon?"}],
        max_tokens=40,
        temperature=0,
        top_p=0.9,  # accepted and ignored
        user="tester",
    )
    extra = resp.model_extra or {}
    assert resp.object == "chat.completion"
    assert resp.model == rag_server.app.state.enclave.services.generator.name
    assert Path(extra["sources"][0]["source"]).name == "falcon.md"
    content = resp.choices[0].message.content or ""
    assert resp.choices[0].finish_reason == "stop"
    # auto mode with the 135M model: the answer is quotes, cited by construction, no model call
    assert extra["enclave"]["mode"] == "extract" and extra["enclave"]["abstained"] is False
    assert resp.usage is not None and resp.usage.total_tokens == 0
    assert "14 March 2027" in content
    quotes = extra["enclave"]["quotes"]
    assert quotes and len(content.splitlines()) == len(quotes)
    for line, quote in zip(content.splitlines(), quotes, strict=True):
        assert line.endswith(f"“{quote['text']}” [{quote['index']}]")
        assert _squash(quote["text"]) in DOC_TEXT  # the document's own words
        assert quote["index"] in extra["enclave"]["verified"]
    _check_citations(content, extra)


def test_generated_answer_keeps_only_supported_sentences(generate_mode: Live) -> None:
    resp = sdk(generate_mode).chat.completions.create(
        model="x",
        messages=[{"role": "user", "content": "When is the launch date of Project Falcon?"}],
        max_tokens=40,
        temperature=0,
    )
    extra = resp.model_extra or {}
    content = resp.choices[0].message.content or ""
    assert extra["enclave"]["mode"] == "generate"
    assert resp.usage is not None and resp.usage.prompt_tokens > 50
    assert 0 < resp.usage.completion_tokens <= 40
    assert content.strip() and "</" not in content and "<|" not in content
    # every sentence left is supported by the source it cites (else it is the extract)
    from eval.answer_metrics import faithfulness

    texts = {s["index"]: DOCS[Path(s["source"]).name] for s in extra["sources"]}
    assert all(x.supported for x in faithfulness(content, texts)), content
    assert extra["enclave"]["verified"]
    _check_citations(content, extra)


def test_chat_streaming_chunks_and_final_event(generate_mode: Live) -> None:
    rag_server = generate_mode
    stream = sdk(rag_server).chat.completions.create(
        model="x",
        messages=[
            {"role": "user", "content": "Hello"},
            {"role": "assistant", "content": "Hi! Ask me about your documents [1]."},
            {"role": "user", "content": "How many days of paid annual leave do employees get?"},
        ],
        max_tokens=32,
        stream=True,
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    final = chunks[-1]
    assert final.choices[0].finish_reason in ("stop", "length")
    extra = final.model_extra or {}
    assert final.usage is not None and final.usage.completion_tokens > 0
    assert Path(extra["sources"][0]["source"]).name == "leave.txt"
    raw = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert raw.strip()
    # only verified sentences were streamed (or, when none was, the extract): the final
    # event's text is what was sent, with valid markers only
    content = extra["enclave"]["content"]
    assert content.strip() in raw
    assert verify_citations(content, len(extra["sources"])).removed == []
    _check_citations(content, extra)


def test_extract_streams_one_quote_per_delta(rag_server: Live) -> None:
    stream = sdk(rag_server).chat.completions.create(
        model="x",
        messages=[{"role": "user", "content": "How many weeks is parental leave?"}],
        stream=True,
    )
    chunks = list(stream)
    final = chunks[-1]
    extra = final.model_extra or {}
    deltas = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert "".join(d or "" for d in deltas) == extra["enclave"]["content"]
    assert len(deltas) == len(extra["enclave"]["quotes"])
    assert "16 weeks" in extra["enclave"]["content"]
    assert final.usage is not None and final.usage.total_tokens == 0


def test_off_topic_question_abstains_without_the_model(rag_server: Live) -> None:
    before = generations(rag_server)
    resp = sdk(rag_server).chat.completions.create(
        model="x", messages=[{"role": "user", "content": "How do I bake sourdough bread?"}]
    )
    extra = resp.model_extra or {}
    assert resp.choices[0].message.content == ABSTAIN_TEXT
    assert extra["enclave"]["abstained"] is True
    assert extra["citations"] == [] and extra["sources"] == []
    assert resp.usage is not None and resp.usage.total_tokens == 0
    assert generations(rag_server) == before


def test_search_and_filters(rag_server: Live) -> None:
    url = rag_server.v1 + "/search"
    r = httpx.post(url, json={"query": "How many days of paid leave?", "top_k": 2})
    assert r.status_code == 200
    results = r.json()["results"]
    assert 1 <= len(results) <= 2
    assert Path(results[0]["source"]).name == "leave.txt"
    assert set(results[0]) >= {
        "chunk_id",
        "doc_id",
        "source",
        "title",
        "page",
        "heading_path",
        "score",
        "text",
    }
    assert "27 days" in results[0]["text"]
    folder = str(Path(results[0]["source"]).parent)
    only = httpx.post(
        url,
        json={"query": "paid leave", "filters": {"path_prefix": folder + "/security"}},
    ).json()["results"]
    assert only and {Path(x["source"]).name for x in only} == {"security.md"}
    by_id = httpx.post(
        url, json={"query": "paid leave", "filters": {"doc_ids": [results[0]["doc_id"]]}}
    ).json()["results"]
    assert {x["doc_id"] for x in by_id} == {results[0]["doc_id"]}


def test_documents_list_and_show(rag_server: Live) -> None:
    listing = httpx.get(rag_server.v1 + "/documents", params={"limit": 2}).json()
    assert listing["total"] >= 3 and len(listing["data"]) == 2 and listing["has_more"]
    rest = httpx.get(rag_server.v1 + "/documents", params={"limit": 2, "offset": 2}).json()
    names = {Path(d["path"]).name for d in listing["data"] + rest["data"]}
    assert {"falcon.md", "leave.txt", "security.md"} <= names
    via_sdk: Any = sdk(rag_server).get(
        "/documents", cast_to=object, options={"params": {"limit": 2}}
    )
    assert via_sdk["data"] == listing["data"]
    doc = listing["data"][0]
    shown = httpx.get(f"{rag_server.v1}/documents/{doc['id']}").json()
    assert shown["id"] == doc["id"] and len(shown["chunks"]) == doc["chunk_count"] >= 1
    assert shown["chunks"][0]["preview"]
    for bad in ("0" * 24, "not-an-id", "x" * 150):
        r = httpx.get(f"{rag_server.v1}/documents/{bad}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = httpx.get(rag_server.v1 + "/documents", params={"status": "weird"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "status"


def test_ingested_while_running_then_deleted(rag_server: Live, bundled_embedder: Any) -> None:
    from ingest.pipeline import ingest_paths

    extra_dir = Path(rag_server.settings.data_dir).parent / "later"
    write_docs(
        extra_dir,
        {
            "orion.md": "# Project Orion\n\nProject Orion builds the warehouse robots. Its "
            "budget is 7.5 million kroner and the robots are nicknamed Bluebirds.\n"
        },
    )
    question = "What are the Project Orion warehouse robots nicknamed?"
    before = httpx.post(rag_server.v1 + "/search", json={"query": question}).json()["results"]
    assert all(Path(r["source"]).name != "orion.md" for r in before)
    # another writer (its own Store connection) adds a file while the server runs
    summary = ingest_paths(rag_server.settings, [extra_dir], embedder=bundled_embedder)
    assert summary.ingested == 1
    # the server follows the promoted release within the documented 2 s (docs/api.md)
    deadline = time.monotonic() + 2.5
    while True:
        after = httpx.post(rag_server.v1 + "/search", json={"query": question}).json()["results"]
        if Path(after[0]["source"]).name == "orion.md" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert Path(after[0]["source"]).name == "orion.md"
    resp = sdk(rag_server).chat.completions.create(
        model="x", messages=[{"role": "user", "content": question}], max_tokens=16
    )
    sources = (resp.model_extra or {})["sources"]
    assert Path(sources[0]["source"]).name == "orion.md"

    doc_id = after[0]["doc_id"]
    deleted = httpx.delete(f"{rag_server.v1}/documents/{doc_id}").json()
    assert deleted["deleted"] is True and deleted["chunks_deleted"] >= 1
    assert httpx.get(f"{rag_server.v1}/documents/{doc_id}").status_code == 404
    assert httpx.delete(f"{rag_server.v1}/documents/{doc_id}").status_code == 404
    gone = httpx.post(rag_server.v1 + "/search", json={"query": question}).json()["results"]
    assert all(r["doc_id"] != doc_id for r in gone)
    resp = sdk(rag_server).chat.completions.create(
        model="x", messages=[{"role": "user", "content": question}], max_tokens=16
    )
    extra = resp.model_extra or {}
    assert all(s["doc_id"] != doc_id for s in extra["sources"] + extra["citations"])


def test_stream_disconnect_stops_the_real_model(generate_mode: Live) -> None:
    rag_server = generate_mode
    cancelled = rag_server.metric("enclave_generations_total", finish_reason="cancelled")
    stream = sdk(rag_server).chat.completions.create(
        model="x",
        messages=[
            {
                "role": "user",
                "content": "Describe Project Falcon in great detail: purpose, launch date, budget, "
                "project lead and risks. Write at least three long paragraphs.",
            }
        ],
        max_tokens=64,
        stream=True,
    )
    for _chunk in stream:  # the role chunk: the model has started
        break
    stream.close()
    closed = time.monotonic()
    while rag_server.metric("enclave_generations_in_flight") > 0:
        assert time.monotonic() - closed < 1.0, "generation still running 1 s after disconnect"
        time.sleep(0.02)
    assert (
        rag_server.metric("enclave_generations_total", finish_reason="cancelled") == cancelled + 1
    )


def test_prompt_too_long_is_400(generate_mode: Live) -> None:
    rag_server = generate_mode
    question = "When does Project Falcon launch? " + "Falcon budget details " * 900
    with pytest.raises(openai.BadRequestError) as info:
        sdk(rag_server).chat.completions.create(
            model="x", messages=[{"role": "user", "content": question}]
        )
    err = info.value.body
    assert isinstance(err, dict) and err["code"] == "context_length_exceeded"
    assert "tokens" in err["message"]


BAD_BODIES: list[tuple[bytes | dict[str, Any] | list[Any], str | None]] = [
    (b"{not json", None),
    (b"", None),
    ([], None),
    ({}, "messages"),
    ({"messages": "hello"}, "messages"),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"messages": [{"role": "assistant", "content": "x"}]}, None),
    ({"messages": [{"role": "user", "content": "  "}]}, None),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n"),
    ({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, "temperature"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function"}]}, "tools"),
    ({"messages": [{"role": "user", "content": "x"}], "enclave": {"top_k": 0}}, None),
    (
        {
            "messages": [{"role": "user", "content": "x"}],
            "filters": {"doc_ids": ["'; drop table chunks; --"]},
        },
        None,
    ),
    ({"messages": [{"role": "user", "content": "x\u0000y"}]}, None),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]}, None),
]


def test_malformed_requests_get_openai_errors(rag_server: Live) -> None:
    url = rag_server.v1 + "/chat/completions"
    for body, param in BAD_BODIES:
        if isinstance(body, bytes):
            r = httpx.post(url, content=body, headers={"content-type": "application/json"})
        else:
            r = httpx.post(url, json=body)
        assert r.status_code == 400, (body, r.status_code, r.text)
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"}
        assert err["type"] == "invalid_request_error" and err["message"]
        if param is not None:
            assert err["param"] == param, (body, err)
    huge = b'{"messages": [{"role": "user", "content": "' + b"a" * 1_100_000 + b'"}]}'
    r = httpx.post(url, content=huge, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    r = httpx.get(url)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    r = httpx.post(rag_server.v1 + "/nope", json={})
    assert r.status_code in (404, 405) and "error" in r.json()


def test_models_embeddings_health_and_metrics(rag_server: Live, bundled_embedder: Any) -> None:
    client = sdk(rag_server)
    ids = {m.id for m in client.models.list().data}
    assert bundled_embedder.name in ids
    assert rag_server.app.state.enclave.services.generator.name in ids
    emb = client.embeddings.create(model="x", input=["paid leave", "disk encryption"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) == 384
    assert abs(sum(x * x for x in emb.data[0].embedding) - 1.0) < 1e-3
    one = httpx.post(rag_server.v1 + "/embeddings", json={"input": "paid leave"}).json()
    assert one["data"][0]["embedding"] == pytest.approx(emb.data[0].embedding, abs=1e-5)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="x", input="word " * 600)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model="x", input=[])
    assert httpx.get(rag_server.base_url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(rag_server.base_url + "/readyz").json()
    assert ready["status"] == "ready" and ready["index"]["chunks"] >= 3
    assert (
        rag_server.metric(
            "enclave_requests_total", route="/v1/embeddings", method="POST", status="200"
        )
        >= 2
    )
    httpx.post(rag_server.v1 + "/search", json={"query": "leave"})
    assert rag_server.metric("enclave_stage_seconds_count", stage="retrieve") >= 1


def test_event_loop_stays_responsive_during_generation(generate_mode: Live) -> None:
    rag_server = generate_mode
    done = threading.Event()

    def ask() -> None:
        try:
            sdk(rag_server).chat.completions.create(
                model="x",
                messages=[{"role": "user", "content": "Who is the Project Falcon lead?"}],
                max_tokens=48,
            )
        finally:
            done.set()

    t = threading.Thread(target=ask)
    t.start()
    deadline = time.monotonic() + 30
    while rag_server.metric("enclave_generations_in_flight") < 1 and not done.is_set():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    started = time.monotonic()
    assert httpx.get(rag_server.base_url + "/healthz", timeout=5).status_code == 200
    assert time.monotonic() - started < 1.0
    t.join(120)
