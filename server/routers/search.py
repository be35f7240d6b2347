"""POST /v1/search: retrieval only."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from enclave.security.access import search_filters_for
from enclave.security.audit import chunk_refs
from enclave.security.http import audit_info
from server.deps import MetricsDep, PrincipalDep, RagDep, SecurityDep, require_principal
from server.schemas import SearchRequest

router = APIRouter(tags=["search"], dependencies=[Depends(require_principal)])


@router.post("/v1/search", summary="Hybrid search over the index (no generation)")
async def search(
    body: SearchRequest,
    request: Request,
    rag: RagDep,
    metrics: MetricsDep,
    principal: PrincipalDep,
    security: SecurityDep,
) -> dict[str, Any]:
    info = audit_info(request.scope)
    info.question = body.query
    security.limiter.check(principal)
    # the caller's path/doc filters, with groups forced to the key's (a prefilter in the store)
    filters = search_filters_for(
        principal, body.filters.to_store() if body.filters is not None else None
    )
    retrieval = await run_in_threadpool(rag.retrieve, body.query, top_k=body.top_k, filters=filters)
    metrics.stage_seconds.labels("retrieve").observe(retrieval.seconds)
    info.retrieved = await run_in_threadpool(chunk_refs, retrieval.hits, rag.store)
    flagged = sum(1 for h in retrieval.hits if "prompt_injection" in h.flags)
    if flagged:
        info.extra = {"flagged_chunks": flagged}
    results = []
    for hit in retrieval.hits:
        sim = retrieval.similarity.get(hit.chunk_id)
        results.append(
            {
                "chunk_id": hit.chunk_id,
                "doc_id": hit.doc_id,
                "source": hit.source,
                "title": hit.title,
                "page": hit.page,
                "heading_path": hit.heading_path,
                "score": hit.score,
                "similarity": None if sim is None else round(sim, 4),
                "text": hit.text,
                "flags": list(hit.flags),
            }
        )
    return {"object": "list", "results": results, "relevant": retrieval.relevant}
