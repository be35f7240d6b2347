"""GET /v1/models and POST /v1/embeddings."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from enclave.security.http import audit_info
from server.deps import (
    EmbeddingsDep,
    PrincipalDep,
    SecurityDep,
    ServicesDep,
    require_principal,
)
from server.schemas import EmbeddingRequest

router = APIRouter(tags=["models"], dependencies=[Depends(require_principal)])


@router.get("/v1/models", summary="The served models")
async def list_models(services: ServicesDep, principal: PrincipalDep) -> dict[str, Any]:
    generator, embedder = services.generator, services.embedder
    return {
        "object": "list",
        "data": [
            {
                "id": generator.name,
                "object": "model",
                "created": 0,
                "owned_by": "enclave",
                "kind": "chat",
                "context_size": generator.context_size,
            },
            {
                "id": embedder.name,
                "object": "model",
                "created": 0,
                "owned_by": "enclave",
                "kind": "embedding",
                "dimension": embedder.dimension,
                "max_tokens": embedder.max_tokens,
            },
        ],
    }


@router.post("/v1/embeddings", summary="Embed texts (OpenAI embeddings)")
async def embeddings(
    body: EmbeddingRequest,
    request: Request,
    service: EmbeddingsDep,
    principal: PrincipalDep,
    security: SecurityDep,
) -> dict[str, Any]:
    info = audit_info(request.scope)
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    info.extra = {"inputs": len(texts)}  # never the texts themselves
    # validate and count first (400s cost nothing), then the key's limits, then the work
    total = await run_in_threadpool(service.count, body.input, dimensions=body.dimensions)
    security.limiter.check(principal, estimated_tokens=total)
    result = await run_in_threadpool(
        service.embed,
        body.input,
        encoding_format=body.encoding_format,
        dimensions=body.dimensions,
    )
    security.limiter.record(principal, total, 0)
    info.prompt_tokens = total
    return result
