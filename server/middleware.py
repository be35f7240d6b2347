"""The server's ASGI middleware and the per-request audit record.

Installed by :func:`install_middleware` (outermost first): metrics (every request counted by
route and status, timed), the audit log (one hash-chained record per request under ``/v1/``
and ``/metrics``, written once the response has been sent, streaming responses included), and
the body limit (a body over ``server.max_request_bytes`` answers 413 before any handler reads
it).

Handlers and services add what only they know to the audit record (question, retrieved and
cited chunks, tokens) through :func:`audit_info`; the principal and the outcome are filled in
by ``server.auth.require_principal`` and the error handlers (:func:`note_error`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

from enclave.errors import EnclaveError
from enclave.security.audit import AuditLog
from enclave.security.keys import Principal
from server.responses import error_response

if TYPE_CHECKING:
    from fastapi import FastAPI

    from enclave.security.services import SecurityServices
    from server.prometheus import Metrics

log = logging.getLogger(__name__)

STATE_KEY = "enclave_audit"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_STATUS_CODES = {
    400: "invalid_request",
    401: "invalid_api_key",
    403: "forbidden",
    404: "not_found",
    413: "request_too_large",
    429: "rate_limit_exceeded",
}


@dataclass
class AuditInfo:
    """What a request's audit record will say; handlers fill in what they know."""

    principal: Principal | None = None
    question: str | None = None
    retrieved: list[dict[str, str]] = field(default_factory=list)
    cited: list[dict[str, str]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    outcome: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def audit_info(scope: Scope) -> AuditInfo:
    """The request's :class:`AuditInfo` (``audit_info(request.scope)`` in a handler)."""
    state = scope.setdefault("state", {})
    info = state.get(STATE_KEY)
    if not isinstance(info, AuditInfo):
        info = state[STATE_KEY] = AuditInfo()
    return info


def note_error(scope: Scope, exc: EnclaveError) -> None:
    """Record an error's code as the outcome (call it from the EnclaveError handler)."""
    audit_info(scope).outcome = exc.code


class AuditMiddleware:
    """Pure ASGI middleware: one hash-chained record per audited request, after the response."""

    def __init__(
        self,
        app: ASGIApp,
        audit: AuditLog | None,
        prefixes: Sequence[str] = ("/v1/", "/metrics"),
    ) -> None:
        self.app = app
        self.audit = audit
        self.prefixes = tuple(prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if self.audit is None or scope["type"] != "http" or not path.startswith(self.prefixes):
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        info = audit_info(scope)
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            outcome = info.outcome or (
                "ok" if status < 400 else _STATUS_CODES.get(status, "server_error")
            )
            took = time.monotonic() - started
            # shielded: a request cancelled mid-way (client gone) is still recorded
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(self._write, path, info, outcome, status, took)

    def _write(self, path: str, info: AuditInfo, outcome: str, status: int, took: float) -> None:
        assert self.audit is not None
        try:
            self.audit.append(
                endpoint=path,
                principal=info.principal,
                question=info.question,
                retrieved=info.retrieved,
                cited=info.cited,
                prompt_tokens=info.prompt_tokens,
                completion_tokens=info.completion_tokens,
                latency_s=took,
                outcome=outcome,
                status=status,
                extra=info.extra or None,
            )
        except Exception:  # the response is gone already: make the failure loud
            log.exception("AUDIT RECORD LOST for %s (status %s)", path, status)


class BodyLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` with 413 in the error shape: at once when
    Content-Length says so, else as soon as the streamed body passes the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = error_response(
                413,
                f"the request body is {declared} bytes; the limit is {self.max_bytes} "
                "(server.max_request_bytes)",
                "invalid_request_error",
                "request_too_large",
                headers={"Connection": "close"},
            )
            await response(scope, receive, send)  # type: ignore[arg-type]
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413)
            return message

        await self.app(scope, limited, send)


def _route_label(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    if scope.get("endpoint") is not None or scope.get("root_path", "") != "":
        return "static"
    return "unmatched"


class MetricsMiddleware:
    """Counts every HTTP request by route template and status; times it."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = _route_label(scope)
            self.metrics.requests.labels(route, scope.get("method", ""), str(status)).inc()
            self.metrics.request_seconds.labels(route).observe(time.perf_counter() - started)


def install_middleware(
    app: FastAPI, security: SecurityServices, metrics: Metrics, *, max_request_bytes: int
) -> None:
    """Add the body limit, the audit log and the metrics middleware (the last added runs
    first: metrics see every request, the audit sees what passed the body limit)."""
    app.add_middleware(BodyLimitMiddleware, max_bytes=max_request_bytes)  # type: ignore[arg-type]
    app.add_middleware(AuditMiddleware, audit=security.audit)  # type: ignore[arg-type]
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # type: ignore[arg-type]
