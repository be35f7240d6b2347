"""The token budget of an answer: the one rule for ``max_tokens``, wherever it is decided.

An answer may use ``min(requested, generator.max_tokens, security.max_completion_tokens)``
tokens. When the caller asks for nothing, it gets ``server.answer_reserve_tokens``, at most a
quarter of the model's context (but never under 16), under the same two caps. Asking for less
than one token is a usage error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from enclave.errors import UsageError

if TYPE_CHECKING:
    from enclave.settings import Settings

#: the smallest default answer room, whatever the context size
MIN_DEFAULT_TOKENS = 16


def answer_tokens(requested: int | None, settings: Settings, context_size: int | None) -> int:
    """The ``max_tokens`` an answer is generated with (see the module docstring)."""
    cap = min(settings.generator.max_tokens, settings.security.max_completion_tokens)
    if requested is None:
        default = settings.server.answer_reserve_tokens
        if context_size is not None:
            default = min(default, max(MIN_DEFAULT_TOKENS, context_size // 4))
        return min(default, cap)
    if requested < 1:
        raise UsageError("max_tokens must be at least 1")
    return min(requested, cap)
