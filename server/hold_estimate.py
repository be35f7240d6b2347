"""How long a generation will hold the model, learnt from the generations this server ran.

A generation holds the model for its prefill (the prompt's tokens) and its decode (the tokens
it writes). Every generation that ends normally (``stop`` or ``length``) leaves a
:class:`GenerationSample`; cancelled and failed generations were cut short and teach nothing,
and abstained answers never reach the model. The estimator keeps the last ``WINDOW`` samples.

For a request whose prompt has ``prompt_tokens`` tokens and whose answer may have
``max_tokens``, each sample says what the request would have cost at that generation's speed
and length::

    prefill_s_per_token * prompt_tokens + decode_s_per_token * length

where ``length`` is the sample's answer length under the request's budget, or the budget
itself when the sample's answer was cut by its own budget (it would have gone on) or while
fewer than ``MIN_SAMPLES`` answers are known. The estimate is the mean of these costs and
their variance (:class:`Hold`): waits add up over several requests, so the queue adds means
and variances and keeps a margin of ``Z`` standard deviations on the total (a sum of
percentiles would refuse most of what fits). The spread is never taken below ``MIN_SPREAD``
of the mean (``SEED_SPREAD`` while the samples are few).

Before a request is packed its prompt size is the mean of recent prompts (the packing bound,
``context_size - max_tokens``, before any sample). Before the first sample the rates are
seeds for a small model on a few CPU cores (``SEED_PREFILL_S`` and ``SEED_DECODE_S``); the
first finished generation replaces them.
"""

from __future__ import annotations

import math
import statistics
import threading
from collections import deque
from dataclasses import dataclass

#: samples kept (the most recent generations)
WINDOW = 32
#: answers needed before their lengths, rather than the budget, set the expected length
MIN_SAMPLES = 5
#: seconds per prompt token before any measurement (200 prompt tokens/s)
SEED_PREFILL_S = 0.005
#: seconds per generated token before any measurement (20 tokens/s)
SEED_DECODE_S = 0.05
#: the least standard deviation of a hold, as a share of its mean: with few samples; after
SEED_SPREAD = 0.5
MIN_SPREAD = 0.1
#: standard deviations of margin on a total of expected holds (one-sided 90%)
Z = 1.28


@dataclass(frozen=True)
class GenerationSample:
    """What one finished generation cost."""

    prompt_tokens: int
    completion_tokens: int
    #: the budget it was given
    max_tokens: int
    #: from the start of the generation to its first event
    prefill_s: float
    #: from its first event to its end
    decode_s: float
    finish_reason: str


@dataclass(frozen=True)
class Hold:
    """An expected hold: its mean and variance, in seconds and seconds squared."""

    mean: float
    var: float

    def __add__(self, other: Hold) -> Hold:
        return Hold(self.mean + other.mean, self.var + other.var)

    def remaining(self, elapsed: float) -> Hold:
        """What is left of it after ``elapsed`` seconds (the spread stays)."""
        return Hold(max(0.0, self.mean - elapsed), self.var)

    @property
    def bound(self) -> float:
        """The mean plus the margin: what to plan for."""
        return self.mean + Z * math.sqrt(self.var)


@dataclass(frozen=True)
class _Seen:
    prefill_s_per_token: float | None
    decode_s_per_token: float | None
    prompt_tokens: int
    #: the answer's length; None when its budget cut it
    length: int | None


class HoldEstimator:
    """Expected generation times from recent samples (see the module docstring). Thread-safe:
    samples arrive from the event loop, estimates are read from it and from metric scrapes."""

    def __init__(self, window: int = WINDOW) -> None:
        self._lock = threading.Lock()
        self._seen: deque[_Seen] = deque(maxlen=window)
        self.samples = 0

    def observe(self, sample: GenerationSample) -> None:
        """Learn from a finished generation (ignored unless it ended by ``stop`` or
        ``length``)."""
        if sample.finish_reason not in ("stop", "length"):
            return
        prompt, completion = sample.prompt_tokens, sample.completion_tokens
        cut = sample.finish_reason == "length" or completion >= sample.max_tokens
        seen = _Seen(
            prefill_s_per_token=max(0.0, sample.prefill_s) / prompt if prompt > 0 else None,
            decode_s_per_token=(
                max(0.0, sample.decode_s) / (completion - 1) if completion > 1 else None
            ),
            prompt_tokens=prompt,
            length=None if cut else completion,
        )
        with self._lock:
            self._seen.append(seen)
            self.samples += 1

    @property
    def prefill_s_per_token(self) -> float:
        """Mean seconds per prompt token of the recent generations."""
        with self._lock:
            rates = [s.prefill_s_per_token for s in self._seen if s.prefill_s_per_token is not None]
        return statistics.fmean(rates) if rates else SEED_PREFILL_S

    @property
    def decode_s_per_token(self) -> float:
        """Mean seconds per generated token of the recent generations."""
        with self._lock:
            rates = [s.decode_s_per_token for s in self._seen if s.decode_s_per_token is not None]
        return statistics.fmean(rates) if rates else SEED_DECODE_S

    def prompt_tokens(self, max_tokens: int, context_size: int) -> int:
        """The prompt size to expect before packing: recent prompts, else the packing bound."""
        with self._lock:
            prompts = [s.prompt_tokens for s in self._seen if s.prompt_tokens > 0]
        if prompts:
            return math.ceil(statistics.fmean(prompts))
        return max(1, context_size - max_tokens)

    def hold(self, prompt_tokens: int, max_tokens: int) -> Hold:
        """The expected hold of a generation with this prompt and budget."""
        prefill, decode = self.prefill_s_per_token, self.decode_s_per_token
        with self._lock:
            seen = list(self._seen)
        if not seen:
            mean = prefill * prompt_tokens + decode * max_tokens
            return Hold(mean, (SEED_SPREAD * mean) ** 2)
        known = len(seen) >= MIN_SAMPLES
        costs = []
        for s in seen:
            length = max_tokens if s.length is None or not known else min(s.length, max_tokens)
            costs.append(
                (s.prefill_s_per_token if s.prefill_s_per_token is not None else prefill)
                * prompt_tokens
                + (s.decode_s_per_token if s.decode_s_per_token is not None else decode) * length
            )
        mean = statistics.fmean(costs)
        spread = MIN_SPREAD if known else SEED_SPREAD
        var = max(statistics.variance(costs, mean) if len(costs) > 1 else 0.0, (spread * mean) ** 2)
        return Hold(mean, var)
