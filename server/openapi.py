"""The OpenAPI schema (``/openapi.json``) says what the server does.

- Every error a route can answer is declared with its status, its headers (``Retry-After``
  on 429 and 503, ``WWW-Authenticate`` on 401) and the one error body,
  ``{"error": {"message", "type", "param", "code"}}`` (:class:`ErrorResponse`); routes list
  theirs with :func:`error_responses`. Request validation answers 400 (``server/errors.py``),
  so FastAPI's automatic 422 and its validation-error schemas are removed.
- A request the schema admits is not refused for its shape: what the server refuses is in the
  request models (``server/schemas.py``), and what depends on the loaded models is filled in
  once they are loaded: ``dimensions`` of ``POST /v1/embeddings`` admits only the embedder's.
  Refusals a schema cannot express (the last message must be the user's question, token
  limits counted with the model's tokenizer) are in the field descriptions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    message: str = Field(description="what went wrong, for a person")
    type: str = Field(description="OpenAI error type, e.g. invalid_request_error")
    param: str | None = Field(description="the request field at fault, when there is one")
    code: str | None = Field(description="machine-readable code, e.g. queue_full")


class ErrorResponse(BaseModel):
    """Every error the server answers, on every route."""

    error: ErrorDetail


_SECONDS = {"type": "integer", "minimum": 0}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {
            "description": "always `Bearer`",
            "required": True,
            "schema": {"type": "string"},
        }
    },
    429: {
        "Retry-After": {
            "description": "seconds until a retry is expected to be admitted",
            "required": True,
            "schema": _SECONDS,
        }
    },
    503: {
        "Retry-After": {
            "description": "seconds until the models are expected to be loaded",
            "required": True,
            "schema": _SECONDS,
        }
    },
}
_DESCRIPTIONS = {
    400: "invalid request: malformed JSON, a field the schema refuses, an option Enclave does "
    "not support, or a prompt over the token limits; `param` names the field",
    401: "missing, unknown or revoked API key",
    403: "an admin-only endpoint called with another key",
    404: "no such document, or one the key may not read (the same answer); for lineage, no "
    "such response id",
    409: "an ingest or another purge holds the index (`writer_busy`): retry when it is done",
    410: "the release the answer was given from is no longer retained (`release_gone`)",
    413: "request body over server.max_request_bytes",
    429: "the model's queue is full or the request would not be answered before its deadline "
    "(`queue_full`), or the key's rate or daily token limit (`rate_limit_exceeded`)",
    503: "the models are still loading or failed to load",
    504: "no answer within server.request_timeout_s (the machine stalled; admission refuses "
    "requests it does not expect to finish in time)",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route for these error statuses, each with the error body."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        entry: dict[str, Any] = {"model": ErrorResponse, "description": _DESCRIPTIONS[status]}
        if status in _HEADERS:
            entry["headers"] = _HEADERS[status]
        out[status] = entry
    return out


def install_openapi(app: FastAPI, embedding_dimension: Callable[[], int | None]) -> None:
    """Serve the schema described above; ``embedding_dimension()`` is the loaded embedder's
    dimension, or None while it loads (the schema is then built again on the next call)."""
    build = app.openapi  # FastAPI's: builds the schema once and keeps it on the app

    def openapi() -> dict[str, Any]:
        schema = build()
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                if isinstance(operation, dict):
                    operation.get("responses", {}).pop("422", None)
        components = schema.get("components", {}).get("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            components.pop(name, None)
        dimension = embedding_dimension()
        request = components.get("EmbeddingRequest", {}).get("properties", {})
        if dimension is None:
            app.openapi_schema = None  # built again once the embedder is known
        elif "dimensions" in request:
            request["dimensions"] = {
                "anyOf": [{"type": "integer", "const": dimension}, {"type": "null"}],
                "title": "Dimensions",
                "description": f"only this embedder's dimension, {dimension}, or absent",
            }
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
