"""Admission: what every request must pass before it costs anything, and what it leaves behind.

In order, for each kind of request:

1. refusals that cost nothing (400) beyond what the request schema refuses: a prompt over
   ``security.max_prompt_tokens`` (the caller's own messages, counted with the model's
   tokenizer), embedding inputs over the embedder's limits;
2. the key's limits (429): requests per minute and the daily token budget, with the prompt's
   tokens as the estimate;
3. the caller's view of the index: the request's own filters (path prefix, document ids) with
   ``groups`` forced to the key's (``enclave.security.access.search_filters_for``), applied by
   the store as a prefilter;
4. for chat, the model's queue, by the chat service: a place in line if the answer is
   expected within the request's deadline, else 429 (``server/generation_queue.py``);
5. afterwards, the accounting: tokens recorded against the key and the request's audit record
   filled (question, retrieved and cited chunks with their documents' sha256 in the release
   answered from, tokens, outcome, and for an answer its response id and that release: what
   lineage, ``GET /v1/lineage/{response_id}``, resolves).

An answer's ``max_tokens`` is not decided here: the request's value goes to the answer stage,
where ``rag/budget.py`` applies the one rule (the caps of ``generator.max_tokens`` and
``security.max_completion_tokens`` included).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from enclave.errors import PromptTooLongError
from enclave.security.access import search_filters_for
from enclave.security.audit import chunk_refs
from models.generator import Message, Usage
from store.records import SearchFilters

if TYPE_CHECKING:
    from enclave.security.keys import Principal
    from enclave.security.services import SecurityServices
    from enclave.settings import SecuritySettings
    from models.generator import Generator
    from rag.retrieval import Retrieval
    from rag.service import Answer
    from server.middleware import AuditInfo
    from server.schemas import ChatCompletionRequest, SearchRequest


@dataclass
class ChatParams:
    """An admitted chat request: what the answer stage needs, and the accounting callbacks."""

    messages: list[Message]
    max_tokens: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    filters: SearchFilters | None = None
    stop: list[str] | None = None
    #: called once with the finished answer (abstained, complete, timed out while streaming)
    on_answer: Callable[[Answer], None] | None = None
    #: called instead when a started generation ends without an answer (error, disconnect,
    #: timeout without streaming) with the tokens it had used
    on_usage: Callable[[Usage], None] | None = None
    #: the response's id (``chatcmpl-...``), in the response and its audit record
    response_id: str = field(default_factory=lambda: new_response_id())


def new_response_id() -> str:
    return "chatcmpl-" + uuid.uuid4().hex[:24]


@dataclass
class SearchParams:
    """An admitted search request."""

    query: str
    top_k: int | None
    filters: SearchFilters


def check_prompt_tokens(prompt_tokens: int, security: SecuritySettings) -> None:
    """Refuse messages over ``security.max_prompt_tokens`` (400)."""
    if prompt_tokens > security.max_prompt_tokens:
        raise PromptTooLongError(
            f"the messages have {prompt_tokens} tokens; this server accepts at most "
            f"{security.max_prompt_tokens} (security.max_prompt_tokens)"
        )


class Admission:
    """Admits requests for one server: the key's limits, caps, ACL filters and accounting."""

    def __init__(self, security: SecurityServices, generator: Generator) -> None:
        self.security = security
        self.generator = generator

    # ------------------------------------------------------------------------ chat
    def chat(
        self, body: ChatCompletionRequest, principal: Principal, info: AuditInfo
    ) -> ChatParams:
        """Admit a chat request (steps 1-3) and wire its accounting (step 5)."""
        messages = body.plain_messages()
        info.question = messages[-1]["content"] if messages else None
        prompt_tokens = self.generator.count_tokens("\n".join(m["content"] for m in messages))
        check_prompt_tokens(prompt_tokens, self.security.settings)
        limiter = self.security.limiter
        limiter.check(principal, estimated_tokens=prompt_tokens)
        top_k, filters = body.retrieval_options()
        stream = bool(body.stream)
        response_id = new_response_id()

        def on_answer(answer: Answer) -> None:
            usage = answer.usage
            if usage.prompt_tokens or usage.completion_tokens:
                limiter.record(principal, usage.prompt_tokens, usage.completion_tokens)
            shas = answer.doc_sha256()
            info.retrieved = chunk_refs(answer.retrieved, shas)
            info.cited = chunk_refs(answer.citations, shas)
            info.prompt_tokens = usage.prompt_tokens
            info.completion_tokens = usage.completion_tokens
            info.extra = {
                "response_id": response_id,
                "release": answer.release,
                "stream": stream,
                "finish_reason": answer.finish_reason,
                "abstained": answer.abstained,
                "flagged_sources": answer.flagged_sources,
            }
            if answer.guard is not None:
                info.extra["guard"] = answer.guard
                info.extra["system_prompt_leak"] = answer.guard == "system_prompt_leak"

        def on_usage(usage: Usage) -> None:
            limiter.record(principal, usage.prompt_tokens, usage.completion_tokens)
            info.prompt_tokens = usage.prompt_tokens
            info.completion_tokens = usage.completion_tokens
            info.extra = {"response_id": response_id, "stream": stream, "finished": False}

        return ChatParams(
            messages=messages,
            max_tokens=body.requested_max_tokens(),
            temperature=body.temperature,
            top_k=top_k,
            filters=search_filters_for(principal, filters),
            stop=body.stop_list(),
            on_answer=on_answer,
            on_usage=on_usage,
            response_id=response_id,
        )

    # ---------------------------------------------------------------------- search
    def search(self, body: SearchRequest, principal: Principal, info: AuditInfo) -> SearchParams:
        """Admit a search: the key's request rate, the caller's filters with its groups."""
        info.question = body.query
        self.security.limiter.check(principal)
        own = body.filters.to_store() if body.filters is not None else None
        return SearchParams(body.query, body.top_k, search_filters_for(principal, own))

    def searched(self, info: AuditInfo, retrieval: Retrieval) -> None:
        """Fill the audit record of a finished search."""
        shas = {doc_id: d.sha256 for doc_id, d in retrieval.documents.items()}
        info.retrieved = chunk_refs(retrieval.hits, shas)
        info.extra = {"release": retrieval.release}
        flagged = sum(1 for h in retrieval.hits if "prompt_injection" in h.flags)
        if flagged:
            info.extra["flagged_chunks"] = flagged

    # ------------------------------------------------------------------ embeddings
    def embeddings(
        self, principal: Principal, info: AuditInfo, inputs: int, count: Callable[[], int]
    ) -> int:
        """Admit ``inputs`` embedding inputs: ``count`` validates them and counts their tokens
        (400 first), then the key's limits (429). Returns the tokens."""
        info.extra = {"inputs": inputs}  # never the texts themselves
        tokens = count()
        self.security.limiter.check(principal, estimated_tokens=tokens)
        return tokens

    def embedded(self, principal: Principal, info: AuditInfo, tokens: int) -> None:
        self.security.limiter.record(principal, tokens, 0)
        info.prompt_tokens = tokens
