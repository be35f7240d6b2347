"""GET/DELETE /v1/documents: what the index holds."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from enclave.security.access import visible_groups
from server.auth import AdminDep, PrincipalDep, require_principal
from server.deps import DocumentsDep
from server.middleware import audit_info
from server.openapi import error_responses

router = APIRouter(tags=["documents"], dependencies=[Depends(require_principal)])

DocIdPath = Annotated[str, Path(max_length=200, description="document id (24 hex)")]


@router.get(
    "/v1/documents",
    summary="List the documents the key may read",
    responses=error_responses(400, 401, 503),
)
async def list_documents(
    documents: DocumentsDep,
    principal: PrincipalDep,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    status: Annotated[Literal["ok", "empty", "failed", "quarantined"] | None, Query()] = None,
) -> dict[str, Any]:
    return await run_in_threadpool(
        documents.list,
        limit=limit,
        offset=offset,
        status=status,
        groups=visible_groups(principal),
        show_groups=principal.admin,
    )


@router.get(
    "/v1/documents/{doc_id}",
    summary="One document with a summary of its chunks",
    responses=error_responses(400, 401, 404, 503),
)
async def get_document(
    doc_id: DocIdPath, request: Request, documents: DocumentsDep, principal: PrincipalDep
) -> dict[str, Any]:
    audit_info(request.scope).extra = {"doc_id": doc_id[:80]}
    return await run_in_threadpool(documents.get, doc_id, principal)


@router.delete(
    "/v1/documents/{doc_id}",
    summary="Purge a document from the live release and every retained one (admin keys only)",
    responses=error_responses(400, 401, 403, 404, 409, 503),
)
async def delete_document(
    doc_id: DocIdPath, request: Request, documents: DocumentsDep, admin: AdminDep
) -> dict[str, Any]:
    audit_info(request.scope).extra = {"doc_id": doc_id[:80]}
    return await run_in_threadpool(documents.delete, doc_id)
