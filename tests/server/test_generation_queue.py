"""Admission by expected wait, in isolation: the hold estimator and the generation queue's
arithmetic (who is admitted, the Retry-After it promises, the order the model is handed on).
The live behaviour under a burst is in test_load.py."""

from __future__ import annotations

import asyncio
import math

import pytest

from enclave.errors import QueueFullError
from server.generation_queue import DeadlineRefusal, GenerationQueue
from server.hold_estimate import (
    MIN_SAMPLES,
    SEED_DECODE_S,
    SEED_PREFILL_S,
    GenerationSample,
    HoldEstimator,
    percentile,
)


def sample(
    completion: int = 21,
    *,
    prompt: int = 100,
    max_tokens: int = 64,
    prefill_s: float = 0.5,
    decode_s: float = 2.0,
    finish: str = "stop",
) -> GenerationSample:
    return GenerationSample(prompt, completion, max_tokens, prefill_s, decode_s, finish)


def test_percentile_is_nearest_rank() -> None:
    assert percentile([3.0]) == 3.0
    assert percentile(range(1, 11)) == 9
    assert percentile(range(1, 101), 0.5) == 50
    with pytest.raises(ValueError):
        percentile([])


def test_estimator_is_seeded_before_any_generation() -> None:
    est = HoldEstimator()
    assert est.prefill_s_per_token == SEED_PREFILL_S
    assert est.decode_s_per_token == SEED_DECODE_S
    assert est.completion_tokens(200) == 200  # nothing known: the whole budget
    assert est.prompt_tokens(200, 2048) == 1848  # the packing bound
    assert est.hold_s(1000, 100) == pytest.approx(1000 * SEED_PREFILL_S + 100 * SEED_DECODE_S)


def test_estimator_learns_rates_from_finished_generations_only() -> None:
    est = HoldEstimator()
    est.observe(sample(completion=21, prompt=100, prefill_s=0.5, decode_s=2.0))
    assert est.prefill_s_per_token == pytest.approx(0.005)
    assert est.decode_s_per_token == pytest.approx(0.1)
    for finish in ("cancelled", "error", "timeout"):  # cut short: teaches nothing
        est.observe(sample(prefill_s=50.0, decode_s=0.01, finish=finish))
    assert est.samples == 1
    assert est.decode_s_per_token == pytest.approx(0.1)
    assert est.hold_s(200, 11) == pytest.approx(200 * 0.005 + 11 * 0.1)


def test_estimator_is_conservative() -> None:
    est = HoldEstimator()
    for decode in [1.0] * 9 + [3.0]:  # one slow generation in ten
        est.observe(sample(completion=11, decode_s=decode))
    assert est.decode_s_per_token == pytest.approx(0.1)  # the 90th percentile of 0.1 and 0.3
    est.observe(sample(completion=11, decode_s=3.0))
    assert est.decode_s_per_token == pytest.approx(0.3)  # now two in eleven are slow


def test_expected_length_is_the_budget_unless_answers_stop_earlier() -> None:
    est = HoldEstimator()
    for _ in range(MIN_SAMPLES - 1):
        est.observe(sample(completion=20, max_tokens=200))
    assert est.completion_tokens(200) == 200  # too few answers to trust
    est.observe(sample(completion=30, max_tokens=200))
    assert est.completion_tokens(200) == 30
    assert est.completion_tokens(25) == 25
    for _ in range(3):  # answers cut by their budget would have gone on
        est.observe(sample(completion=64, max_tokens=64, finish="length"))
    assert est.completion_tokens(200) == 200


def _queue(queue_size: int = 8, hold_s: float = 1.0) -> GenerationQueue:
    """A queue whose every request is expected to hold the model ``hold_s`` seconds."""
    est = HoldEstimator()
    est.observe(sample(completion=11, prompt=100, prefill_s=0.0, decode_s=hold_s))
    return GenerationQueue(queue_size, estimator=est, context_size=2048)


def test_admission_counts_the_work_ahead_against_the_deadline() -> None:
    # 10 tokens at 0.1 s: every request (max_tokens 10) takes 1 s; the cap is out of reach
    queue = _queue(queue_size=20, hold_s=1.0)
    now = 100.0
    deadline = now + 10.0  # 9 s once the headroom is kept
    tickets = [queue.admit(max_tokens=10, deadline=deadline, now=now) for _ in range(9)]
    assert queue.expected_wait_s(now) == pytest.approx(9.0)
    with pytest.raises(DeadlineRefusal) as refused:
        queue.admit(max_tokens=10, deadline=deadline, now=now)
    # admitted once one second of work is done
    assert refused.value.retry_after == 1
    assert refused.value.status_code == 429 and refused.value.code == "queue_full"
    queue._take(tickets[0])
    tickets[0].started = now - 0.5  # half done
    assert queue.expected_wait_s(now) == pytest.approx(8.5)
    with pytest.raises(DeadlineRefusal) as refused:
        queue.admit(max_tokens=30, deadline=deadline, now=now)  # 3 s: 11.5 s > 9 s
    assert refused.value.retry_after == math.ceil(8.5 + 3.0 - 9.0)
    queue.close(tickets[5])  # answered without the model: its time is free again
    assert queue.expected_wait_s(now) == pytest.approx(7.5)
    queue.admit(max_tokens=10, deadline=deadline, now=now)


def test_the_queue_size_stays_a_hard_cap() -> None:
    queue = _queue(queue_size=2, hold_s=1.0)
    now = 0.0
    first = queue.admit(max_tokens=10, deadline=1000.0, now=now)
    queue._take(first)
    first.started = now
    queue.admit(max_tokens=10, deadline=1000.0, now=now)
    queue.admit(max_tokens=10, deadline=1000.0, now=now)
    with pytest.raises(QueueFullError) as refused:
        queue.admit(max_tokens=10, deadline=1000.0, now=now)
    assert not isinstance(refused.value, DeadlineRefusal)
    assert refused.value.retry_after == 1  # the running one is done in a second


def test_a_request_alone_is_always_admitted() -> None:
    queue = _queue(hold_s=1.0)
    ticket = queue.admit(max_tokens=10_000, deadline=5.0, now=0.0)  # 1000 s expected
    assert queue.admitted == 1
    queue.close(ticket)
    assert queue.admitted == 0


def test_the_model_goes_to_the_earliest_admitted_waiter() -> None:
    async def scenario() -> list[int]:
        queue = _queue()
        far = asyncio.get_running_loop().time() + 1000  # loop time is time.monotonic()
        tickets = [queue.admit(max_tokens=10, deadline=far) for _ in range(4)]
        order: list[int] = []

        async def run(i: int) -> None:
            await queue.acquire(tickets[i])
            order.append(i)
            await asyncio.sleep(0.01)
            queue.release(sample(completion=11, decode_s=0.5))

        await queue.acquire(tickets[0])
        # tickets 3, 2, 1 join the line in reverse arrival order
        waiters = [asyncio.create_task(run(i)) for i in (3, 2, 1)]
        await asyncio.sleep(0.05)
        assert queue.waiting == 3 and queue.admitted == 4
        queue.release(sample(completion=11, decode_s=0.5))
        await asyncio.gather(*waiters)
        assert queue.admitted == 0 and not queue.busy
        assert queue.estimator.samples == 5
        return order

    assert asyncio.run(scenario()) == [1, 2, 3]
