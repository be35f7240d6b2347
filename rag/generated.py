"""The generated answer: the model writes from the best units as numbered facts, and only the
sentences the support rule verifies reach the user.

* :func:`facts_prompt`: the system prompt :data:`rag.prompt.SYSTEM_PROMPT` and one user
  turn, ``Facts:`` (each fact ``[n] term: unit``, numbered as the chunk it comes from) then
  the question, rendered by the model's own chat template; facts are dropped from the last
  until the prompt fits the context with the answer's room (``rag/packing.py``).
* :func:`clean_text`: markup debris removed (tags such as ``</pre>``, chat-template tokens
  such as ``<|im_end|>``, code fences); :data:`STOP_STRINGS` end the generation before most.
* :func:`verify_generated`: each sentence is kept only when the support rule
  (``rag/support.py``) finds it supported by the fact or chunk it cites or, when it cites
  none or the wrong one, by another given fact (its marker is then set to that fact's);
  every other sentence is dropped. The service falls back to the extractive answer when
  nothing is left.
* :class:`SentenceGate`: the same check while streaming: a sentence is sent once it is
  complete and verified, so no unverified word ever leaves the server.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from models.generator import Message, StreamEvent
from rag.packing import fit_facts
from rag.support import Claim, answer_claims, check_claim, supports
from rag.units import Unit

if TYPE_CHECKING:
    from models.generator import Generator
    from rag.extract import Scored

#: stop strings of a generated answer besides the model's own end-of-turn strings: a blank
#: line (the answer is one short paragraph), the start of a closing tag or of a chat-template
#: token (markup debris), and the prompt's own headings
STOP_STRINGS = ["\n\n", "</", "<|", "Question:", "Facts:"]

_TAG = re.compile(r"</?[a-zA-Z][\w-]*(?:\s[^<>]*)?/?>|<\|[^|>]*\|>")
_FENCE = re.compile(r"```[\w+-]*")
_BOUNDARY = re.compile(r"(?<=[.!?])(?:[\"')\]]*)(?:\s*\[[\d,; ]{1,40}\])*\s+|\n+")


def clean_text(text: str) -> str:
    """Generated text without markup debris: tags (``</pre>``, ``<br/>``), chat-template tokens
    (``<|im_end|>``), code fences; trailing spaces of lines removed."""
    text = _FENCE.sub("", _TAG.sub("", text))
    return re.sub(r"[ \t]+\n", "\n", text).strip()


def facts_prompt(
    generator: Generator, question: str, facts: Sequence[Scored], max_tokens: int
) -> tuple[list[Message], list[Scored], int]:
    """The prompt, the facts it holds and its token count (``rag/packing.py``): each fact is
    its unit with its term, numbered as the chunk it comes from."""
    numbered = [(c.source, c.unit.full()) for c in facts]
    return fit_facts(generator, question, facts, numbered, max_tokens)


@dataclass
class FactSources:
    """What a generated sentence may be checked against, by source number: the units given to
    the model, and the whole chunk (with the term in force where it starts)."""

    facts: dict[int, list[str]] = field(default_factory=dict)
    passages: dict[int, str] = field(default_factory=dict)
    leads: dict[int, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls, facts: Sequence[Scored], passages: dict[int, str], leads: dict[int, str]
    ) -> FactSources:
        out = cls(passages=dict(passages), leads=dict(leads))
        for c in facts:
            out.facts.setdefault(c.source, []).extend(_unit_texts(c.unit))
        return out

    def supports(self, claim: Claim, source: int) -> bool:
        if (
            source in self.facts
            and not claim.quoted
            and supports(claim.text, self.facts[source]).supported
        ):
            return True
        passage = self.passages.get(source)
        if passage is None:
            return False
        return check_claim(claim, passage, lead_context=self.leads.get(source, "")).supported


def _unit_texts(unit: Unit) -> list[str]:
    return [unit.text, unit.full()] if unit.context else [unit.text]


@dataclass
class Verified:
    """The verified sentences of a generated answer."""

    text: str
    #: source numbers cited, in order of first appearance
    citations: list[int] = field(default_factory=list)
    #: sentences the model left without (or with a wrong) marker, matched to a given fact
    attributed: list[dict[str, object]] = field(default_factory=list)
    #: sentences dropped as unsupported
    dropped: list[str] = field(default_factory=list)


def _render(claim: Claim, source: int) -> str:
    text = claim.text.rstrip()
    end = text[-1] if text and text[-1] in ".!?" else ""
    body = text[: len(text) - len(end)].rstrip() if end else text
    if claim.quoted:
        body = f"{claim.context}: “{body}”" if claim.context else f"“{body}”"
    return f"{body} [{source}]{end}"


def verify_generated(text: str, sources: FactSources, *, attribute: bool = True) -> Verified:
    """The sentences of ``text`` (debris removed) that the support rule verifies (module
    docstring), each ending with the marker of the source that supports it."""
    out = Verified("")
    kept: list[str] = []
    for claim in answer_claims(clean_text(text)):
        if len(claim.text) < 3:
            continue
        found = next((n for n in claim.markers if sources.supports(claim, n)), None)
        if found is None and attribute:
            for n in sources.facts:
                if n not in claim.markers and sources.supports(claim, n):
                    found = n
                    out.attributed.append({"sentence": claim.text, "index": n})
                    break
        if found is None:
            out.dropped.append(claim.text)
            continue
        kept.append(_render(claim, found))
        if found not in out.citations:
            out.citations.append(found)
    out.text = " ".join(kept)
    return out


def complete_part(text: str) -> str:
    """The part of a streaming answer whose sentences are complete: up to the last sentence
    end that another sentence has followed (markers after a period belong to it)."""
    end = 0
    for m in _BOUNDARY.finditer(text):
        rest = text[m.end() :]
        if rest and not rest.startswith("["):
            end = m.end()
    return text[:end]


class SentenceGate:
    """Filters a model's stream: content is passed on only as verified sentences
    (:func:`verify_generated` over the complete sentences so far, sending what it adds); the
    first token as an empty event; the last event (finish reason and usage) unchanged.
    ``raw`` keeps what the model wrote."""

    def __init__(self, sources: FactSources, *, attribute: bool = True) -> None:
        self.sources = sources
        self.attribute = attribute
        self.raw = ""
        self.sent = ""
        self._checked = ""

    def _advance(self, upto: str) -> str:
        """The verified text of the sentences completed since the last call (each sentence
        is checked once: the check of one sentence does not depend on the others)."""
        if upto == self._checked or not upto.startswith(self._checked):
            return ""
        new = upto[len(self._checked) :]
        self._checked = upto
        text = verify_generated(new, self.sources, attribute=self.attribute).text
        if not text:
            return ""
        delta = " " + text if self.sent else text
        self.sent += delta
        return delta

    def filter(self, events: Iterator[StreamEvent]) -> Iterator[StreamEvent]:
        """The verified stream. The model's first token is passed on as an empty event, so a
        consumer knows the generation started (the server opens the response then, and a
        client that leaves before the first verified sentence still cancels the model)."""
        started = False
        for event in events:
            if event.delta:
                self.raw += event.delta
                if not started:
                    started = True
                    yield StreamEvent(delta="")
            if event.finish_reason is not None:
                tail = self._advance(self.raw)
                if tail:
                    yield StreamEvent(delta=tail)
                yield StreamEvent(delta="", finish_reason=event.finish_reason, usage=event.usage)
                continue
            delta = self._advance(complete_part(self.raw))
            if delta:
                yield StreamEvent(delta=delta)
