"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from server.auth import AdminDep
from server.deps import StateDep
from server.openapi import error_responses
from server.responses import error_body

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Models loaded and index open (503 until then); the live release",
    responses=error_responses(503),
)
async def readyz(state: StateDep) -> Response:
    services = state.services
    if services is None:
        why = state.error or "loading models and opening the index"
        body = error_body(f"not ready: {why}", "server_error", "not_ready")
        body["status"] = "failed" if state.error else "loading"
        return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})

    def index_info() -> dict[str, Any]:
        view = services.index.reader()
        pointer = services.index.pointer
        return {
            "release": view.release_id,
            "promoted_at": pointer.promoted_at if pointer is not None else None,
            "documents": view.count_documents(),
            "chunks": view.count_chunks(),
        }

    info = await run_in_threadpool(index_info)
    return JSONResponse(
        {
            "status": "ready",
            "generator": services.generator.name,
            "embedder": services.embedder.name,
            "index": info,
        }
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics (admin keys only)",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **error_responses(401, 403),
    },
)
async def metrics(state: StateDep, admin: AdminDep) -> Response:
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
