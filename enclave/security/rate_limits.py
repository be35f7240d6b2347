"""Cost controls: per-key requests per minute and a daily token budget.

The minute window lives in memory (a sliding 60 s window per key). The day's counters are
persisted in ``<data_dir>/usage.json`` (atomically, on every update by default) so a restart
does not hand out a fresh budget; they reset at 00:00 UTC.

A key's own limits win; a key without them gets the server defaults
(``security.default_daily_tokens`` / ``security.default_rpm``); 0 means unlimited.
One server process owns the file.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from enclave.errors import RateLimitError
from enclave.security._files import atomic_write_text
from enclave.security.keys import Principal

log = logging.getLogger(__name__)

USAGE_FILE = "usage.json"
WINDOW_S = 60.0


def utc_day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def seconds_to_midnight(ts: float) -> int:
    now = datetime.fromtimestamp(ts, UTC)
    midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max(1, math.ceil((midnight - now).total_seconds()))


def _fmt_duration(seconds: int) -> str:
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h} h {m:02d} min"
    if m:
        return f"{m} min {s:02d} s"
    return f"{s} s"


@dataclass
class _Counter:
    name: str
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    daily_tokens: int | None = None
    rpm: int | None = None
    recent: deque[float] = field(default_factory=deque)

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Limiter:
    """Thread-safe per-key limits. ``check`` before generating, ``record`` after."""

    def __init__(
        self,
        data_dir: Path | str | None,
        *,
        default_daily_tokens: int = 0,
        default_rpm: int = 0,
        clock: Callable[[], float] = time.time,
        save_interval_s: float = 0.0,
    ) -> None:
        self.path = Path(data_dir) / USAGE_FILE if data_dir is not None else None
        self.default_daily_tokens = default_daily_tokens
        self.default_rpm = default_rpm
        self._clock = clock
        self._save_interval_s = save_interval_s
        self._lock = threading.Lock()
        self._day = utc_day(clock())
        self._keys: dict[str, _Counter] = {}
        self._dirty = False
        self._last_save = 0.0
        self._load()

    # ------------------------------------------------------------ persistence
    def _load(self) -> None:
        if self.path is None or not self.path.exists():
            return
        try:
            data = json.loads(self.path.read_text("utf-8"))
            if data.get("day") != self._day:
                return
            for key_id, c in dict(data.get("keys", {})).items():
                self._keys[str(key_id)] = _Counter(
                    name=str(c.get("name", key_id)),
                    requests=int(c.get("requests", 0)),
                    prompt_tokens=int(c.get("prompt_tokens", 0)),
                    completion_tokens=int(c.get("completion_tokens", 0)),
                )
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            log.warning(
                "ignoring unreadable %s (%s); today's usage starts from zero", self.path, exc
            )

    def _save_locked(self, now: float, *, force: bool = False) -> None:
        if self.path is None:
            return
        self._dirty = True
        if not force and now - self._last_save < self._save_interval_s:
            return
        data = {
            "format": 1,
            "day": self._day,
            "keys": {
                key_id: {
                    "name": c.name,
                    "requests": c.requests,
                    "prompt_tokens": c.prompt_tokens,
                    "completion_tokens": c.completion_tokens,
                }
                for key_id, c in sorted(self._keys.items())
            },
        }
        # not fsync'd: a crashed process never leaves half a file; a power cut may lose the
        # last seconds of counts, which is an acceptable error for a budget
        atomic_write_text(self.path, json.dumps(data, indent=2) + "\n", durable=False)
        self._last_save = now
        self._dirty = False

    def flush(self) -> None:
        """Write pending counters now (call at shutdown when ``save_interval_s`` > 0)."""
        with self._lock:
            if self._dirty:
                self._save_locked(self._clock(), force=True)

    # ------------------------------------------------------------ limits
    def limits_for(self, principal: Principal) -> tuple[int | None, int | None]:
        """``(daily_tokens, rpm)`` in force for ``principal``; None = unlimited."""
        daily = principal.daily_tokens
        if daily is None:
            daily = self.default_daily_tokens
        rpm = principal.rpm
        if rpm is None:
            rpm = self.default_rpm
        return (daily or None, rpm or None)

    def _roll_locked(self, now: float) -> None:
        day = utc_day(now)
        if day != self._day:
            self._day = day
            for c in self._keys.values():
                c.requests = c.prompt_tokens = c.completion_tokens = 0

    def _counter_locked(self, principal: Principal) -> _Counter:
        c = self._keys.get(principal.key_id)
        if c is None:
            c = self._keys[principal.key_id] = _Counter(name=principal.name)
        c.name = principal.name
        c.daily_tokens, c.rpm = self.limits_for(principal)
        return c

    def check(self, principal: Principal, *, estimated_tokens: int = 0) -> None:
        """Admit one request or raise RateLimitError (with ``retry_after`` in seconds).

        An admitted request counts towards the minute window at once, so concurrent requests
        cannot all slip through. ``estimated_tokens`` (e.g. the prompt's tokens) is refused
        up front when it would not fit into what is left of the daily budget.
        """
        with self._lock:
            now = self._clock()
            self._roll_locked(now)
            c = self._counter_locked(principal)
            if c.daily_tokens is not None:
                left = c.daily_tokens - c.total
                if left <= 0 or estimated_tokens > left:
                    wait = seconds_to_midnight(now)
                    spent = (
                        f"is used up ({c.total} tokens used today)"
                        if left <= 0
                        else f"has {left} tokens left, this request needs about {estimated_tokens}"
                    )
                    raise RateLimitError(
                        f"daily token budget of {c.daily_tokens} tokens for key {c.name!r} "
                        f"{spent}; it resets at 00:00 UTC, in {_fmt_duration(wait)}",
                        retry_after=wait,
                    )
            if c.rpm is not None:
                while c.recent and c.recent[0] <= now - WINDOW_S:
                    c.recent.popleft()
                if len(c.recent) >= c.rpm:
                    wait = max(1, math.ceil(c.recent[0] + WINDOW_S - now))
                    raise RateLimitError(
                        f"rate limit of {c.rpm} requests per minute for key {c.name!r} reached; "
                        f"retry in {wait} s",
                        retry_after=wait,
                    )
            c.recent.append(now)
            c.requests += 1
            self._save_locked(now)

    def record(self, principal: Principal, prompt_tokens: int, completion_tokens: int) -> None:
        """Charge the tokens a request actually used to its key's daily budget."""
        with self._lock:
            now = self._clock()
            self._roll_locked(now)
            c = self._counter_locked(principal)
            c.prompt_tokens += max(0, int(prompt_tokens))
            c.completion_tokens += max(0, int(completion_tokens))
            self._save_locked(now)

    def usage(self) -> dict[str, Any]:
        """Snapshot for ``GET /v1/usage`` and ``/metrics``: today's counters per key."""
        with self._lock:
            now = self._clock()
            self._roll_locked(now)
            keys = []
            for key_id, c in sorted(self._keys.items(), key=lambda kv: kv[1].name):
                last_minute = sum(1 for t in c.recent if t > now - WINDOW_S)
                keys.append(
                    {
                        "key_id": key_id,
                        "name": c.name,
                        "requests": c.requests,
                        "prompt_tokens": c.prompt_tokens,
                        "completion_tokens": c.completion_tokens,
                        "total_tokens": c.total,
                        "daily_tokens": c.daily_tokens,
                        "remaining_tokens": (
                            None if c.daily_tokens is None else max(0, c.daily_tokens - c.total)
                        ),
                        "rpm": c.rpm,
                        "requests_last_minute": last_minute,
                    }
                )
            reset = datetime.fromtimestamp(now, UTC) + timedelta(seconds=seconds_to_midnight(now))
            return {
                "day": self._day,
                "resets_at": reset.replace(microsecond=0).isoformat().replace("+00:00", "Z"),
                "keys": keys,
            }
