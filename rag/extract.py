"""The extractive answer: the retrieved chunks' best units, quoted and cited by construction.

Every unit (sentence, table row, code line: ``rag/units.py``) of the top-k chunks is scored
against the question (:func:`score_units`), the best :data:`QUOTES` distinct ones are picked
(:func:`pick`) and written one per line as ``term: “quote” [n]`` (:func:`build_extract`):
the definition term or table header the unit belongs to, the unit's own words, the number of
the chunk it comes from. Nothing is paraphrased, so every quote is supported by the source it
cites; a chunk flagged as holding instruction-like text is never quoted.

Measured on the PostgreSQL development set (45 factual questions, 10 follow-ups), with the
bundled embedder: a key fact in 36/45 answers (the top-10 chunks hold one for 43/45) against
9/45 for the 135M model writing the answer from whole chunks. Ablations: 1 quote 0.36, 2 0.62,
3 0.80, 4 0.80; without the answer-type cue 0.58, without the lexical term 0.69, without the
unit cosine 0.60. The weights were chosen on that set alone; a held-out set over other
manuals (R) scored 16/18 and 3/3 follow-ups with them (the answer-type cues of
``rag/question.py`` took it from 14/18).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from enclave.security.injection import FLAG_INJECTION
from models.generator import Message
from rag.question import (
    answer_type,
    contains_term,
    content_stems,
    distinctive_terms,
    type_match,
)
from rag.support import squash
from rag.units import ANSWER_KINDS, Unit, split_units
from store.records import SearchHit

Embed = Callable[[Sequence[str]], npt.NDArray[np.float32]]

#: units an extractive answer quotes
QUOTES = 3
#: a word, for the one-word rule of :func:`pick`
_WORD = re.compile(r"\w+")
#: units shorter than this are no answer ("See below.")
MIN_UNIT_CHARS = 8


@dataclass(frozen=True)
class Weights:
    """The unit score's weights (:func:`score_candidates`); the defaults are the measured ones."""

    cos: float = 0.5
    lex: float = 0.5
    type: float = 0.6
    rank: float = 0.05
    #: a word found only in a unit's definition term / table header counts this much
    context: float = 0.6
    #: a word of an earlier user turn counts this much in a follow-up's lexical score
    history: float = 0.5
    #: share of the previous sentence's relevance a continuing sentence inherits
    inherit: float = 0.7
    #: bonus by share of the question's distinctive terms the unit holds
    distinct: float = 0.1
    #: penalty for run-on units longer than ``long_words`` words (full at twice that)
    long: float = 0.2
    long_words: int = 45
    #: only the best units of an embedding-free first pass are embedded
    embed_top: int = 32
    #: what an unembedded unit's cosine (its chunk's) is lowered by
    unembedded: float = 0.1


DEFAULT_WEIGHTS = Weights()


@dataclass
class Scored:
    """One answer unit of a retrieved chunk, with its score."""

    unit: Unit
    #: the chunk's rank among the hits, 1-based: the unit's citation number
    source: int
    score: float = 0.0
    features: dict[str, float] = field(default_factory=dict)
    #: the sentence before this one in the same paragraph ("It has five arguments." is shown
    #: after the sentence it continues when its relevance came from that one)
    prev: Unit | None = None


@dataclass
class Quote:
    """One line of an extractive answer."""

    source: int
    context: str
    text: str

    def line(self, show_context: bool = True) -> str:
        head = f"{self.context}: " if self.context and show_context else ""
        return f"{head}“{self.text}” [{self.source}]"

    def to_dict(self) -> dict[str, object]:
        return {"index": self.source, "context": self.context, "text": self.text}


@dataclass
class Extract:
    """An extractive answer: its quotes, its text (one quote a line), the sources it cites."""

    quotes: list[Quote]
    text: str
    citations: list[int]


def unit_candidates(hits: Sequence[SearchHit], leads: dict[str, str] | None = None) -> list[Scored]:
    """Every answer unit (sentence, table row, code line) of the hits, in order; titles, bare
    terms, contents lines, a chunk's cut-off first words and units of chunks flagged as
    holding instruction-like text are left out."""
    out: list[Scored] = []
    for rank, hit in enumerate(hits, start=1):
        if FLAG_INJECTION in hit.flags:
            continue
        prev: Unit | None = None
        for unit in split_units(hit.text, lead_context=(leads or {}).get(hit.chunk_id, "")):
            if unit.kind not in ANSWER_KINDS or len(unit.text) < MIN_UNIT_CHARS:
                prev = None
                continue
            same = prev is not None and prev.block == unit.block and unit.kind == "sentence"
            out.append(Scored(unit, rank, prev=prev if same else None))
            prev = unit
    return out


def score_candidates(
    question: str,
    history: Sequence[Message],
    cands: list[Scored],
    sims: npt.NDArray[np.float32],
    w: Weights | None = None,
) -> list[Scored]:
    """Score each unit and sort best first::

        rel   = max(w.cos * cos + w.lex * lex,  w.inherit * rel_of_previous_sentence)
        score = rel + w.type * type + w.rank / rank + w.distinct * dist - w.long * long

    ``cos``: cosine of the query and the unit with its context line (``sims``); ``lex``:
    idf-weighted share of the question's content words found in the unit (a word found only
    in its term / header counts ``w.context``, an earlier user turn's words ``w.history``;
    identifiers also match by their parts), idf over the candidate units; ``type``:
    :func:`rag.question.type_match`; ``rank``: the unit's chunk rank; ``dist``: share of the
    question's distinctive terms in the unit; ``long``: 0 up to ``w.long_words`` words,
    rising to 1 at twice that. The previous-sentence term lets "It has five arguments."
    inherit the relevance of the sentence it continues."""
    w = w or DEFAULT_WEIGHTS
    if not cands:
        return []
    docs = [set(content_stems(c.unit.text)) | set(content_stems(c.unit.context)) for c in cands]
    df = Counter(word for d in docs for word in d)
    n = len(docs)

    def idf(word: str) -> float:
        return math.log(1 + (n + 1) / (df.get(word, 0) + 0.5))

    weights: dict[str, float] = {word: 1.0 for word in content_stems(question)}
    for message in history:
        if message.get("role") == "user":
            for word in content_stems(message.get("content", "")):
                weights.setdefault(word, w.history)
    total = sum(idf(word) * x for word, x in weights.items()) or 1.0
    kind = answer_type(question)
    distinct = [t.lower() for t in distinctive_terms(question, rare_words=False)]
    lexes: list[float] = []
    for c in cands:
        body = set(content_stems(c.unit.text))
        ctx = set(content_stems(c.unit.context))
        lex = 0.0
        for word, x in weights.items():
            if word in body:
                lex += idf(word) * x
            elif word in ctx:
                lex += idf(word) * x * w.context
        lexes.append(lex / total)
    for i, c in enumerate(cands):
        lex, cos = lexes[i], float(sims[i])
        inherited = 0.0
        if w.inherit > 0 and c.prev is not None and i > 0 and cands[i - 1].unit is c.prev:
            inherited = w.inherit * (w.cos * float(sims[i - 1]) + w.lex * lexes[i - 1])
        own = w.cos * cos + w.lex * lex
        ty = type_match(kind, c.unit, question)
        rk = 1.0 / c.source
        dist = (
            sum(1 for t in distinct if contains_term(c.unit.text, t)) / len(distinct)
            if distinct
            else 0.0
        )
        words = len(c.unit.text.split())
        long = min(1.0, max(0.0, (words - w.long_words) / w.long_words))
        c.features = {
            "cos": cos,
            "lex": lex,
            "type": ty,
            "rank": rk,
            "own": own,
            "inherited": inherited,
            "distinct": dist,
            "long": long,
        }
        c.score = (
            max(own, inherited) + w.type * ty + w.rank * rk + w.distinct * dist - w.long * long
        )
    return sorted(cands, key=lambda c: -c.score)


def score_units(
    question: str,
    history: Sequence[Message],
    hits: Sequence[SearchHit],
    embed: Embed,
    *,
    query_vector: npt.NDArray[np.float32] | None,
    chunk_similarity: dict[str, float] | None = None,
    leads: dict[str, str] | None = None,
    weights: Weights | None = None,
) -> list[Scored]:
    """Every answer unit of the hits, scored (:func:`score_candidates`) and sorted best first.

    Embedding every unit would cost most of the time to first token (about 70 units, ~10 ms
    each on one core), so the units are first scored without it (cosine = their chunk's
    cosine to the query) and only the best ``weights.embed_top`` (and the sentences they
    continue) are embedded and rescored. ``query_vector``: the retrieval query's embedding
    (the units are compared with it); None embeds the question here."""
    weights = weights or DEFAULT_WEIGHTS
    cands = unit_candidates(hits, leads)
    if not cands:
        return []
    chunk_cos = np.array(
        [(chunk_similarity or {}).get(hits[c.source - 1].chunk_id, 0.0) for c in cands],
        dtype=np.float32,
    )

    def unit_sims(units: Sequence[Scored]) -> npt.NDArray[np.float32]:
        texts = [c.unit.full() for c in units]
        if query_vector is not None:
            return np.asarray(embed(texts) @ query_vector, dtype=np.float32)
        vecs = embed([question, *texts])
        return np.asarray(vecs[1:] @ vecs[0], dtype=np.float32)

    if weights.embed_top <= 0 or len(cands) <= weights.embed_top:
        return score_candidates(question, history, cands, unit_sims(cands), weights)
    first = score_candidates(question, history, cands, chunk_cos, weights)
    keep = {id(c) for c in first[: weights.embed_top]}
    continued = {id(c.prev) for c in cands if id(c) in keep and c.prev is not None}
    keep |= {id(c) for c in cands if id(c.unit) in continued}
    idx = [i for i, c in enumerate(cands) if id(c) in keep]
    sims = chunk_cos - weights.unembedded
    sims[idx] = unit_sims([cands[i] for i in idx])
    return score_candidates(question, history, cands, sims, weights)


def pick(ranked: Sequence[Scored], quotes: int = QUOTES) -> list[Scored]:
    """The units the answer leads with: the best ``quotes`` of distinct text (a unit already
    quoted within a longer one is skipped: a chunk cut mid-sentence). After the first,
    a unit of a single word (a bare heading such as "Containers.") is not quoted: it states
    nothing on its own."""
    chosen: list[Scored] = []
    for c in ranked:
        if len(chosen) >= quotes:
            break
        text = squash(c.unit.text).strip(" ,;:.")
        if any(text in squash(d.unit.text) for d in chosen):
            continue  # already quoted, whole or as part of a longer quote
        if chosen and len(_WORD.findall(c.unit.text)) < 2:
            continue
        chosen.append(c)
    return chosen


def build_extract(chosen: Sequence[Scored]) -> Extract:
    """One line per unit: its definition term or table header, the quoted unit (with the
    sentence it continues first, when its relevance came from that one), its ``[n]``.
    Consecutive quotes under the same term show the term once."""
    quotes: list[Quote] = []
    lines: list[str] = []
    cites: list[int] = []
    shown = {c.unit.text for c in chosen}
    last_context: str | None = None
    for c in chosen:
        body = squash(c.unit.text)
        f = c.features
        if (
            c.prev is not None
            and f.get("inherited", 0.0) > f.get("own", 1.0)
            and c.prev.text not in shown
        ):
            body = squash(c.prev.text) + " " + body
            shown.add(c.prev.text)
        context = squash(c.unit.context)
        quote = Quote(c.source, context, body)
        quotes.append(quote)
        lines.append(quote.line(show_context=context != last_context))
        last_context = context
        if c.source not in cites:
            cites.append(c.source)
    return Extract(quotes, "\n".join(lines), cites)
