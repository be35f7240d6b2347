"""Chat completions: admission, retrieval and the answer's decision in a thread; an answer that
is ready at once (an extract, an abstention) is sent without the model or the generation
queue; otherwise one generation at a time through the generation queue, the model in a worker
thread feeding the event loop, cancellation on disconnect or timeout, every sentence verified
before it is sent. No web-framework types here.

Admission by expected wait: a request is admitted by the generation queue when it arrives,
before retrieval, or refused at once with 429 ``queue_full`` and an honest ``Retry-After``
when the queue is full or it would be expected to miss its deadline
(``server/generation_queue.py``). Each finished generation teaches the queue what the next
will cost. When the answer mode in force never calls the model (``answer.mode = "extract"``,
or ``"auto"`` with the bundled small model), requests skip the queue altogether: a busy
model never refuses an answer that does not need it.

Time limit: ``server.request_timeout_s`` counts from the request's arrival and covers
retrieval, queueing and generation. Admission makes running out of time the exception (a
machine that stalls); then, without streaming, the generation is cancelled and the answer is
504 ``generation_timeout``. While streaming (the 200 status already sent), it cancels the
generation and ends the stream normally with ``finish_reason`` ``"timeout"``: a stream that
started is never turned into an error.

One module over 500 lines, on purpose: admission, the two response shapes (whole and
streamed) and cancellation share one lifecycle of a request; split, each half would be read
only with the other.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from enclave.errors import GenerationTimeoutError, QueueFullError
from models.generator import StreamCollector, StreamEvent, Usage
from rag.answer_guard import leaks_prompt
from rag.service import Answer, Prepared, RagService
from server.generation_queue import (
    POLL_S,
    ClientGoneError,
    DeadlineRefusal,
    GenerationQueue,
    Ticket,
)
from server.hold_estimate import GenerationSample
from server.prometheus import Metrics
from server.services.admission import Admission, ChatParams

if TYPE_CHECKING:
    from enclave.security.keys import Principal
    from server.middleware import AuditInfo
    from server.schemas import ChatCompletionRequest

log = logging.getLogger("enclave.server")

Disconnected = Callable[[], Awaitable[bool]]


class _End:
    """Marks the end of a worker's events."""


@dataclass
class GenerationRun:
    """One generation running in a worker thread; its events arrive on an asyncio queue."""

    prepared: Prepared
    started: float
    deadline: float
    cancel: threading.Event = field(default_factory=threading.Event)
    queue: asyncio.Queue[StreamEvent | BaseException | _End] = field(default_factory=asyncio.Queue)
    done: threading.Event = field(default_factory=threading.Event)
    first_token_s: float | None = None
    gen_started: float = 0.0
    _getter: asyncio.Task[StreamEvent | BaseException | _End] | None = None
    _checked: float = 0.0

    async def next(self, disconnected: Disconnected | None = None) -> StreamEvent | None:
        """The next event; None after the last. Cancels the generation and raises
        GenerationTimeoutError past the deadline or ClientGoneError on disconnect."""
        while True:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                self.cancel.set()
                raise GenerationTimeoutError(
                    "the answer took longer than the request timeout (server.request_timeout_s)"
                )
            now = time.monotonic()
            if disconnected is not None and now - self._checked >= POLL_S:
                self._checked = now
                if await disconnected():
                    self.cancel.set()
                    raise ClientGoneError("the client disconnected")
            if self._getter is None:
                self._getter = asyncio.ensure_future(self.queue.get())
            await asyncio.wait({self._getter}, timeout=min(POLL_S, remaining))
            if not self._getter.done():
                continue
            item = self._getter.result()
            self._getter = None
            if isinstance(item, _End):
                return None
            if isinstance(item, BaseException):
                raise item
            if self.first_token_s is None and item.delta:
                self.first_token_s = time.monotonic() - self.started
            return item


class ChatService:
    """Runs RAG answers for the HTTP API."""

    def __init__(
        self,
        rag: RagService,
        queue: GenerationQueue,
        metrics: Metrics,
        admission: Admission,
        *,
        request_timeout_s: float,
        model_name: str,
    ) -> None:
        self.rag = rag
        self.queue = queue
        self.metrics = metrics
        self.admission = admission
        self.request_timeout_s = request_timeout_s
        self.model_name = model_name

    async def reply(
        self,
        body: ChatCompletionRequest,
        principal: Principal,
        info: AuditInfo,
        *,
        disconnected: Disconnected | None = None,
    ) -> dict[str, Any] | ChatStream:
        """Admit the request, then answer it: the whole ``chat.completion`` object, or the
        stream to send when ``body.stream`` is set."""
        arrived = time.monotonic()
        params = self.admission.chat(body, principal, info)
        if body.stream:
            return await self.open_stream(params, disconnected=disconnected, arrived=arrived)
        return await self.complete(params, disconnected=disconnected, arrived=arrived)

    # ----------------------------------------------------------------- shared steps
    @staticmethod
    def _report(params: ChatParams, answer: Answer) -> None:
        if params.on_answer is not None:
            params.on_answer(answer)

    @staticmethod
    def _report_partial(params: ChatParams, usage: Usage) -> None:
        if params.on_usage is not None:
            params.on_usage(usage)

    def _admit(self, params: ChatParams, started: float) -> Ticket | None:
        """A place in line for the request, or 429 at once (``server/generation_queue.py``);
        None when the answer mode in force never calls the model (``answer.mode`` extract, or
        auto with a small model): such a request is not held back by generations it would
        never wait for."""
        if self.rag.mode() == "extract":
            return None
        return self._admit_now(params, started)

    async def _prepare(
        self, params: ChatParams, ticket: Ticket | None, started: float
    ) -> tuple[Prepared, Ticket | None]:
        """Retrieve and decide; an answer that needs the model holds a ticket afterwards
        (admitted late when the mode in force was not expected to need one)."""
        prepared = await run_in_threadpool(
            self.rag.prepare,
            params.messages,
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_k=params.top_k,
            filters=params.filters,
            stop=params.stop,
        )
        self.metrics.stage_seconds.labels("retrieve").observe(prepared.timings["retrieve_s"])
        for stage in ("rank", "pack"):
            if f"{stage}_s" in prepared.timings:
                self.metrics.stage_seconds.labels(stage).observe(prepared.timings[f"{stage}_s"])
        if prepared.abstained:
            self.metrics.abstentions.inc()
        if prepared.ready:
            if ticket is not None:
                self.queue.close(ticket)  # no model call: its place goes to the next
            return prepared, None
        if ticket is None:
            ticket = self._admit_now(params, started)
        self.queue.update(
            ticket, prompt_tokens=prepared.prompt_tokens, max_tokens=prepared.max_tokens
        )
        return prepared, ticket

    def _admit_now(self, params: ChatParams, started: float) -> Ticket:
        try:
            return self.queue.admit(
                max_tokens=self.rag.max_tokens(params.max_tokens),
                deadline=started + self.request_timeout_s,
            )
        except QueueFullError as exc:
            cause = "deadline" if isinstance(exc, DeadlineRefusal) else "queue_full"
            self.metrics.rejected.labels(cause).inc()
            raise

    async def _start(
        self, prepared: Prepared, ticket: Ticket, disconnected: Disconnected | None
    ) -> GenerationRun:
        queued = time.monotonic()
        try:
            await self.queue.acquire(ticket, disconnected=disconnected)
        except Exception as exc:
            cause = "timeout" if isinstance(exc, GenerationTimeoutError) else "disconnected"
            self.metrics.rejected.labels(cause).inc()
            raise
        self.metrics.stage_seconds.labels("queue").observe(time.monotonic() - queued)
        started = ticket.deadline - self.request_timeout_s
        run = GenerationRun(prepared=prepared, started=started, deadline=ticket.deadline)
        loop = asyncio.get_running_loop()
        self.metrics.in_flight.inc()
        thread = threading.Thread(
            target=self._work, args=(run, loop), name="enclave-generation", daemon=True
        )
        try:
            thread.start()
        except BaseException:
            self.metrics.in_flight.dec()
            self.queue.release()
            raise
        return run

    def _work(self, run: GenerationRun, loop: asyncio.AbstractEventLoop) -> None:
        """The worker thread: iterate the model's stream, hand events to the loop; when done,
        free the model and tell the queue what the generation cost."""

        def put(item: StreamEvent | BaseException | _End) -> None:
            try:
                loop.call_soon_threadsafe(run.queue.put_nowait, item)
            except RuntimeError:  # loop closed (shutdown)
                run.cancel.set()

        finish = "error"
        usage: Usage | None = None
        first_at: float | None = None
        run.gen_started = time.monotonic()
        try:
            for event in self.rag.generate(run.prepared, run.cancel):
                if first_at is None:
                    first_at = time.monotonic()
                if event.finish_reason is not None:
                    finish = event.finish_reason
                    if event.usage is not None:
                        usage = event.usage
                        self.metrics.tokens.labels("prompt").inc(event.usage.prompt_tokens)
                        self.metrics.tokens.labels("completion").inc(event.usage.completion_tokens)
                put(event)
        except BaseException as exc:  # handed to the request; logged there if a bug
            put(exc)
        finally:
            ended = time.monotonic()
            self.metrics.generations.labels(finish).inc()
            self.metrics.stage_seconds.labels("generate").observe(ended - run.gen_started)
            self.metrics.in_flight.dec()
            run.done.set()
            sample = None
            if usage is not None and first_at is not None:
                sample = GenerationSample(
                    prompt_tokens=usage.prompt_tokens,
                    completion_tokens=usage.completion_tokens,
                    max_tokens=run.prepared.max_tokens,
                    prefill_s=first_at - run.gen_started,
                    decode_s=ended - first_at,
                    finish_reason=finish,
                )
            self.queue.release_threadsafe(sample)
            put(_End())

    def _note_cancel(self, exc: BaseException) -> None:
        if isinstance(exc, GenerationTimeoutError):
            self.metrics.cancellations.labels("timeout").inc()
        elif isinstance(exc, ClientGoneError | asyncio.CancelledError):
            self.metrics.cancellations.labels("disconnect").inc()

    def estimates(self) -> dict[str, float]:
        """What admission expects now, for ``/metrics``: the wait of a request arriving now,
        the hold of a request with the default ``max_tokens``, the per-token rates."""
        estimator = self.queue.estimator
        budget = self.rag.max_tokens(None)
        prompt = estimator.prompt_tokens(budget, self.queue.context_size)
        return {
            "wait_s": self.queue.expected_wait_s(),
            "hold_s": estimator.hold(prompt, budget).mean,
            "prefill_s_per_token": estimator.prefill_s_per_token,
            "decode_s_per_token": estimator.decode_s_per_token,
            "admitted": float(self.queue.admitted),
        }

    # ----------------------------------------------------------------- non-streaming
    async def complete(
        self,
        params: ChatParams,
        *,
        disconnected: Disconnected | None = None,
        arrived: float | None = None,
    ) -> dict[str, Any]:
        """The whole answer as an OpenAI ``chat.completion`` object."""
        started = time.monotonic() if arrived is None else arrived
        ticket = self._admit(params, started)
        try:
            prepared, ticket = await self._prepare(params, ticket, started)
            if ticket is None:  # an extract or an abstention: no model call
                answer = self.rag.finish(
                    prepared, "", timings={"total_s": time.monotonic() - started}
                )
                self._report(params, answer)
                return self.completion_body(answer, params.response_id)
            run = await self._start(prepared, ticket, disconnected)
        finally:
            if ticket is not None:  # no-op once it holds the model: the worker frees it
                self.queue.close(ticket)
        collected = StreamCollector(prepared.prompt_tokens)
        try:
            while (event := await run.next(disconnected)) is not None:
                collected.add(event)
        except BaseException as exc:
            run.cancel.set()
            self._note_cancel(exc)
            self._report_partial(params, Usage(collected.usage.prompt_tokens, len(collected.parts)))
            raise
        answer = await self._finish(run, collected)
        self._report(params, answer)
        return self.completion_body(answer, params.response_id)

    async def _finish(self, run: GenerationRun, collected: StreamCollector) -> Answer:
        """Verify and attribute the answer in the thread pool: attribution runs the embedder,
        which must not block the event loop."""
        now = time.monotonic()
        first = run.first_token_s if run.first_token_s is not None else now - run.started
        self.metrics.stage_seconds.labels("first_token").observe(first)
        timings = {
            "first_token_s": first,
            "generate_s": now - run.gen_started if run.gen_started else 0.0,
            "total_s": now - run.started,
        }
        return await run_in_threadpool(
            self.rag.finish,
            run.prepared,
            collected.text,
            finish_reason=collected.finish_reason,
            usage=collected.usage,
            timings=timings,
        )

    def completion_body(self, answer: Answer, response_id: str | None = None) -> dict[str, Any]:
        return {
            "id": response_id or "chatcmpl-" + uuid.uuid4().hex[:24],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model_name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.text},
                    "finish_reason": answer.finish_reason,
                    "logprobs": None,
                }
            ],
            "usage": usage_dict(answer.usage),
            "citations": answer.citations,
            "sources": answer.sources,
            "enclave": enclave_extra(answer),
        }

    # ----------------------------------------------------------------- streaming
    async def open_stream(
        self,
        params: ChatParams,
        *,
        disconnected: Disconnected | None = None,
        arrived: float | None = None,
    ) -> ChatStream:
        """Everything that can still fail with an HTTP status happens here: admission (429),
        retrieval, packing (400), waiting for the model (504 if the machine stalls) and the
        first event."""
        started = time.monotonic() if arrived is None else arrived
        ticket = self._admit(params, started)
        try:
            prepared, ticket = await self._prepare(params, ticket, started)
            if ticket is None:  # an extract or an abstention: no model call
                return ChatStream(self, prepared, None, started, params=params)
            run = await self._start(prepared, ticket, disconnected)
        finally:
            if ticket is not None:  # no-op once it holds the model: the worker frees it
                self.queue.close(ticket)
        try:
            first = await run.next(disconnected)
        except BaseException as exc:
            run.cancel.set()
            self._note_cancel(exc)
            self._report_partial(params, Usage(prepared.prompt_tokens, 0))
            raise
        return ChatStream(self, prepared, run, started, first, params=params)


def usage_dict(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
    }


def enclave_extra(answer: Answer) -> dict[str, Any]:
    return {
        "release": answer.release,
        "mode": answer.mode,
        "verified": answer.verified,
        "removed": answer.removed,
        "abstained": answer.abstained,
        "abstain_reason": answer.abstain_reason,
        "quotes": answer.quotes,
        "fell_back": answer.fell_back,
        "dropped": answer.dropped,
        "attributed": answer.attributed,
        "timings": {k: round(v, 4) for k, v in answer.timings.items()},
    }


class ChatStream:
    """An answer being streamed as OpenAI ``chat.completion.chunk`` events (SSE)."""

    def __init__(
        self,
        service: ChatService,
        prepared: Prepared,
        run: GenerationRun | None,
        started: float,
        first: StreamEvent | None = None,
        *,
        params: ChatParams | None = None,
    ) -> None:
        self.service = service
        self.params = params or ChatParams(messages=[])
        self._reported = False
        self.prepared = prepared
        self.run = run
        self.started = started
        self._first = first
        self.id = self.params.response_id
        self.created = int(time.time())
        self._closed = False
        self._collected = StreamCollector(prepared.prompt_tokens)
        self._streamed = False
        #: the sources hold instruction-like text: the deltas are held back until the answer
        #: has been checked (rag/answer_guard.py), then sent as one
        self._hold = bool(prepared.suspect_tokens) or any(s.withheld for s in prepared.sources)

    def close(self) -> None:
        """Stop the generation (the client went away or the response ended)."""
        run = self.run
        if run is not None:
            if not run.done.is_set():
                if not self._closed:
                    self.service.metrics.cancellations.labels("disconnect").inc()
                run.cancel.set()
            if run._getter is not None and not run._getter.done():
                run._getter.cancel()
        self._closed = True

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.service.model_name,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }

    def _final(self, answer: Answer) -> dict[str, Any]:
        chunk = self._chunk({}, answer.finish_reason)
        chunk["usage"] = usage_dict(answer.usage)
        chunk["citations"] = answer.citations
        chunk["sources"] = answer.sources
        extra = enclave_extra(answer)
        extra["content"] = answer.text
        chunk["enclave"] = extra
        return chunk

    async def events(self) -> AsyncIterator[str]:
        """SSE lines: the role, content deltas as generated, a final chunk with
        finish_reason, usage, citations, sources and the cleaned text, then ``[DONE]``."""
        try:
            yield sse(self._chunk({"role": "assistant", "content": ""}))
            if self.run is None:  # ready at once (an extract, an abstention): no model call
                answer = self.service.rag.finish(
                    self.prepared, "", timings={"total_s": time.monotonic() - self.started}
                )
                self._reported = True
                self.service._report(self.params, answer)
                for i, line in enumerate(answer.text.split("\n")):  # one delta per quote
                    yield sse(self._chunk({"content": line if i == 0 else "\n" + line}))
                yield sse(self._final(answer))
                yield "data: [DONE]\n\n"
                return
            run = self.run
            collected = self._collected
            event = self._first
            try:
                while event is not None:
                    collected.add(event)
                    if event.delta:
                        if not self._hold and leaks_prompt(collected.text):
                            self._hold = True  # stop here; the final chunk has the refusal
                        if not self._hold:
                            self._streamed = True
                            yield sse(self._chunk({"content": event.delta}))
                    event = await run.next()
            except GenerationTimeoutError:
                self.service.metrics.cancellations.labels("timeout").inc()
                self._closed = True
                collected.finish_reason = "timeout"
            except Exception as exc:
                log.exception("generation failed mid-stream", exc_info=exc)
                yield sse(
                    {
                        "error": {
                            "message": "the generation failed",
                            "type": "server_error",
                            "param": None,
                            "code": "generation_failed",
                        }
                    }
                )
                return
            answer = await self.service._finish(run, collected)
            self._reported = True
            self.service._report(self.params, answer)
            if self._hold or not self._streamed:
                # held back for the answer check, or no sentence of the model's was verified
                # (the answer is the extract): now send the checked text
                text = answer.text if not self._streamed else "\n\n" + answer.text
                if text:
                    yield sse(self._chunk({"content": text}))
            yield sse(self._final(answer))
            yield "data: [DONE]\n\n"
        finally:
            if not self._reported and self.run is not None:
                self._reported = True
                self.service._report_partial(
                    self.params, Usage(self.prepared.prompt_tokens, len(self._collected.parts))
                )
            self.close()


def sse(payload: dict[str, Any]) -> str:
    return "data: " + json.dumps(payload, ensure_ascii=False, separators=(",", ":")) + "\n\n"
