from __future__ import annotations

import json
import stat
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from enclave.errors import RateLimitError
from enclave.security.keys import Principal
from enclave.security.rate_limits import Limiter


class Clock:
    def __init__(self, iso: str) -> None:
        self.t = datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp()

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def test_requests_per_minute(data_dir: Path) -> None:
    clock = Clock("2026-03-02T10:00:00")
    lim = Limiter(data_dir, clock=clock)
    p = Principal(name="alice", key_id="k1", rpm=2)
    lim.check(p)
    clock.advance(20)
    lim.check(p)
    clock.advance(10)
    with pytest.raises(RateLimitError) as info:
        lim.check(p)
    err = info.value
    assert err.status_code == 429 and err.code == "rate_limit_exceeded"
    assert "rate limit of 2 requests per minute for key 'alice' reached" in err.message
    assert err.retry_after == 30 and "retry in 30 s" in err.message
    clock.advance(30)  # the first request leaves the window
    lim.check(p)
    # another key has its own window
    lim.check(Principal(name="bob", key_id="k2", rpm=2))


def test_daily_budget_message_retry_after_and_rollover(data_dir: Path) -> None:
    clock = Clock("2026-03-02T23:00:00")
    lim = Limiter(data_dir, clock=clock)
    p = Principal(name="alice", key_id="k1", daily_tokens=100)
    lim.check(p, estimated_tokens=60)
    lim.record(p, prompt_tokens=60, completion_tokens=30)
    with pytest.raises(RateLimitError) as info:
        lim.check(p, estimated_tokens=20)
    assert "has 10 tokens left, this request needs about 20" in info.value.message
    lim.check(p, estimated_tokens=5)
    lim.record(p, prompt_tokens=5, completion_tokens=10)  # now 105 >= 100
    with pytest.raises(RateLimitError) as info:
        lim.check(p)
    msg = info.value.message
    assert (
        "daily token budget of 100 tokens for key 'alice' is used up (105 tokens used today)" in msg
    )
    assert "resets at 00:00 UTC, in 1 h 00 min" in msg
    assert info.value.retry_after == 3600
    snap = lim.usage()
    assert snap["day"] == "2026-03-02" and snap["resets_at"] == "2026-03-03T00:00:00Z"
    (k,) = snap["keys"]
    assert k["total_tokens"] == 105 and k["remaining_tokens"] == 0 and k["requests"] == 2
    clock.advance(3600)  # midnight UTC: a new budget
    lim.check(p)
    assert lim.usage()["keys"][0]["total_tokens"] == 0


def test_budget_survives_a_restart(data_dir: Path) -> None:
    clock = Clock("2026-03-02T12:00:00")
    p = Principal(name="alice", key_id="k1", daily_tokens=50)
    first = Limiter(data_dir, clock=clock)
    first.check(p)
    first.record(p, 40, 15)
    path = data_dir / "usage.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["keys"]["k1"]["completion_tokens"] == 15

    second = Limiter(data_dir, clock=clock)  # a restarted server
    with pytest.raises(RateLimitError, match="is used up"):
        second.check(p)
    assert second.usage()["keys"][0]["requests"] == 1

    clock.advance(86400)  # the next day the old file no longer counts
    third = Limiter(data_dir, clock=clock)
    third.check(p)


def test_save_interval_and_flush(data_dir: Path) -> None:
    clock = Clock("2026-03-02T12:00:00")
    p = Principal(name="a", key_id="k1")
    lim = Limiter(data_dir, clock=clock, save_interval_s=60)
    lim.record(p, 1, 1)  # first write happens (last save long ago)
    lim.record(p, 5, 5)  # within the interval: kept in memory
    saved = json.loads((data_dir / "usage.json").read_text())["keys"]["k1"]
    assert saved["prompt_tokens"] == 1
    lim.flush()
    saved = json.loads((data_dir / "usage.json").read_text())["keys"]["k1"]
    assert saved["prompt_tokens"] == 6


def test_defaults_and_unlimited(data_dir: Path) -> None:
    clock = Clock("2026-03-02T12:00:00")
    lim = Limiter(None, default_daily_tokens=10, default_rpm=1, clock=clock)
    uses_default = Principal(name="a", key_id="k1")
    unlimited = Principal(name="b", key_id="k2", daily_tokens=0, rpm=0)
    assert lim.limits_for(uses_default) == (10, 1)
    assert lim.limits_for(unlimited) == (None, None)
    lim.check(uses_default)
    with pytest.raises(RateLimitError, match="1 requests per minute"):
        lim.check(uses_default)
    for _ in range(50):
        lim.check(unlimited)
        lim.record(unlimited, 1000, 1000)
    assert lim.usage()["keys"][1]["remaining_tokens"] is None


def test_unreadable_usage_file_starts_from_zero(data_dir: Path) -> None:
    (data_dir / "usage.json").write_text("{broken")
    lim = Limiter(data_dir)
    lim.check(Principal(name="a", key_id="k1", daily_tokens=10))


def test_thread_safety(data_dir: Path) -> None:
    lim = Limiter(data_dir, save_interval_s=3600)
    p = Principal(name="a", key_id="k1", rpm=10_000)

    def work() -> None:
        for _ in range(200):
            lim.check(p)
            lim.record(p, 2, 1)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (k,) = lim.usage()["keys"]
    assert k["requests"] == 1600 and k["prompt_tokens"] == 3200 and k["completion_tokens"] == 1600
    assert k["requests_last_minute"] == 1600


def test_rpm_admission_is_atomic_under_concurrency(data_dir: Path) -> None:
    lim = Limiter(None)
    p = Principal(name="a", key_id="k1", rpm=5)
    admitted: list[int] = []
    refused: list[int] = []
    barrier = threading.Barrier(20)

    def one(i: int) -> None:
        barrier.wait()
        try:
            lim.check(p)
            admitted.append(i)
        except RateLimitError:
            refused.append(i)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 5 and len(refused) == 15
