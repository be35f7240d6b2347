"""Schemathesis over the app's own OpenAPI schema (positive and negative cases): the schema
says what the server does. Every response conforms to it (status code, content type, body,
headers), none is a 5xx, every error has the OpenAI shape, schema-invalid requests are
refused, and a schema-valid request is accepted unless it breaks a rule the schema states in
words only (see ``UNSTATED``). In-process ASGI, fake generator, hash embedder."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from enclave.settings import SecuritySettings, Settings
from models.generator import FakeGenerator
from server.app import create_app
from tests.server.conftest import hash_store

_ROOT = Path(tempfile.mkdtemp(prefix="enclave-fuzz-"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
_SETTINGS = Settings(
    data_dir=_ROOT / "data",
    server={"request_timeout_s": 5.0, "queue_size": 4},
    generator={"max_tokens": 32},
    security=SecuritySettings(auth=False),  # the schema fuzz; tests/security fuzzes without a key
)
_STORE, _EMB = hash_store(
    _ROOT / "data",
    {
        "a.md": "Project Falcon launches on 14 March 2027.",
        "b.txt": "Every employee receives 27 days of paid annual leave.",
    },
)
APP = create_app(_SETTINGS, generator=FakeGenerator(context_size=2048), embedder=_EMB, store=_STORE)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)

#: refusals of schema-valid requests that the schema states in its descriptions only (no
#: JSON schema can say that the last message is the user's, or count tokens)
UNSTATED = (
    "the last message must have role 'user'",
    "the question (the last user message) is empty",
    "the embedding model accepts at most",
)


def schema_valid_requests_are_accepted(ctx: Any, response: Any, case: Any) -> None:
    """A request generated from the schema is not refused for its shape (400)."""
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or response.status_code != 400:
        return
    error = response.json()["error"]
    stated = error["code"] == "context_length_exceeded" or any(
        reason in error["message"] for reason in UNSTATED
    )
    assert stated, f"schema-valid request refused: {error['message']}"


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    unsupported_method,
    allow_header_conformance,
    schema_valid_requests_are_accepted,
]


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_responses_conform_to_the_schema(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
    response = case.call_and_validate(checks=CHECKS)
    if response.status_code >= 400:
        assert response.headers["content-type"] == ["application/json"]
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
