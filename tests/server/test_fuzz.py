"""Schemathesis over the app's own OpenAPI schema (positive and negative cases): whatever it
sends, the server answers without a 5xx. In-process ASGI, fake generator, hash embedder."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

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


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_no_server_errors(case: schemathesis.Case) -> None:
    response = case.call()
    assert response.status_code < 500, (case.method, case.path, case.body, response.text[:500])
    if response.status_code >= 400 and case.path != "/readyz":
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
