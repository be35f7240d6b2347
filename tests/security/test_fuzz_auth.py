"""Schemathesis over the OpenAPI schema with auth on and a wrong key: every generated request
to a non-public operation answers 401 in the OpenAI error shape, never a 5xx or data."""

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

_ROOT = Path(tempfile.mkdtemp(prefix="enclave-fuzz-auth-"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
_SETTINGS = Settings(data_dir=_ROOT / "data", security=SecuritySettings(auth=True))
_STORE, _EMB = hash_store(_ROOT / "data", {"a.md": "Project Falcon launches on 14 March 2027."})
APP = create_app(_SETTINGS, generator=FakeGenerator(context_size=2048), embedder=_EMB, store=_STORE)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)
PUBLIC = {"/healthz", "/readyz"}


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_a_wrong_key_gets_401_everywhere(case: schemathesis.Case) -> None:  # type: ignore[type-arg]
    headers = {**(case.headers or {}), "Authorization": "Bearer enc_" + "A" * 43}
    response = case.call(headers=headers)
    if case.path in PUBLIC:
        assert response.status_code < 500
        return
    # a body that is not JSON is refused before authentication (400), an undeclared method
    # 405; never data, never a 5xx
    assert response.status_code in (400, 401, 405), (case.method, case.path, response.text[:300])
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    if response.status_code == 401:
        assert error["code"] == "invalid_api_key"
