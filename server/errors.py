"""Every error leaves the server as ``{"error": {"message", "type", "param", "code"}}``.

Domain errors (:class:`enclave.errors.EnclaveError`) carry their status; request validation
failures are 400; framework HTTP errors keep their status; anything else is a bug: it is
logged with its traceback and answered 500 without details.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Mount

from enclave.errors import AuthError, EnclaveError, ModelNotAvailableError, UsageError
from server.middleware import audit_info, note_error
from server.responses import error_response
from server.validation import validation_message

log = logging.getLogger("enclave.server")


class BadParameterError(UsageError):
    """A request field has a value Enclave does not support."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class NotReadyError(ModelNotAvailableError):
    """The models are still loading (or failed to load)."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

_HTTP_TYPES = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    406: ("invalid_request_error", "not_acceptable"),
    413: ("invalid_request_error", "request_too_large"),
    415: ("invalid_request_error", "unsupported_media_type"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
}


def enclave_error_response(exc: EnclaveError) -> JSONResponse:
    headers: dict[str, str] | None = None
    retry_after = getattr(exc, "retry_after", None)
    if exc.status_code in (429, 503) and retry_after is not None:
        headers = {"Retry-After": str(int(retry_after))}
    if exc.status_code == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return error_response(
        exc.status_code,
        exc.message,
        exc.error_type,
        exc.code,
        getattr(exc, "param", None),
        headers,
    )


async def _enclave_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, EnclaveError)
    note_error(request.scope, exc)
    _count_refusal(request, exc)
    if exc.status_code >= 500:
        log.warning("%s %s: %s", request.method, request.url.path, exc.message)
    return enclave_error_response(exc)


def _count_refusal(request: Request, exc: EnclaveError) -> None:
    state = getattr(request.app.state, "enclave", None)
    metrics = getattr(state, "metrics", None)
    if metrics is None:
        return
    if isinstance(exc, AuthError):
        metrics.auth_failures.inc()
    elif exc.status_code == 429 and exc.code == "rate_limit_exceeded":
        if "daily token budget" in exc.message:
            metrics.rate_limited.labels("daily").inc()
        elif "requests per minute" in exc.message:
            metrics.rate_limited.labels("rpm").inc()


async def _validation_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    audit_info(request.scope).outcome = "invalid_request"
    message, param = validation_message(list(exc.errors()))
    return error_response(400, message, "invalid_request_error", "invalid_request", param)


async def _http_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error_type, code = _HTTP_TYPES.get(
        exc.status_code,
        ("invalid_request_error" if exc.status_code < 500 else "server_error", None),
    )
    message = str(exc.detail) if exc.detail else "request failed"
    headers = dict(exc.headers or {})
    if exc.status_code == 413:
        message = "the request body is too large (server.max_request_bytes)"
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request) or headers.get("Allow", "")
        message = f"method {request.method} not allowed here; allowed: {headers['Allow']}"
    return error_response(exc.status_code, message, error_type, code, headers=headers or None)


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path. Starlette's 405 names only the methods of
    the first route whose path matched, and each of a path's methods is a route of its own."""
    routes = [r for r in request.app.router.routes if not isinstance(r, Mount)]
    allowed = [
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] == Match.FULL for r in routes)
    ]
    return ", ".join(allowed)


async def _bug_handler(request: Request, exc: Exception) -> Response:
    if _storage_error(exc):  # the index's storage (an object store) did not answer
        log.warning("index storage error on %s %s: %s", request.method, request.url.path, exc)
        return error_response(
            503,
            "the index storage did not answer; try again shortly",
            "server_error",
            "index_unavailable",
            headers={"Retry-After": "2"},
        )
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal server error", "server_error", "internal_error")


def _storage_error(exc: BaseException) -> bool:
    """An I/O error of LanceDB (an OSError, or its ``LanceError(IO)``) or of the S3 client,
    not a bug of Enclave."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) or type(seen).__module__.startswith("botocore"):
            return True
        if isinstance(seen, RuntimeError) and "LanceError(IO)" in str(seen):
            return True
        seen = seen.__cause__
    return False


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(EnclaveError, _enclave_handler)
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(HTTPException, _http_handler)
    app.add_exception_handler(Exception, _bug_handler)
