"""Packing: the prompt (system prompt, history, sources, question) within the model's context.

The prompt must fit in ``generator.context_size - max_tokens`` tokens, counted with the model's
own tokenizer and chat template. The system prompt and the question always go in (else
:class:`PromptTooLongError`); earlier turns get at most half of the room left, newest first;
sources fill the rest in rank order. The lowest-ranked sources are dropped first; a source is
trimmed only when not even the best one fits whole.

A source flagged ``prompt_injection`` is *withheld*: the model sees its header and
:data:`rag.prompt.WITHHELD_TEXT`, never its text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from enclave.errors import PromptTooLongError
from enclave.security.injection import FLAG_INJECTION
from models.generator import Message
from rag.prompt import SYSTEM_PROMPT, WITHHELD_TEXT, format_source, format_user_turn
from store.records import SearchHit

if TYPE_CHECKING:
    from models.generator import Generator
    from rag.retrieval import Retrieval

#: a trimmed source keeps at least this many tokens, or it is left out
MIN_TRIMMED_TOKENS = 32


@dataclass
class PackedSource:
    """A source as the model was given it, numbered as its ``[n]`` marker."""

    index: int
    hit: SearchHit
    text: str
    trimmed: bool = False
    similarity: float | None = None
    #: the text was not given to the model (instruction-like text)
    withheld: bool = False


def check_fits(generator: Generator, question: str, max_tokens: int) -> int:
    """Tokens of the system prompt and the question alone; PromptTooLongError when even they
    leave no room for ``max_tokens``."""
    budget = generator.context_size - max_tokens
    prompt: list[Message] = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": format_user_turn(question, [])},
    ]
    base = generator.count_chat_tokens(prompt)
    if base > budget:
        raise PromptTooLongError(
            f"the question and the system prompt need {base} tokens, but the model's "
            f"context of {generator.context_size} tokens leaves {budget} after reserving "
            f"{max_tokens} for the answer; shorten the question or lower max_tokens"
        )
    return base


def pack(
    generator: Generator,
    question: str,
    history: list[Message],
    retrieval: Retrieval,
    max_tokens: int,
) -> tuple[list[PackedSource], list[Message], int]:
    """The sources given to the model, the prompt's messages and its exact token count."""
    budget = generator.context_size - max_tokens
    system: Message = {"role": "system", "content": SYSTEM_PROMPT}

    def build(hist: list[Message], blocks: list[str]) -> list[Message]:
        user: Message = {"role": "user", "content": format_user_turn(question, blocks)}
        return [system, *hist, user]

    base = check_fits(generator, question, max_tokens)
    # earlier turns: newest first, at most half of the room left
    hist = list(history)
    used = base
    if hist:
        cap = (budget - base) // 2
        used = generator.count_chat_tokens(build(hist, []))
        while hist and used - base > cap:
            hist.pop(0)
            while hist and hist[0]["role"] != "user":
                hist.pop(0)
            used = generator.count_chat_tokens(build(hist, []))
    # sources in rank order; each costs its block plus the blank line between blocks
    room = budget - used
    packed: list[PackedSource] = []
    for rank, hit in enumerate(retrieval.hits, start=1):
        similarity = retrieval.similarity.get(hit.chunk_id)
        if FLAG_INJECTION in hit.flags:  # never shown to the model
            cost = generator.count_tokens(format_source(rank, hit, WITHHELD_TEXT)) + 2
            if cost <= room:
                packed.append(PackedSource(rank, hit, WITHHELD_TEXT, False, similarity, True))
                room -= cost
            continue
        cost = generator.count_tokens(format_source(rank, hit)) + 2
        if cost <= room:
            packed.append(PackedSource(rank, hit, hit.text, False, similarity))
            room -= cost
            continue
        if not packed:
            overhead = generator.count_tokens(format_source(rank, hit, "")) + 2
            trimmed = cut_to_tokens(generator, hit.text, room - overhead)
            if trimmed is not None:
                packed.append(PackedSource(rank, hit, trimmed, True, similarity))
        break
    # the exact count, with the chat template; drop (or trim) from the end until it fits
    while True:
        blocks = [format_source(p.index, p.hit, p.text) for p in packed]
        prompt = build(hist, blocks)
        total = generator.count_chat_tokens(prompt)
        if total <= budget or not packed:
            break
        last = packed[-1]
        if len(packed) == 1 and not last.withheld:
            over = total - budget
            keep = generator.count_tokens(last.text) - over - 8
            shorter = cut_to_tokens(generator, last.text, keep)
            if shorter is None or shorter == last.text:
                packed.pop()
            else:
                last.text, last.trimmed = shorter, True
        else:
            packed.pop()
    if total > budget:  # pragma: no cover - base fitted, so no sources always fits
        raise PromptTooLongError(f"the prompt needs {total} tokens; {budget} are available")
    return packed, prompt, total


def cut_to_tokens(generator: Generator, text: str, tokens: int) -> str | None:
    """The longest word-boundary prefix of ``text`` within ``tokens`` model tokens (a few
    proportional guesses, then checked), or None when under :data:`MIN_TRIMMED_TOKENS`."""
    if tokens < MIN_TRIMMED_TOKENS:
        return None
    total = generator.count_tokens(text)
    if total <= tokens:
        return text
    chars = int(len(text) * tokens / max(total, 1))
    for _ in range(8):
        cut = text.rfind(" ", 0, chars)
        candidate = (text[: cut if cut > 0 else chars]).rstrip() + " …"
        if generator.count_tokens(candidate) <= tokens:
            return candidate
        chars = int(chars * 0.85)
        if chars <= 0:
            break
    return None
