"""require_principal and the audit middleware in a small FastAPI app (in-process ASGI)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.testclient import TestClient

from enclave.errors import EnclaveError
from enclave.security.access import search_filters_for
from enclave.security.audit import verify_log
from enclave.security.services import SecurityServices
from enclave.settings import load_settings
from server.auth import AdminDep, PrincipalDep, attach_security, get_security
from server.middleware import AuditMiddleware, audit_info, note_error


def make_app(data_dir: Path, **security: Any) -> tuple[FastAPI, SecurityServices]:
    settings = load_settings(overrides={"data_dir": data_dir, "security": security})
    sec = SecurityServices.from_settings(settings)
    app = FastAPI()
    attach_security(app, sec)
    app.add_middleware(AuditMiddleware, audit=sec.audit)  # type: ignore[arg-type]

    @app.exception_handler(EnclaveError)
    async def _handler(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, EnclaveError)
        note_error(request.scope, exc)
        headers = {"Retry-After": str(exc.retry_after)} if hasattr(exc, "retry_after") else None
        body = {"error": {"message": exc.message, "type": exc.error_type, "code": exc.code}}
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/search")
    async def search(request: Request, principal: PrincipalDep) -> dict[str, Any]:
        body = await request.json()
        get_security(request).limiter.check(principal)
        info = audit_info(request.scope)
        info.question = body["query"]
        info.retrieved = [{"chunk_id": "c1", "doc_id": "d1", "doc_sha256": "ab" * 32}]
        return {"groups": search_filters_for(principal).groups}

    @app.get("/v1/usage")
    async def usage(request: Request, admin: AdminDep) -> dict[str, Any]:
        return get_security(request).limiter.usage()

    @app.post("/v1/stream")
    async def stream(request: Request, principal: PrincipalDep) -> StreamingResponse:
        info = audit_info(request.scope)

        async def events() -> AsyncIterator[str]:
            for word in ("a", "b", "c"):
                yield f"data: {word}\n\n"
            info.prompt_tokens, info.completion_tokens = 10, 3
            info.cited = [{"chunk_id": "c9", "doc_id": "d9", "doc_sha256": ""}]

        return StreamingResponse(events(), media_type="text/event-stream")

    return app, sec


def records(data_dir: Path) -> list[dict[str, Any]]:
    path = data_dir / "audit" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def served(data_dir: Path) -> Iterator[tuple[TestClient, SecurityServices]]:
    app, sec = make_app(data_dir, audit_questions="full")
    with TestClient(app) as client:
        yield client, sec


def test_auth_filters_and_audit(
    served: tuple[TestClient, SecurityServices], data_dir: Path
) -> None:
    client, sec = served
    _, hr_key = sec.keys.create("hannah", groups=["hr"], rpm=2)
    _, admin_key = sec.keys.create("root", admin=True)

    assert client.get("/healthz").status_code == 200
    assert records(data_dir) == []  # public routes are not audited

    res = client.post("/v1/search", json={"query": "salaries?"})
    assert res.status_code == 401
    assert res.json()["error"]["type"] == "authentication_error"
    res = client.post("/v1/search", json={"query": "x"}, headers={"Authorization": "Bearer nope"})
    assert res.status_code == 401 and "invalid or revoked" in res.json()["error"]["message"]

    hr = {"Authorization": f"Bearer {hr_key}"}
    res = client.post("/v1/search", json={"query": "salaries?"}, headers=hr)
    assert res.status_code == 200 and res.json() == {"groups": ["hr", "public"]}
    admin = {"Authorization": f"Bearer {admin_key}"}
    assert client.post("/v1/search", json={"query": "q"}, headers=admin).json() == {"groups": None}

    assert client.get("/v1/usage", headers=hr).status_code == 403
    usage = client.get("/v1/usage", headers=admin).json()
    assert {k["name"] for k in usage["keys"]} == {"hannah", "root"}

    client.post("/v1/search", json={"query": "again"}, headers=hr)
    res = client.post("/v1/search", json={"query": "too many"}, headers=hr)
    assert res.status_code == 429 and int(res.headers["Retry-After"]) >= 1
    assert "2 requests per minute for key 'hannah'" in res.json()["error"]["message"]

    sec.keys.revoke("hannah")
    assert client.post("/v1/search", json={"query": "q"}, headers=hr).status_code == 401

    recs = records(data_dir)
    summary = [
        (r["endpoint"], (r["principal"] or {}).get("name"), r["outcome"], r["status"]) for r in recs
    ]
    assert summary == [
        ("/v1/search", None, "invalid_api_key", 401),
        ("/v1/search", None, "invalid_api_key", 401),
        ("/v1/search", "hannah", "ok", 200),
        ("/v1/search", "root", "ok", 200),
        ("/v1/usage", "hannah", "forbidden", 403),
        ("/v1/usage", "root", "ok", 200),
        ("/v1/search", "hannah", "ok", 200),
        ("/v1/search", "hannah", "rate_limit_exceeded", 429),
        ("/v1/search", None, "invalid_api_key", 401),
    ]
    assert recs[2]["question"] == "salaries?" and recs[2]["retrieved"][0]["chunk_id"] == "c1"
    assert verify_log(data_dir).ok


def test_streaming_is_audited_after_the_last_chunk(
    served: tuple[TestClient, SecurityServices], data_dir: Path
) -> None:
    client, sec = served
    _, key = sec.keys.create("alice", groups=["hr"])
    res = client.post("/v1/stream", headers={"Authorization": f"Bearer {key}"})
    assert res.status_code == 200 and res.text.count("data:") == 3
    (rec,) = records(data_dir)
    assert rec["tokens"] == {"prompt": 10, "completion": 3}
    assert rec["cited"][0]["chunk_id"] == "c9"
    assert rec["latency_ms"] >= 0 and rec["principal"]["name"] == "alice"


def test_no_auth_on_loopback_is_the_local_admin(data_dir: Path) -> None:
    app, _ = make_app(data_dir, auth=False)
    with TestClient(app) as client:
        res = client.post("/v1/search", json={"query": "q"})
        assert res.status_code == 200 and res.json() == {"groups": None}
    assert records(data_dir)[0]["principal"] == {"name": "local", "key_id": "local"}


def test_audit_off_writes_nothing(data_dir: Path) -> None:
    app, sec = make_app(data_dir, audit=False)
    _, key = sec.keys.create("alice")
    with TestClient(app) as client:
        res = client.post(
            "/v1/search", json={"query": "q"}, headers={"Authorization": f"Bearer {key}"}
        )
        assert res.status_code == 200
    assert not (data_dir / "audit" / "audit.jsonl").exists()
