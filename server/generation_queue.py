"""The generation queue: one generation at a time per model, behind a bounded FIFO queue.

The queue lives on the event loop. A request takes the model (or a place in the queue) with
:meth:`GenerationQueue.acquire`; the worker thread that runs the generation gives it back with
:meth:`GenerationQueue.release_threadsafe` when the model is really free again, so a
cancelled or timed-out request never lets the next one start while llama.cpp is still busy.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

from enclave.errors import EnclaveError, GenerationTimeoutError, QueueFullError

#: how often a queued request checks its deadline and its client
POLL_S = 0.1


class ClientGoneError(EnclaveError):
    """The client disconnected before its answer was ready (nobody reads this response)."""

    status_code = 499
    error_type = "invalid_request_error"
    code = "client_closed_request"


class GenerationQueue:
    """A FIFO lock with at most ``queue_size`` waiters; the rest are refused (429)."""

    def __init__(self, queue_size: int, on_change: Callable[[int], None] | None = None) -> None:
        self.queue_size = queue_size
        self._busy = False
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._on_change = on_change
        #: running mean of how long one generation holds the model (for Retry-After)
        self.mean_hold_s = 2.0
        self._held_since = 0.0

    @property
    def waiting(self) -> int:
        return sum(1 for f in self._waiters if not f.done())

    @property
    def busy(self) -> bool:
        return self._busy

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.waiting)

    def retry_after(self) -> int:
        return max(1, round(self.mean_hold_s * (self.waiting + 1)))

    async def acquire(
        self,
        *,
        deadline: float,
        disconnected: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        """Take the model, waiting in line until ``deadline`` (``time.monotonic()``).

        Raises QueueFullError at once when the line is full, GenerationTimeoutError when the
        deadline passes first, ClientGoneError when ``disconnected()`` turns true."""
        self._loop = asyncio.get_running_loop()
        if not self._busy and not self.waiting:
            self._take()
            return
        if self.waiting >= self.queue_size:
            raise QueueFullError(
                f"the server is busy: one answer is being generated and {self.waiting} "
                f"are waiting (the queue holds {self.queue_size}); retry later",
                retry_after=self.retry_after(),
            )
        future: asyncio.Future[None] = self._loop.create_future()
        self._waiters.append(future)
        self._changed()
        try:
            while not future.done():
                remaining = deadline - time.monotonic()
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
                self._hand_on()  # we were given the model but are leaving: pass it on
            else:
                future.cancel()
            self._prune()
            raise
        self._prune()
        self._held_since = time.monotonic()

    def _take(self) -> None:
        self._busy = True
        self._held_since = time.monotonic()

    def _prune(self) -> None:
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()
        self._changed()

    def _hand_on(self) -> None:
        """Give the model to the next live waiter, or mark it free."""
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(None)
                self._changed()
                return
        self._busy = False
        self._changed()

    def release(self) -> None:
        """Free the model (on the event loop)."""
        held = time.monotonic() - self._held_since
        self.mean_hold_s = 0.8 * self.mean_hold_s + 0.2 * held
        self._hand_on()

    def release_threadsafe(self) -> None:
        """Free the model from a worker thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            self._busy = False
            return
        try:
            loop.call_soon_threadsafe(self.release)
        except RuntimeError:  # the loop closed meanwhile (shutdown)
            self._busy = False
