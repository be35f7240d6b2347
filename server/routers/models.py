"""GET /v1/models and POST /v1/embeddings."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from server.auth import PrincipalDep, require_principal
from server.deps import EmbeddingsDep, ServicesDep
from server.middleware import audit_info
from server.openapi import error_responses
from server.schemas import EmbeddingRequest
from server.services.embeddings import served_models

router = APIRouter(tags=["models"], dependencies=[Depends(require_principal)])


@router.get("/v1/models", summary="The served models", responses=error_responses(401, 503))
async def list_models(services: ServicesDep, principal: PrincipalDep) -> dict[str, Any]:
    return served_models(services.generator, services.embedder)


@router.post(
    "/v1/embeddings",
    summary="Embed texts (OpenAI embeddings)",
    responses=error_responses(400, 401, 413, 429, 503),
)
async def embeddings(
    body: EmbeddingRequest, request: Request, service: EmbeddingsDep, principal: PrincipalDep
) -> dict[str, Any]:
    return await service.create(body, principal, audit_info(request.scope))
