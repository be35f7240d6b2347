"""GET /v1/lineage/{response_id}: what an answer stood on (admin keys only)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from starlette.concurrency import run_in_threadpool

from server.auth import AdminDep, require_principal
from server.deps import LineageDep
from server.middleware import audit_info
from server.openapi import error_responses

router = APIRouter(tags=["lineage"], dependencies=[Depends(require_principal)])


@router.get(
    "/v1/lineage/{response_id}",
    summary="The exact passages and file versions an answer stood on (admin keys only)",
    responses=error_responses(400, 401, 403, 404, 410, 503),
)
async def lineage(
    response_id: Annotated[
        str, Path(max_length=80, pattern="^chatcmpl-", description="chatcmpl-...")
    ],
    request: Request,
    service: LineageDep,
    admin: AdminDep,
) -> dict[str, Any]:
    audit_info(request.scope).extra = {"lineage_of": response_id[:80]}
    return await run_in_threadpool(service.resolve, response_id)
