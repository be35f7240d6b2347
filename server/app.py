"""The FastAPI app factory.

``create_app(settings)`` loads the bundled (or configured) models and opens the index in the
background at startup; tests and the evaluation harness inject their own with the keyword
arguments. API routes come first; the web UI (``server/static``) is mounted at ``/`` last.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI
from starlette.routing import Match, Mount
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from enclave.security.services import SecurityServices
from server.auth import attach_security
from server.errors import install_error_handlers
from server.middleware import install_middleware
from server.openapi import install_openapi
from server.prometheus import EstimateCollector, UsageCollector
from server.routers import chat, documents, health, lineage, models, search, usage
from server.state import AppState

if TYPE_CHECKING:
    from enclave.settings import Settings
    from models.embedder import Embedder
    from models.generator import Generator
    from store.db import Store

log = logging.getLogger("enclave.server")

STATIC_DIR = Path(__file__).parent / "static"


def create_app(
    settings: Settings,
    *,
    generator: Generator | None = None,
    embedder: Embedder | None = None,
    store: Store | None = None,
    security: SecurityServices | None = None,
) -> FastAPI:
    """An Enclave server app. Resources not given load at startup (see ``/readyz``).

    Security (keys, ACL policy, audit log, limits) is set up here, synchronously: a bad policy
    file, a damaged audit chain or ``security.auth = false`` on a non-loopback host raises
    an :class:`~enclave.errors.EnclaveError` before anything binds.
    """
    security = security or SecurityServices.from_settings(settings)
    state = AppState(settings, security, generator=generator, embedder=embedder, store=store)
    state.metrics.registry.register(UsageCollector(security.limiter))
    state.metrics.registry.register(EstimateCollector(state.estimates))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.start_loading()
        try:
            yield
        finally:
            state.close()
            security.close()

    app = FastAPI(
        title="Enclave",
        summary="Local RAG over your documents; OpenAI-compatible.",
        version="0.1.0",
        lifespan=lifespan,
        # the interactive docs pages load their scripts from a CDN: off (no egress);
        # the schema itself stays at /openapi.json
        docs_url=None,
        redoc_url=None,
        # nothing leaves the machine: no OpenTelemetry, whatever the environment says
        telemetry={"tracing": False, "metrics": False, "logs": False, "auto_configure": False},
    )
    app.state.enclave = state
    attach_security(app, security)
    install_error_handlers(app)
    install_openapi(app, state.embedding_dimension)
    install_middleware(
        app, security, state.metrics, max_request_bytes=settings.server.max_request_bytes
    )
    routers = (
        chat.router,
        search.router,
        documents.router,
        lineage.router,
        models.router,
        usage.router,
    )
    for router in (*routers, health.router):
        app.include_router(router)
    if STATIC_DIR.is_dir():
        app.router.routes.append(
            _UIMount("/", app=StaticFiles(directory=STATIC_DIR, html=True), name="ui")
        )
    return app


class _UIMount(Mount):
    """The web UI at ``/``, leaving ``/v1/...`` to the API: an unknown API path answers a
    JSON 404 and a wrong method a 405, not the UI's 404 page. Paths that are not canonical
    (an empty segment as in ``//metrics``, a ``.`` or ``..`` segment) are not the UI's
    either: they answer the JSON 404 instead of a page that looks like success."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path = scope.get("path", "")
        if path == "/v1" or path.startswith("/v1/") or not _canonical(path):
            return Match.NONE, {}
        return super().matches(scope)


def _canonical(path: str) -> bool:
    segments = path.split("/")[1:]
    inner, last = segments[:-1], segments[-1:]
    return all(s not in ("", ".", "..") for s in inner) and all(s not in (".", "..") for s in last)
