"""GET /v1/usage: today's requests and tokens per API key (admin keys only)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from server.auth import AdminDep, SecurityDep, require_principal
from server.openapi import error_responses

router = APIRouter(tags=["usage"], dependencies=[Depends(require_principal)])


@router.get(
    "/v1/usage",
    summary="Usage per API key today (admin keys only)",
    responses=error_responses(401, 403),
)
async def usage(security: SecurityDep, admin: AdminDep) -> dict[str, Any]:
    """``{"day", "resets_at", "keys": [{key_id, name, requests, prompt_tokens,
    completion_tokens, total_tokens, daily_tokens, remaining_tokens, rpm,
    requests_last_minute}]}``."""
    data: dict[str, Any] = security.limiter.usage()
    data["object"] = "usage"
    return data
