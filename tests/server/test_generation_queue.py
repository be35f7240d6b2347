"""Admission by expected wait, in isolation: the hold estimator and the generation queue's
arithmetic (who is admitted, the Retry-After it promises, the order the model is handed on).
The live behaviour under a burst is in test_load.py."""

from __future__ import annotations

import asyncio
import math
import statistics

import pytest

from enclave.errors import QueueFullError
from server.generation_queue import DeadlineRefusal, GenerationQueue
from server.hold_estimate import (
    MIN_SAMPLES,
    MIN_SPREAD,
    SEED_DECODE_S,
    SEED_PREFILL_S,
    SEED_SPREAD,
    GenerationSample,
    HoldEstimator,
    Z,
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


def test_estimator_is_seeded_before_any_generation() -> None:
    est = HoldEstimator()
    assert est.prefill_s_per_token == SEED_PREFILL_S
    assert est.decode_s_per_token == SEED_DECODE_S
    assert est.prompt_tokens(200, 2048) == 1848  # the packing bound
    hold = est.hold(1000, 100)  # nothing known: the whole budget, a wide spread
    assert hold.mean == pytest.approx(1000 * SEED_PREFILL_S + 100 * SEED_DECODE_S)
    assert math.sqrt(hold.var) == pytest.approx(SEED_SPREAD * hold.mean)


def test_estimator_learns_from_finished_generations_only() -> None:
    est = HoldEstimator()
    est.observe(sample(completion=21, prompt=100, prefill_s=0.5, decode_s=2.0))
    assert est.prefill_s_per_token == pytest.approx(0.005)
    assert est.decode_s_per_token == pytest.approx(0.1)
    assert est.prompt_tokens(64, 2048) == 100
    for finish in ("cancelled", "error", "timeout"):  # cut short: teaches nothing
        est.observe(sample(prefill_s=50.0, decode_s=0.01, finish=finish))
    assert est.samples == 1
    assert est.hold(200, 11).mean == pytest.approx(200 * 0.005 + 11 * 0.1)


def test_estimator_adds_the_spread_of_its_samples() -> None:
    est = HoldEstimator()
    for decode in [1.0] * 9 + [3.0]:  # one slow generation in ten
        est.observe(sample(completion=11, prompt=100, prefill_s=0.0, decode_s=decode))
    assert est.decode_s_per_token == pytest.approx(0.12)
    hold = est.hold(100, 10)  # every answer was cut at its budget: 10 tokens
    assert hold.mean == pytest.approx(1.2)
    costs = [1.0] * 9 + [3.0]
    assert hold.var == pytest.approx(statistics.variance(costs))
    assert hold.bound == pytest.approx(1.2 + Z * statistics.stdev(costs))
    steady = HoldEstimator()
    for _ in range(10):
        steady.observe(sample(completion=11, prompt=100, prefill_s=0.0, decode_s=1.0))
    assert math.sqrt(steady.hold(100, 10).var) == pytest.approx(MIN_SPREAD * 1.0)


def test_expected_length_is_the_budget_unless_answers_stop_earlier() -> None:
    est = HoldEstimator()
    for _ in range(MIN_SAMPLES - 1):
        est.observe(sample(completion=21, max_tokens=200, prefill_s=0.0, decode_s=2.0))
    assert est.hold(100, 200).mean == pytest.approx(200 * 0.1)  # too few answers to trust
    est.observe(sample(completion=41, max_tokens=200, prefill_s=0.0, decode_s=4.0))
    assert est.hold(100, 200).mean == pytest.approx((4 * 21 + 41) * 0.1 / 5)
    assert est.hold(100, 25).mean == pytest.approx((4 * 21 + 25) * 0.1 / 5)
    for _ in range(5):  # answers cut by their budget would have gone on
        est.observe(sample(completion=64, max_tokens=64, decode_s=6.3, finish="length"))
    assert est.hold(100, 200).mean > (4 * 21 + 41 + 5 * 200) * 0.1 / 10


def _queue(queue_size: int = 8, hold_s: float = 1.0) -> GenerationQueue:
    """A queue whose every request with max_tokens 10 is expected to hold the model
    ``hold_s`` seconds (give or take ``MIN_SPREAD``), and longer ones in proportion."""
    est = HoldEstimator()
    for _ in range(MIN_SAMPLES):  # answers cut by their budget: the budget is the length
        est.observe(
            sample(11, prompt=100, max_tokens=11, prefill_s=0.0, decode_s=hold_s, finish="length")
        )
    return GenerationQueue(queue_size, estimator=est, context_size=2048)


def test_admission_counts_the_work_ahead_against_the_deadline() -> None:
    queue = _queue(queue_size=20, hold_s=1.0)  # the cap is out of reach
    now = 100.0
    deadline = now + 10.0  # 9 s once the headroom is kept
    margin = Z * MIN_SPREAD  # of one request's 1 s
    tickets = [queue.admit(max_tokens=10, deadline=deadline, now=now) for _ in range(8)]
    assert queue.expected_wait_s(now) == pytest.approx(8.0)
    # 9 s of work, and its margin, do not fit in 9 s
    with pytest.raises(DeadlineRefusal) as refused:
        queue.admit(max_tokens=10, deadline=deadline, now=now)
    assert refused.value.retry_after == math.ceil(9.0 + margin * math.sqrt(9) - 9.0)
    assert refused.value.status_code == 429 and refused.value.code == "queue_full"
    queue._take(tickets[0])
    tickets[0].started = now - 0.5  # half done
    assert queue.expected_wait_s(now) == pytest.approx(7.5)
    with pytest.raises(DeadlineRefusal) as refused:
        queue.admit(max_tokens=30, deadline=deadline, now=now)  # 3 s more: 10.5 s
    spread = math.sqrt(8 * MIN_SPREAD**2 + (3 * MIN_SPREAD) ** 2)
    assert refused.value.retry_after == math.ceil(10.5 + Z * spread - 9.0)
    queue.close(tickets[5])  # answered without the model: its time is free again
    assert queue.expected_wait_s(now) == pytest.approx(6.5)
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
        assert queue.estimator.samples == MIN_SAMPLES + 4
        return order

    assert asyncio.run(scenario()) == [1, 2, 3]
