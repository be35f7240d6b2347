"""The generate mode's prompt within the model's context, and the sources an answer lists.

The prompt (``rag/prompt.py``: the system prompt, the facts, the question) must fit in
``generator.context_size - max_tokens`` tokens, counted with the model's own tokenizer and
chat template. The question always goes in (else :class:`PromptTooLongError`); the facts
follow in rank order and the lowest-ranked are dropped first (:func:`fit_facts`).

A source flagged ``prompt_injection`` is *withheld*: it is listed, but never quoted nor given
to the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from enclave.errors import PromptTooLongError
from models.generator import Message
from rag.prompt import SYSTEM_PROMPT, facts_user_turn
from store.records import SearchHit

if TYPE_CHECKING:
    from models.generator import Generator

F = TypeVar("F")


@dataclass
class PackedSource:
    """A retrieved passage as an answer lists it, numbered as its ``[n]`` marker."""

    index: int
    hit: SearchHit
    text: str
    trimmed: bool = False
    similarity: float | None = None
    #: instruction-like text: never quoted nor given to the model
    withheld: bool = False


def facts_messages(question: str, facts: Sequence[tuple[int, str]]) -> list[Message]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": facts_user_turn(question, facts)},
    ]


def check_fits(generator: Generator, question: str, max_tokens: int) -> int:
    """Tokens of the system prompt and the question alone; PromptTooLongError when even they
    leave no room for ``max_tokens``."""
    budget = generator.context_size - max_tokens
    base = generator.count_chat_tokens(facts_messages(question, []))
    if base > budget:
        raise PromptTooLongError(
            f"the question and the system prompt need {base} tokens, but the model's "
            f"context of {generator.context_size} tokens leaves {budget} after reserving "
            f"{max_tokens} for the answer; shorten the question or lower max_tokens"
        )
    return base


def fit_facts(
    generator: Generator,
    question: str,
    facts: Sequence[F],
    numbered: Sequence[tuple[int, str]],
    max_tokens: int,
) -> tuple[list[Message], list[F], int]:
    """The prompt, the facts it holds (``facts[i]`` is written as ``numbered[i]``) and its
    exact token count: as many facts as fit in ``context_size - max_tokens``, best first."""
    budget = generator.context_size - max_tokens
    n = len(facts)
    while True:
        messages = facts_messages(question, numbered[:n])
        tokens = generator.count_chat_tokens(messages)
        if tokens <= budget or n == 0:
            break
        n -= 1
    if tokens > budget:
        raise PromptTooLongError(f"the prompt needs {tokens} tokens; {budget} are available")
    return messages, list(facts[:n]), tokens
