"""The generation queue: one generation at a time per model, and admission by expected wait.

A chat request is admitted (:meth:`GenerationQueue.admit`) when it arrives, before any
retrieval, and is given a :class:`Ticket`, its place in line until the model is free again.
It is refused at once (429 ``queue_full`` with ``Retry-After``) when either

- ``queue_size`` admitted requests already wait behind the running one (the hard cap), or
- it is expected to miss its deadline: the work ahead of it (the running generation's
  expected remaining time plus the expected hold of every admitted request) plus its own
  expected hold, with a margin of ``Z`` standard deviations on the total, is more than
  ``1 - HEADROOM`` of the time left before its deadline. The estimates come from
  :class:`server.hold_estimate.HoldEstimator`.

A request that finds nothing admitted ahead of it is always admitted: no wait can be shorter.
``Retry-After`` is the number of seconds until a request like the refused one is expected to
be admitted: until enough admitted requests are done for the cap, and until the work ahead
has shrunk enough for the deadline.

An admitted request takes the model with :meth:`GenerationQueue.acquire` (waiting in arrival
order); the worker thread that runs the generation gives it back with
:meth:`GenerationQueue.release_threadsafe` when the model is really free again, with what
the generation cost, so a cancelled or timed-out request never lets the next one start while
llama.cpp is still busy. A ticket that never reaches the model (an abstained answer, an error
before generation) is closed with :meth:`GenerationQueue.close`.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from enclave.errors import EnclaveError, GenerationTimeoutError, QueueFullError
from server.hold_estimate import GenerationSample, Hold, HoldEstimator

#: how often a queued request checks its deadline and its client
POLL_S = 0.1
#: share of a request's time kept free of expected work (estimates are not promises)
HEADROOM = 0.1


class ClientGoneError(EnclaveError):
    """The client disconnected before its answer was ready (nobody reads this response)."""

    status_code = 499
    error_type = "invalid_request_error"
    code = "client_closed_request"


class DeadlineRefusal(QueueFullError):
    """Refused on arrival: the request is expected to miss its deadline (429 ``queue_full``)."""


@dataclass(eq=False)
class Ticket:
    """An admitted request's place in line, from admission until the model is free again."""

    seq: int
    deadline: float
    max_tokens: int
    #: the packed prompt's tokens, once known (:meth:`GenerationQueue.update`)
    prompt_tokens: int
    #: when it took the model (None while it waits or prepares)
    started: float | None = None
    closed: bool = False
    _future: asyncio.Future[None] | None = field(default=None, repr=False)


class GenerationQueue:
    """One model, its line of admitted requests, and what a generation is expected to cost."""

    def __init__(
        self,
        queue_size: int,
        on_change: Callable[[int], None] | None = None,
        *,
        estimator: HoldEstimator | None = None,
        context_size: int = 4096,
    ) -> None:
        self.queue_size = queue_size
        self.estimator = estimator or HoldEstimator()
        self.context_size = context_size
        self._on_change = on_change
        self._seq = itertools.count()
        #: admitted tickets not yet done, in arrival order
        self._tickets: list[Ticket] = []
        self._running: Ticket | None = None
        #: tickets waiting in acquire(), in arrival order
        self._waiters: list[Ticket] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ state
    @property
    def waiting(self) -> int:
        """Requests waiting in :meth:`acquire` for the model."""
        return sum(1 for t in self._waiters if t._future is not None and not t._future.done())

    @property
    def busy(self) -> bool:
        return self._running is not None

    @property
    def admitted(self) -> int:
        """Admitted requests not done yet (the running one included)."""
        return len(self._tickets)

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.waiting)

    def expected_hold(self, ticket: Ticket) -> Hold:
        return self.estimator.hold(ticket.prompt_tokens, ticket.max_tokens)

    def _remaining(self, ticket: Ticket, now: float) -> Hold:
        hold = self.expected_hold(ticket)
        return hold if ticket.started is None else hold.remaining(now - ticket.started)

    def _ahead(self, now: float) -> list[Hold]:
        """What each admitted request still holds, in the order they will run."""
        ordered = sorted(self._tickets, key=lambda t: (t.started is None, t.seq))
        return [self._remaining(t, now) for t in ordered]

    def expected_wait_s(self, now: float | None = None) -> float:
        """Mean work ahead of a request arriving now (seconds until the model would be its)."""
        ahead = self._ahead(time.monotonic() if now is None else now)
        return sum(h.mean for h in ahead)

    # ------------------------------------------------------------------ admission
    def admit(self, *, max_tokens: int, deadline: float, now: float | None = None) -> Ticket:
        """Admit a request that may generate ``max_tokens`` tokens and must be done by
        ``deadline`` (``time.monotonic()``), or refuse it (see the module docstring)."""
        now = time.monotonic() if now is None else now
        prompt = self.estimator.prompt_tokens(max_tokens, self.context_size)
        ticket = Ticket(next(self._seq), deadline, max_tokens, prompt)
        if self._tickets:
            self._check(ticket, now)
        self._tickets.append(ticket)
        return ticket

    def _check(self, ticket: Ticket, now: float) -> None:
        holds = self._ahead(now)
        ahead = sum(holds, Hold(0.0, 0.0))
        own = self.expected_hold(ticket)
        total = ahead + own
        budget = (ticket.deadline - now) * (1.0 - HEADROOM)
        # the cap: queue_size may wait behind the running one
        over = len(self._tickets) - self.queue_size
        if over <= 0 and total.bound <= budget:
            return
        cap_wait = sum(h.mean for h in holds[:over]) if over > 0 else 0.0
        # until the work ahead leaves room for it, or at the latest until the model is idle
        fit_wait = max(0.0, min(total.bound - budget, ahead.mean))
        retry_after = max(1, math.ceil(max(cap_wait, fit_wait)))
        waiting = len(self._tickets) - (1 if self._running is not None else 0)
        if over > 0:
            raise QueueFullError(
                f"the server is busy: {waiting} requests are waiting for the model (the queue "
                f"holds {self.queue_size}); retry in {retry_after} s",
                retry_after=retry_after,
            )
        raise DeadlineRefusal(
            f"the server is busy: the model is expected to be free for this request in "
            f"{ahead.mean:.0f} s and its answer to take {own.mean:.0f} s more, too close to "
            f"its deadline of {ticket.deadline - now:.0f} s (server.request_timeout_s); retry "
            f"in {retry_after} s",
            retry_after=retry_after,
        )

    def update(self, ticket: Ticket, *, prompt_tokens: int, max_tokens: int) -> None:
        """The request has been packed: its real prompt size and budget."""
        ticket.prompt_tokens = prompt_tokens
        ticket.max_tokens = max_tokens

    def close(self, ticket: Ticket) -> None:
        """Drop a ticket that is not holding the model (no-op once it runs or is closed):
        its request answered without the model, failed, or left."""
        if ticket.closed or ticket is self._running:
            return
        ticket.closed = True
        if ticket in self._tickets:
            self._tickets.remove(ticket)
        self._changed()

    # ------------------------------------------------------------------ the model
    async def acquire(
        self, ticket: Ticket, *, disconnected: Callable[[], Awaitable[bool]] | None = None
    ) -> None:
        """Take the model for ``ticket``, waiting in arrival order until its deadline.

        Raises GenerationTimeoutError when the deadline passes first (the machine stalled:
        admission expected otherwise), ClientGoneError when ``disconnected()`` turns true.
        Either way the ticket stays open: the caller closes it."""
        self._loop = asyncio.get_running_loop()
        if self._running is None and not self.waiting:
            self._take(ticket)
            return
        future: asyncio.Future[None] = self._loop.create_future()
        ticket._future = future
        index = next((i for i, t in enumerate(self._waiters) if t.seq > ticket.seq), None)
        self._waiters.insert(len(self._waiters) if index is None else index, ticket)
        self._changed()
        try:
            while not future.done():
                remaining = ticket.deadline - time.monotonic()
                if remaining <= 0:
                    raise GenerationTimeoutError(
                        "timed out waiting for the model (request_timeout_s)"
                    )
                await asyncio.wait({future}, timeout=min(POLL_S, remaining))
                if future.done():
                    break
                if disconnected is not None and await disconnected():
                    raise ClientGoneError("the client disconnected while queued")
        except BaseException:
            if future.done() and not future.cancelled():
                self._running = None
                self._hand_on()  # we were given the model but are leaving: pass it on
            else:
                future.cancel()
            self._prune()
            raise
        self._prune()
        ticket.started = time.monotonic()

    def _take(self, ticket: Ticket) -> None:
        self._running = ticket
        ticket.started = time.monotonic()

    def _prune(self) -> None:
        self._waiters = [t for t in self._waiters if t._future is not None and not t._future.done()]
        self._changed()

    def _hand_on(self) -> None:
        """Give the model to the next live waiter, or mark it free."""
        while self._waiters:
            ticket = self._waiters.pop(0)
            future = ticket._future
            if future is not None and not future.done():
                self._running = ticket
                ticket.started = time.monotonic()
                future.set_result(None)
                self._changed()
                return
        self._changed()

    def release(self, sample: GenerationSample | None = None) -> None:
        """Free the model (on the event loop), learning from what the generation cost."""
        if sample is not None:
            self.estimator.observe(sample)
        running = self._running
        self._running = None
        if running is not None:
            running.closed = True
            if running in self._tickets:
                self._tickets.remove(running)
        self._hand_on()

    def release_threadsafe(self, sample: GenerationSample | None = None) -> None:
        """Free the model from a worker thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._running = None
            return
        try:
            loop.call_soon_threadsafe(self.release, sample)
        except RuntimeError:  # the loop closed meanwhile (shutdown)
            self._running = None
