"""Answer metrics: correctness against reference answers and faithfulness to cited passages.

* Key facts: an answer is right when it contains any one of the question's keys
  (:func:`contains_key`); an unanswerable question is answered right by an abstention
  (:func:`is_abstention`, or the server's own ``abstained`` flag).

* Exact match and token F1 use SQuAD's normalisation (lower case, punctuation and the articles
  a/an/the removed, whitespace collapsed), the maximum over the reference answers.
* Faithfulness and groundedness use the answer stage's own support rule
  (``rag/support.py`` through :func:`rag.attribution.statement_support`): a sentence is
  *supported* only when one unit of a passage it cites holds its specific content (numbers,
  identifiers, quoted and rare names, the same negations) and nearly all its words; a quote
  line (``term: “quote” [n]``) only when the quote is the cited passage's own words. Word
  overlap or embedding closeness never count: a sentence with a swapped identifier or a
  dropped "not" is unsupported. The rule is strict: a faithful paraphrase far from the
  source's wording counts as unsupported too.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from rag.attribution import StatementSupport, statement_support
from rag.citations import markers, strip_markers
from rag.support import split_prose

Embed = Callable[[Sequence[str]], npt.NDArray[np.float32]]
SentenceSupport = StatementSupport

__all__ = [
    "Embed",
    "SentenceSupport",
    "answer_similarity",
    "contains_key",
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


def split_sentences(text: str) -> list[str]:
    """Sentences line by line, each keeping the citation markers that follow it."""
    return [s for line in text.splitlines() for s in split_prose(line)]


def faithfulness(
    answer: str, sources: Mapping[int, str], *, cite_all: bool = False
) -> list[SentenceSupport]:
    """Every statement of ``answer`` checked against the passages it cites (``sources`` maps
    a marker number to its passage). A statement without a marker is covered by the markers
    of the next statement that has some, else by the previous one's; one that cites nothing
    valid is unsupported. With ``cite_all`` any passage may support any statement."""
    return statement_support(answer, sources, cite_all=cite_all)


def groundedness(answer: str, passages: Sequence[str]) -> list[SentenceSupport]:
    """Like :func:`faithfulness`, but every statement may be supported by any passage."""
    return faithfulness(answer, {i + 1: p for i, p in enumerate(passages)}, cite_all=True)


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
