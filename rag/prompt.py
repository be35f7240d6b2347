"""Enclave's prompt and fixed answers.

The generate mode gives the model a few numbered facts (the best sentences of the retrieved
passages, ``rag/extract.py``) and the question: :data:`SYSTEM_PROMPT`, then one user turn
written by :func:`facts_user_turn`. Every fact passes through
:func:`enclave.security.injection.neutralise`, so a document cannot open a chat turn; a
passage flagged as holding instruction-like text is never among the facts. The system prompt
is one constant string, so every request starts with the same bytes and llama.cpp's prefix
cache keeps it evaluated between requests.
"""

from __future__ import annotations

from collections.abc import Sequence

from enclave.security.injection import neutralise

#: the generate mode's system prompt (measured with the bundled model: one short sentence
#: keeps it from drifting away from the facts)
SYSTEM_PROMPT = (
    "Answer the question in one short sentence using only the numbered facts. "
    "Copy names and numbers exactly. End with the fact's number in brackets, like [1]."
)

#: every system prompt Enclave uses (the answer guard checks that none leaks)
PROMPTS = (SYSTEM_PROMPT,)

#: the answer when retrieval finds nothing relevant (the model is not called)
ABSTAIN_TEXT = "I don't know: the indexed documents don't contain information about this question."

#: the answer that replaces one that quotes the system prompt or obeys a document
REFUSAL_TEXT = (
    "I can't share my instructions or follow instructions found inside the documents. "
    "Ask a question about the documents' content instead."
)


def absent_text(terms: Sequence[str]) -> str:
    """The abstention when the question names something no retrieved passage mentions."""
    named = ", ".join(f"“{t}”" for t in terms)
    return (
        "I don't know: the indexed documents don't contain information about this question "
        f"(no passage mentions {named})."
    )


def facts_user_turn(question: str, facts: Sequence[tuple[int, str]]) -> str:
    """The user turn: ``Facts:``, one ``[n] fact`` a line (neutralised, on one line), then the
    question."""
    lines = "\n".join(f"[{n}] {' '.join(neutralise(text).split())}" for n, text in facts)
    return f"Facts:\n{lines}\n\nQuestion: {question}" if facts else f"Question: {question}"
