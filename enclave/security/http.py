"""The HTTP side of security: the ``require_principal`` dependency and the audit middleware.

Wiring into an app takes two calls::

    install_security(app, SecurityServices.from_settings(settings))   # in create_app
    PrincipalDep = Annotated[Principal, Depends(require_principal)]     # in the routes

The middleware writes one audit record per request under ``/v1/`` (and ``/metrics``) once the
response has been sent, streaming responses included. Handlers add what only they know
(question, retrieved and cited chunks, tokens) through :func:`audit_info`; the principal and
the outcome are filled in by :func:`require_principal` and :func:`note_error`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import anyio
import anyio.to_thread
from fastapi import Depends, FastAPI, Request

from enclave.errors import EnclaveError
from enclave.security.access import require_admin
from enclave.security.audit import AuditLog
from enclave.security.guard import SecurityServices
from enclave.security.keys import Principal

log = logging.getLogger(__name__)

STATE_KEY = "enclave_audit"
APP_STATE_ATTR = "enclave_security"

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


def install_security(app: FastAPI, security: SecurityServices) -> None:
    """Keep ``security`` on the app and add the audit middleware."""
    setattr(app.state, APP_STATE_ATTR, security)
    app.add_middleware(AuditMiddleware, audit=security.audit)  # type: ignore[arg-type]


def get_security(request: Request) -> SecurityServices:
    security: SecurityServices = getattr(request.app.state, APP_STATE_ATTR)
    return security


def require_principal(request: Request) -> Principal:
    """FastAPI dependency: the caller's Principal, or AuthError (401, OpenAI-style body)."""
    security = get_security(request)
    principal = security.auth.authenticate(request.headers.get("authorization"))
    audit_info(request.scope).principal = principal
    return principal


PrincipalDep = Annotated[Principal, Depends(require_principal)]


def require_admin_principal(principal: PrincipalDep) -> Principal:
    """FastAPI dependency for admin-only routes (403 for other keys)."""
    require_admin(principal, "this endpoint")
    return principal


AdminDep = Annotated[Principal, Depends(require_admin_principal)]
