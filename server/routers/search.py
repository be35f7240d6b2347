"""POST /v1/search: retrieval only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from server.auth import PrincipalDep, require_principal
from server.deps import SearchDep
from server.middleware import audit_info
from server.openapi import error_responses
from server.schemas import SearchRequest

router = APIRouter(tags=["search"], dependencies=[Depends(require_principal)])


@router.post(
    "/v1/search",
    summary="Hybrid search over the index (no generation)",
    responses=error_responses(400, 401, 413, 429, 503),
)
async def search(
    body: SearchRequest, request: Request, service: SearchDep, principal: PrincipalDep
) -> dict[str, Any]:
    return await service.search(body, principal, audit_info(request.scope))
