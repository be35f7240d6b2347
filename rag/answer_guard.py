"""The answer guard: what a model wrote is checked before it reaches the user.

Every source's text goes through :func:`enclave.security.injection.neutralise` when the prompt
is built (it cannot close its block or open a chat turn), and a source flagged as holding
instruction-like text is withheld from the model (``rag/packing.py``). Whatever the model
writes is then checked here: an answer that repeats the system prompt, or that contains a
*suspect token* (a distinctive word, see :func:`distinctive_tokens`, found only in a source
with instruction-like text and not in the question, the history or a clean source) is
replaced by :data:`rag.prompt.REFUSAL_TEXT`. The defence does not rely on the model obeying
its rules.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from enclave.security.injection import FLAG_INJECTION, injection_signals, leaks_system_prompt
from models.generator import Message
from rag.packing import PackedSource
from rag.prompt import PROMPTS
from store.records import SearchHit

_DISTINCT = re.compile(r"[\w][\w-]{3,}[\w]")

#: why an answer was replaced by the refusal
SYSTEM_PROMPT_LEAK = "system_prompt_leak"
INJECTED_TEXT = "injected_text"


def distinctive_tokens(text: str) -> set[str]:
    """Words a model would only write by copying them: with a digit, a dash or an
    underscore, or in capitals (5+ letters). Lower-cased."""
    out: set[str] = set()
    for tok in _DISTINCT.findall(text):
        if (
            any(c.isdigit() for c in tok)
            or "-" in tok
            or "_" in tok
            or (tok.isupper() and len(tok) >= 5)
        ):
            out.add(tok.lower())
    return out


def suspect_tokens(
    question: str,
    history: Iterable[Message],
    retrieved: Iterable[SearchHit],
    packed: Iterable[PackedSource],
) -> set[str]:
    """Distinctive tokens only sources with instruction-like text hold: those the question,
    the history or a clean source also gave are fair to repeat."""
    suspect: set[str] = set()
    for hit in retrieved:
        if FLAG_INJECTION in hit.flags or injection_signals(hit.text):
            suspect |= distinctive_tokens(hit.text)
    if not suspect:
        return suspect
    clean = [p.text for p in packed if not p.withheld and not injection_signals(p.text)]
    suspect -= distinctive_tokens("\n".join([question, *clean]))
    for message in history:
        suspect -= distinctive_tokens(message["content"])
    return suspect


def guard_answer(text: str, suspect: set[str]) -> str | None:
    """Why ``text`` must not reach the user, or None: it quotes the system prompt
    (:data:`SYSTEM_PROMPT_LEAK`), or it repeats a suspect token (:data:`INJECTED_TEXT`)."""
    if leaks_prompt(text):
        return SYSTEM_PROMPT_LEAK
    if suspect:
        said = {t.lower() for t in re.findall(r"[\w-]+", text)}
        said |= distinctive_tokens(text)
        if said & suspect:
            return INJECTED_TEXT
    return None


def leaks_prompt(text: str) -> bool:
    """Whether a (partial) answer quotes one of Enclave's system prompts (streaming stops
    there)."""
    return any(leaks_system_prompt(text, prompt) for prompt in PROMPTS)
