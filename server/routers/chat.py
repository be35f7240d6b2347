"""POST /v1/chat/completions (OpenAI shape, streaming or not)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from enclave.security.access import search_filters_for
from enclave.security.audit import chunk_refs
from enclave.security.guard import cap_max_tokens, check_prompt_tokens
from enclave.security.http import audit_info
from models.generator import Usage
from server.deps import ChatDep, PrincipalDep, SecurityDep, require_principal
from server.rag import Answer
from server.schemas import ChatCompletionRequest
from server.services.chat import ChatParams

router = APIRouter(tags=["chat"], dependencies=[Depends(require_principal)])


class SSEResponse(StreamingResponse):
    """Server-sent events that stop the generation whenever the response ends, including
    when the client disconnects mid-stream."""

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[str], on_close: Callable[[], None]) -> None:
        super().__init__(
            content,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            media_type="text/event-stream",
        )
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()
            close = getattr(self.body_iterator, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):  # already closed, or cancelled mid-await
                    await close()


@router.post(
    "/v1/chat/completions",
    summary="Answer from the documents (OpenAI chat completions)",
    response_model=None,
    responses={
        200: {"description": "chat.completion, or text/event-stream chunks when stream=true"},
        400: {"description": "invalid request or prompt too long"},
        401: {"description": "missing, unknown or revoked API key"},
        429: {"description": "queue full, or the key's rate or daily token limit (Retry-After)"},
        504: {"description": "request timeout"},
    },
)
async def chat_completions(
    body: ChatCompletionRequest,
    request: Request,
    chat: ChatDep,
    principal: PrincipalDep,
    security: SecurityDep,
) -> Response:
    body.check_supported()
    sec = security.settings
    messages = body.plain_messages()
    info = audit_info(request.scope)
    info.question = messages[-1]["content"] if messages else None
    # caps first (400), then the key's limits (429), then retrieval: the ACL is the caller's
    requested = body.requested_max_tokens()
    max_tokens = cap_max_tokens(requested, sec) if requested is not None else None
    if max_tokens is None and chat.rag.settings.server.answer_reserve_tokens > (
        sec.max_completion_tokens
    ):
        max_tokens = sec.max_completion_tokens
    generator = chat.rag.require_generator()
    prompt_tokens = generator.count_tokens("\n".join(m["content"] for m in messages))
    check_prompt_tokens(prompt_tokens, sec)
    security.limiter.check(principal, estimated_tokens=prompt_tokens)
    top_k, filters = body.retrieval_options()
    filters = search_filters_for(principal, filters)
    store = chat.rag.store

    def on_answer(answer: Answer) -> None:
        usage = answer.usage
        if usage.prompt_tokens or usage.completion_tokens:
            security.limiter.record(principal, usage.prompt_tokens, usage.completion_tokens)
        info.retrieved = chunk_refs(answer.retrieved, store)
        info.cited = chunk_refs(answer.citations, store)
        info.prompt_tokens = usage.prompt_tokens
        info.completion_tokens = usage.completion_tokens
        info.extra = {
            "stream": bool(body.stream),
            "finish_reason": answer.finish_reason,
            "abstained": answer.abstained,
            "flagged_sources": answer.flagged_sources,
        }
        if answer.guard is not None:
            info.extra["guard"] = answer.guard
            info.extra["system_prompt_leak"] = answer.guard == "system_prompt_leak"

    def on_usage(usage: Usage) -> None:
        security.limiter.record(principal, usage.prompt_tokens, usage.completion_tokens)
        info.prompt_tokens = usage.prompt_tokens
        info.completion_tokens = usage.completion_tokens
        info.extra = {"stream": bool(body.stream), "finished": False}

    params = ChatParams(
        messages=messages,
        max_tokens=max_tokens,
        temperature=body.temperature,
        top_k=top_k,
        filters=filters,
        stop=body.stop_list(),
        on_answer=on_answer,
        on_usage=on_usage,
    )
    if body.stream:
        stream = await chat.open_stream(params, disconnected=request.is_disconnected)
        return SSEResponse(stream.events(), on_close=stream.close)
    result: dict[str, Any] = await chat.complete(params, disconnected=request.is_disconnected)
    return JSONResponse(result)
