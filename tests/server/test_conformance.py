"""What the API tells a client besides its answers: 400 messages that name the field and what
was expected, the 405's ``Allow``, odd paths, and an OpenAPI schema that declares what the
server answers. In-process (the fuzz app of test_fuzz.py: fake generator, hash embedder)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.server.test_fuzz import APP

USER = [{"role": "user", "content": "x"}]


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(APP, base_url="http://enclave.test")


CHAT_400: list[tuple[bytes | dict[str, Any] | list[Any], str, str | None]] = [
    (b"{not json", "the request body is not valid JSON", None),
    (b"", "the request body is required: a JSON object", None),
    ([], "the request body must be a JSON object", None),
    ({}, "messages: this field is required", "messages"),
    ({"messages": "hello"}, "messages: expected a list", "messages"),
    ({"messages": []}, "messages: expected at least 1 items", "messages"),
    (
        {"messages": [{"role": "tool", "content": "x"}]},
        "messages[0].role: expected 'system', 'developer', 'user' or 'assistant' (got 'tool')",
        "messages[0].role",
    ),
    (
        {"messages": [{"role": "user", "content": 5}]},
        "messages[0].content: expected a string or a list of text parts",
        "messages[0].content",
    ),
    (
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
        "messages[0].content[0].type: expected 'text' (got 'image_url')",
        "messages[0].content[0].type",
    ),
    (
        {"messages": [{"role": "user", "content": "x\u0000y"}]},
        "messages[0].content: text must not contain NUL characters",
        "messages[0].content",
    ),
    ({"messages": USER, "n": 2}, "n: expected a number <= 1", "n"),
    (
        {"messages": USER, "tools": [{"type": "function"}]},
        "tools: expected at most 0 items",
        "tools",
    ),
    ({"messages": USER, "stop": list("abcde")}, "stop: expected at most 4 items", "stop"),
    (
        {"messages": USER, "response_format": {"type": "json_object"}},
        "response_format.type: expected 'text' (got 'json_object')",
        "response_format.type",
    ),
    (
        {"messages": USER, "filters": {"doc_ids": ["'; drop table chunks; --"]}},
        "filters.doc_ids[0]: expected text matching ^[0-9a-f]{8,64}$",
        "filters.doc_ids[0]",
    ),
    ({"messages": USER, "enclave": {"nope": 1}}, "enclave.nope: unknown field", "enclave.nope"),
    (
        {"messages": USER, "temperature": "hot", "n": 3},
        "temperature: expected a number (and 1 more error)",
        "temperature",
    ),
]


@pytest.mark.parametrize(("body", "message", "param"), CHAT_400)
def test_a_400_names_the_field_and_what_was_expected(
    client: TestClient, body: bytes | dict[str, Any] | list[Any], message: str, param: str | None
) -> None:
    if isinstance(body, bytes):
        headers = {"content-type": "application/json"}
        r = client.post("/v1/chat/completions", content=body, headers=headers)
    else:
        r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert (error["message"], error["param"]) == (message, param)
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_request"


def test_embedding_and_query_messages(client: TestClient) -> None:
    cases = [
        ({"input": 5}, "input: expected a string or a list of strings", "input"),
        ({"input": []}, "input: expected at least 1 items", "input"),
        ({"input": ["a", ""]}, "input[1]: expected at least 1 characters", "input[1]"),
        ({"input": "a", "encoding_format": "hex"}, None, "encoding_format"),
    ]
    for body, message, param in cases:
        error = client.post("/v1/embeddings", json=body).json()["error"]
        assert error["param"] == param
        if message is not None:
            assert error["message"] == message
    error = client.get("/v1/documents", params={"status": "gone"}).json()["error"]
    assert error["message"] == (
        "status: expected 'ok', 'empty', 'failed' or 'quarantined' (got 'gone')"
    )


def test_schema_valid_requests_are_served(client: TestClient) -> None:
    """What the schema admits is answered: blank embedding inputs are embedded, a blank
    search query finds nothing, the embedder's own dimension is accepted."""
    r = client.post("/v1/embeddings", json={"input": ["  ", "x"], "dimensions": 64})
    assert r.status_code == 200 and len(r.json()["data"]) == 2
    r = client.post("/v1/search", json={"query": " \u000b "})
    assert r.status_code == 200 and r.json() == {"object": "list", "results": [], "relevant": False}


def test_a_405_allows_every_method_of_the_path(client: TestClient) -> None:
    for method in ("PUT", "POST", "PATCH"):
        r = client.request(method, "/v1/documents/0123456789abcdef01234567")
        assert r.status_code == 405
        assert r.headers["allow"] == "GET, DELETE"
        assert r.json()["error"]["code"] == "method_not_allowed"
    assert client.put("/v1/chat/completions").headers["allow"] == "POST"


@pytest.mark.parametrize(
    "path", ["//metrics", "//", "//index.html", "/v1//models", "//v1/models", "/static/../x"]
)
def test_odd_paths_are_a_json_404_not_the_web_page(client: TestClient, path: str) -> None:
    # a full URL: httpx would read "//metrics" alone as a host name
    r = client.get("http://enclave.test" + path)
    assert r.status_code == 404, (path, r.text[:80])
    assert r.json()["error"]["code"] == "not_found"
    assert client.get("/").headers["content-type"].startswith("text/html")


def test_the_schema_declares_what_the_server_answers(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    assert "HTTPValidationError" not in components
    error_ref = {"$ref": "#/components/schemas/ErrorResponse"}
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            assert "422" not in responses, (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    assert response["content"]["application/json"]["schema"] == error_ref
            if path.startswith("/v1/"):
                assert "401" in responses, (method, path)
    chat = schema["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert {"400", "401", "413", "429", "503", "504"} <= set(chat)
    assert set(chat["200"]["content"]) == {"application/json", "text/event-stream"}
    assert chat["429"]["headers"]["Retry-After"]["required"] is True
    document = schema["paths"]["/v1/documents/{doc_id}"]
    assert "404" in document["get"]["responses"] and "403" in document["delete"]["responses"]
    roles = components["ChatMessage"]["properties"]["role"]["enum"]
    assert roles == ["system", "developer", "user", "assistant"]
    dimensions = components["EmbeddingRequest"]["properties"]["dimensions"]
    assert {"type": "integer", "const": 64} in dimensions["anyOf"]  # the hash embedder's
