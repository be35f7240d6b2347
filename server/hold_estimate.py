"""How long a generation will hold the model, learnt from the generations this server ran.

A generation holds the model for its prefill (the prompt's tokens) and its decode (the tokens
it writes). Every generation that ends normally (``stop`` or ``length``) leaves a
:class:`GenerationSample`; cancelled and failed generations were cut short and teach nothing,
and abstained answers never reach the model. The estimator keeps the last ``WINDOW`` samples
and predicts, for a request whose prompt has ``prompt_tokens`` tokens and whose answer may
have ``max_tokens``::

    hold = prefill_s_per_token * prompt_tokens + decode_s_per_token * completion_tokens

Each rate is the 90th percentile of the recent samples (conservative: a slow spell of the
machine shows at once, a fast one is trusted only once it is the rule). ``completion_tokens``
is ``max_tokens`` itself unless at least ``MIN_SAMPLES`` recent answers show the model stops
earlier: then the 90th percentile of their lengths, where an answer cut by its budget counts
as unbounded, so a model that usually writes to its limit is always estimated at the limit.
Before a request is packed its prompt size is the 90th percentile of recent prompts (the
packing bound, ``context_size - max_tokens``, before any sample).

Before the first sample the rates are seeds for a small model on a few CPU cores
(``SEED_PREFILL_S`` and ``SEED_DECODE_S``); the first finished generation replaces them.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

#: samples kept (the most recent generations)
WINDOW = 32
#: percentile every estimate takes of its samples
PERCENTILE = 0.9
#: answers needed before their lengths, rather than the budget, set the expected length
MIN_SAMPLES = 5
#: seconds per prompt token before any measurement (200 prompt tokens/s)
SEED_PREFILL_S = 0.005
#: seconds per generated token before any measurement (20 tokens/s)
SEED_DECODE_S = 0.05


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


def percentile(values: Iterable[float], q: float = PERCENTILE) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of a non-empty collection."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


class HoldEstimator:
    """Expected generation times from recent samples (see the module docstring). Thread-safe:
    samples arrive from the event loop, estimates are read from it and from metric scrapes."""

    def __init__(self, window: int = WINDOW) -> None:
        self._lock = threading.Lock()
        self._prefill: deque[float] = deque(maxlen=window)
        self._decode: deque[float] = deque(maxlen=window)
        #: answer lengths; ``math.inf`` for an answer its budget cut
        self._lengths: deque[float] = deque(maxlen=window)
        self._prompts: deque[int] = deque(maxlen=window)
        self.samples = 0

    def observe(self, sample: GenerationSample) -> None:
        """Learn from a finished generation (ignored unless it ended by ``stop`` or
        ``length``)."""
        if sample.finish_reason not in ("stop", "length"):
            return
        with self._lock:
            self.samples += 1
            if sample.prompt_tokens > 0:
                self._prompts.append(sample.prompt_tokens)
                self._prefill.append(max(0.0, sample.prefill_s) / sample.prompt_tokens)
            if sample.completion_tokens > 1:
                self._decode.append(max(0.0, sample.decode_s) / (sample.completion_tokens - 1))
            cut = sample.finish_reason == "length" or sample.completion_tokens >= sample.max_tokens
            self._lengths.append(math.inf if cut else float(sample.completion_tokens))

    @property
    def prefill_s_per_token(self) -> float:
        with self._lock:
            return percentile(self._prefill) if self._prefill else SEED_PREFILL_S

    @property
    def decode_s_per_token(self) -> float:
        with self._lock:
            return percentile(self._decode) if self._decode else SEED_DECODE_S

    def completion_tokens(self, max_tokens: int) -> int:
        """The answer length to expect under a budget of ``max_tokens``."""
        with self._lock:
            if len(self._lengths) < MIN_SAMPLES:
                return max_tokens
            typical = percentile(self._lengths)
        return max_tokens if math.isinf(typical) else min(max_tokens, math.ceil(typical))

    def prompt_tokens(self, max_tokens: int, context_size: int) -> int:
        """The prompt size to expect before packing: recent prompts, else the packing bound."""
        with self._lock:
            if self._prompts:
                return int(percentile(self._prompts))
        return max(1, context_size - max_tokens)

    def hold_s(self, prompt_tokens: int, max_tokens: int) -> float:
        """Expected seconds a generation holds the model."""
        return (
            self.prefill_s_per_token * prompt_tokens
            + self.decode_s_per_token * self.completion_tokens(max_tokens)
        )
