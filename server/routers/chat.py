"""POST /v1/chat/completions (OpenAI shape, streaming or not)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, Depends, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from server.auth import PrincipalDep, require_principal
from server.deps import ChatDep
from server.middleware import audit_info
from server.openapi import error_responses
from server.schemas import ChatCompletionRequest

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
        200: {
            "description": "a chat.completion object, or with stream=true server-sent "
            "chat.completion.chunk events ending with `data: [DONE]`",
            "content": {
                "application/json": {},
                "text/event-stream": {"schema": {"type": "string"}},
            },
        },
        **error_responses(400, 401, 413, 429, 503, 504),
    },
)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, chat: ChatDep, principal: PrincipalDep
) -> Response:
    reply = await chat.reply(
        body, principal, audit_info(request.scope), disconnected=request.is_disconnected
    )
    if isinstance(reply, dict):
        return JSONResponse(reply)
    return SSEResponse(reply.events(), on_close=reply.close)
