"""Search: retrieval only, for ``POST /v1/search``. No web-framework types here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

if TYPE_CHECKING:
    from enclave.security.keys import Principal
    from rag.retrieval import Retriever
    from server.middleware import AuditInfo
    from server.prometheus import Metrics
    from server.schemas import SearchRequest
    from server.services.admission import Admission


class SearchService:
    """Admit the request, retrieve as the answer stage does (``rag/retrieval.py``), list the
    hits with their cosine similarity, say whether the question counts as covered, and name
    the release searched. A blank query finds nothing (it is not an error: the request schema
    admits it)."""

    def __init__(self, retriever: Retriever, admission: Admission, metrics: Metrics) -> None:
        self.retriever = retriever
        self.admission = admission
        self.metrics = metrics

    async def search(
        self, body: SearchRequest, principal: Principal, info: AuditInfo
    ) -> dict[str, Any]:
        params = self.admission.search(body, principal, info)
        if not params.query.strip():  # nothing to look for: nothing found
            return {"object": "list", "results": [], "relevant": False}
        retrieval = await run_in_threadpool(
            self.retriever.retrieve, params.query, top_k=params.top_k, filters=params.filters
        )
        self.metrics.stage_seconds.labels("retrieve").observe(retrieval.seconds)
        await run_in_threadpool(self.admission.searched, info, retrieval)
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
        return {
            "object": "list",
            "results": results,
            "relevant": retrieval.relevant,
            "release": retrieval.release,
        }
