"""Answer metrics: correctness against reference answers and faithfulness to cited passages.

* Key facts: an answer is right when it contains any one of the question's keys
  (:func:`contains_key`); an unanswerable question is answered right by an abstention
  (:func:`is_abstention`, or the server's own ``abstained`` flag).

* Exact match and token F1 use SQuAD's normalisation (lower case, punctuation and the articles
  a/an/the removed, whitespace collapsed), the maximum over the reference answers.
* Faithfulness is a cheap, model-free proxy: an answer sentence is *supported* when one of the
  passages it cites contains most of its content words (overlap recall >= ``OVERLAP_MIN``) or a
  sentence whose embedding is close to it (cosine >= ``COSINE_MIN``). It cannot see negation,
  numbers swapped between entities, or claims that paraphrase far from the source.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from rag.attribution import (
    COSINE_MIN,
    MIN_CLAIM_WORDS,
    OVERLAP_MIN,
    STOPWORDS,
    Embed,
    content_words,
    cosines,
    split_sentences,
)
from rag.citations import markers, strip_markers

__all__ = [
    "COSINE_MIN",
    "MIN_CLAIM_WORDS",
    "OVERLAP_MIN",
    "STOPWORDS",
    "Embed",
    "SentenceSupport",
    "answer_similarity",
    "contains_key",
    "content_words",
    "exact_match",
    "faithfulness",
    "groundedness",
    "is_abstention",
    "markers",
    "normalize_answer",
    "split_sentences",
    "strip_markers",
    "supported_share",
    "token_f1",
]

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = set(string.punctuation)


def _collapse(text: str) -> str:
    return " ".join(text.casefold().split())


def contains_key(answer: str, keys: Sequence[str]) -> bool:
    """Whether ``answer`` (citation markers removed) contains any one of ``keys``:
    case-insensitive, white space collapsed, and with a word boundary wherever a key starts or
    ends with a letter or digit (``5432`` is not found in ``54321``; ``--foo=`` needs none
    after its ``=``)."""
    text = _collapse(strip_markers(answer))
    for key in keys:
        k = _collapse(key)
        if not k:
            continue
        start = r"(?<!\w)" if re.match(r"\w", k[0]) else ""
        end = r"(?!\w)" if re.match(r"\w", k[-1]) else ""
        if re.search(start + re.escape(k) + end, text):
            return True
    return False


#: phrases by which an answer says the documents do not hold the answer
ABSTENTION_PHRASES = (
    "i don't know",
    "i do not know",
    "don't contain information",
    "do not contain information",
    "don't cover",
    "do not cover",
    "not covered by",
    "cannot find",
    "can't find",
    "could not find",
    "couldn't find",
    "no information about",
    "not mentioned in the",
    "does not mention",
    "doesn't mention",
)


def is_abstention(answer: str) -> bool:
    """Whether an answer declines: it says the documents do not hold the answer."""
    low = _collapse(answer.replace("’", "'"))
    return any(p in low for p in ABSTENTION_PHRASES)


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, references: Sequence[str]) -> float:
    pred = normalize_answer(strip_markers(prediction))
    return max((float(pred == normalize_answer(r)) for r in references), default=0.0)


def _f1(pred_tokens: list[str], ref_tokens: list[str]) -> float:
    if not pred_tokens or not ref_tokens:
        return float(pred_tokens == ref_tokens)
    common = Counter(pred_tokens) & Counter(ref_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(ref_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, references: Sequence[str]) -> float:
    pred = normalize_answer(strip_markers(prediction)).split()
    return max((_f1(pred, normalize_answer(r).split()) for r in references), default=0.0)


@dataclass
class SentenceSupport:
    sentence: str
    cited: list[int]
    supported: bool
    overlap: float
    cosine: float


def faithfulness(
    answer: str,
    sources: Mapping[int, str],
    embed: Embed,
    *,
    cite_all: bool = False,
    overlap_min: float = OVERLAP_MIN,
    cosine_min: float = COSINE_MIN,
) -> list[SentenceSupport]:
    """Check every claim sentence of ``answer`` against the passages it cites.

    ``sources`` maps a marker number to its passage text. A sentence without a marker is
    covered by the markers of the next sentence that has some (a marker closing a paragraph
    covers it), else by the previous one's; a sentence that cites nothing valid is unsupported.
    With ``cite_all`` every sentence may be supported by any source (groundedness).
    """
    claims = [
        (s, markers(s))
        for s in split_sentences(answer)
        if len(content_words(strip_markers(s))) >= MIN_CLAIM_WORDS
    ]
    if not claims:
        return []
    cited: list[list[int]] = [sorted(sources) if cite_all else m for _, m in claims]
    for i in range(len(cited)):
        if not cited[i]:
            nxt = next((c for c in cited[i + 1 :] if c), None)
            prev = next((c for c in reversed(cited[:i]) if c), None)
            cited[i] = list(nxt or prev or [])
    claim_texts = [strip_markers(s) for s, _ in claims]
    flat: list[tuple[int, str]] = [
        (n, s) for n, text in sources.items() for s in (split_sentences(text) or [text])
    ]
    vectors = embed(claim_texts + [s for _, s in flat])
    sims = cosines(vectors[: len(claim_texts)], vectors[len(claim_texts) :])
    owner = np.asarray([n for n, _ in flat], dtype=np.int64)
    source_words = {n: content_words(text) for n, text in sources.items()}

    out: list[SentenceSupport] = []
    for i, (sentence, _) in enumerate(claims):
        words = content_words(claim_texts[i])
        valid = [n for n in cited[i] if n in sources]
        best_overlap = 0.0
        best_cos = 0.0
        for n in valid:
            if words:
                best_overlap = max(best_overlap, len(words & source_words[n]) / len(words))
            mask = owner == n
            if mask.any():
                best_cos = max(best_cos, float(sims[i][mask].max()))
        supported = bool(valid) and (best_overlap >= overlap_min or best_cos >= cosine_min)
        out.append(
            SentenceSupport(
                sentence=sentence,
                cited=cited[i],
                supported=supported,
                overlap=round(best_overlap, 4),
                cosine=round(best_cos, 4),
            )
        )
    return out


def groundedness(answer: str, passages: Sequence[str], embed: Embed) -> list[SentenceSupport]:
    """Like :func:`faithfulness`, but every sentence may be supported by any passage."""
    return faithfulness(answer, {i + 1: p for i, p in enumerate(passages)}, embed, cite_all=True)


def supported_share(support: Sequence[SentenceSupport]) -> float | None:
    if not support:
        return None
    return sum(1 for s in support if s.supported) / len(support)


def answer_similarity(answer: str, references: Sequence[str], embed: Embed) -> float | None:
    """Max cosine between the answer (markers stripped) and any reference answer."""
    refs = [r for r in references if r.strip()]
    text = strip_markers(answer)
    if not refs or not text:
        return None
    vecs = embed([text, *refs])
    return float(np.max(vecs[1:] @ vecs[0]))
