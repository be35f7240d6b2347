"""A conversation as retrieval sees it: the question, the earlier turns, and the query a
follow-up is retrieved with.

A follow-up ("What is its default value?") names nothing: retrieved alone it finds nothing
relevant. :func:`condense` makes the retrieval query of a turn deterministically: the earlier
user questions and the identifiers and numbers of the earlier answers (their prose would
dilute the query), then the new turn. Retrieval also searches with the new turn alone
(``rag/retrieval.py``), so a follow-up that changes the subject still finds it.

Measured on the follow-ups of the PostgreSQL and R development sets: the deterministic query
reaches the answer as often as a rewrite by a model (8/10 and 3/3 retrieval ceilings, against
6/10 and 3/3 for the bundled 135M model), without the model's 2.7 s. A model rewrite is
therefore not used.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from enclave.errors import UsageError
from models.generator import Message
from rag.citations import strip_citations
from rag.support import is_identifier

#: the earlier messages a follow-up's query draws on (two exchanges)
HISTORY_MESSAGES = 4
#: identifiers, codes and numbers in an earlier answer
_CODEY = re.compile(r"[A-Za-z0-9_.-]*[_.\-][A-Za-z0-9_.\-]*[A-Za-z0-9]|--?[A-Za-z][\w-]*|\d[\w.]*")
#: the quote marks and term separators of an extractive answer line
_QUOTE_MARKS = re.compile(r"[“”]")


@dataclass(frozen=True)
class Conversation:
    """The question (the last user message) and the earlier user/assistant turns."""

    question: str
    history: list[Message] = field(default_factory=list)

    @property
    def follow_up(self) -> bool:
        return bool(self.history)

    @property
    def query(self) -> str:
        """The retrieval query: the question, condensed with the history for a follow-up."""
        return condense(self.question, self.history)

    @classmethod
    def of(cls, question: str) -> Conversation:
        """A single question without history."""
        return cls(question.strip())


def split_conversation(messages: list[Message]) -> tuple[str, list[Message]]:
    """The question (the last message, from the user) and the earlier user/assistant turns.

    System messages from the caller are ignored: Enclave's own prompt governs. Earlier answers
    lose their citation markers, whose numbers referred to other sources.
    """
    if not messages:
        raise UsageError("messages must contain at least one user message")
    last = messages[-1]
    if last.get("role") != "user":
        raise UsageError("the last message must have role 'user' (the question)")
    question = last.get("content", "")
    if not isinstance(question, str) or not question.strip():
        raise UsageError("the question (the last user message) is empty")
    history: list[Message] = []
    for message in messages[:-1]:
        role = message.get("role")
        content = message.get("content", "")
        if role == "user":
            history.append({"role": "user", "content": content})
        elif role == "assistant":
            history.append({"role": "assistant", "content": strip_citations(content)})
    while history and history[0]["role"] != "user":
        history.pop(0)
    return question.strip(), history


def conversation_of(messages: list[Message]) -> Conversation:
    """:func:`split_conversation` as a :class:`Conversation`."""
    question, history = split_conversation(messages)
    return Conversation(question, history)


def history_terms(history: Sequence[Message]) -> str:
    """The salient text of earlier turns: every user question, and the identifiers, codes and
    numbers of every answer."""
    parts: list[str] = []
    for message in history:
        content = message.get("content", "")
        if message.get("role") == "user":
            parts.append(content)
            continue
        codes = [
            t
            for t in _CODEY.findall(_QUOTE_MARKS.sub(" ", content))
            if is_identifier(t) or t[:1].isdigit()
        ]
        parts.append(" ".join(dict.fromkeys(codes)))
    return " ".join(p for p in parts if p).strip()


def condense(question: str, history: Sequence[Message]) -> str:
    """The retrieval query of a turn: the turn itself or, for a follow-up, the salient text of
    the last :data:`HISTORY_MESSAGES` messages followed by the turn (no model call)."""
    if not history:
        return question
    return f"{history_terms(history[-HISTORY_MESSAGES:])} {question}".strip()
