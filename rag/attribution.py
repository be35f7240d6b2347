"""Attribution: which source passage backs each sentence of an answer.

A sentence is *supported* by a passage that contains most of its content words (overlap
recall >= ``OVERLAP_MIN``) or a sentence whose embedding is close to it (cosine >=
``COSINE_MIN``). A cheap, model-free proxy: it cannot see negation, numbers swapped between
entities, or claims that paraphrase far from the source. The answer stage uses it to attribute
the sentences a model left without a citation marker (:func:`attribute_sentences`); the evaluation
harness uses the same primitives for its faithfulness metric.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from rag.citations import markers, strip_markers

#: a sentence is supported when this share of its content words is in a cited passage ...
OVERLAP_MIN = 0.6
#: ... or when its embedding is this close to one of the cited passage's sentences
COSINE_MIN = 0.6
#: sentences with fewer content words are not claims ("Yes.", "[1]") and are not scored
MIN_CLAIM_WORDS = 2

_WORD = re.compile(r"\w+", re.UNICODE)
# a sentence ends at . ! ? (with any closing quotes/brackets and citation markers after it)
_SENTENCE_END = re.compile(r"(?<=[.!?])((?:[\"')\]]*)(?:\s*\[[\d,; ]{1,40}\])*)\s+|\n+")

STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "also",
        "may",
        "might",
        "must",
        "shall",
        "one",
        "upon",
    ]
)

Embed = Callable[[Sequence[str]], npt.NDArray[np.float32]]


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in STOPWORDS}


def split_sentences(text: str) -> list[str]:
    """Sentences, each keeping the citation markers that follow its final punctuation."""
    out: list[str] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        end = m.end(1) if m.group(1) is not None else m.start()
        piece = text[start:end].strip()
        if piece:
            out.append(piece)
        start = m.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out


def cosines(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    if a.size == 0 or b.size == 0:
        return np.zeros((a.shape[0], b.shape[0] if b.ndim == 2 else 0), dtype=np.float32)
    return np.asarray(a @ b.T, dtype=np.float32)


@dataclass(frozen=True)
class Attribution:
    """A sentence of the answer and the source that supports it."""

    sentence: str
    #: the source's number (as in the prompt's ``[n]``)
    source: int
    overlap: float
    cosine: float

    def to_dict(self) -> dict[str, object]:
        return {
            "sentence": self.sentence,
            "index": self.source,
            "overlap": self.overlap,
            "cosine": self.cosine,
        }


def attribute_sentences(
    answer: str,
    sources: Mapping[int, str],
    embed: Embed,
    *,
    overlap_min: float = OVERLAP_MIN,
    cosine_min: float = COSINE_MIN,
) -> list[Attribution]:
    """The best supporting source of each claim sentence that cites no valid source.

    ``sources`` maps a source number to its passage. Sentences that already cite a source in
    ``sources`` are left to the model's own citation. A sentence is attributed to the source
    with the highest content-word overlap when it reaches ``overlap_min``; otherwise to the
    source holding the sentence closest by embedding, when that cosine reaches
    ``cosine_min``. The embedder runs only for sentences the overlap did not settle, in one
    batch with the sources' sentences.
    """
    if not sources:
        return []
    texts = [
        strip_markers(s) for s in split_sentences(answer) if not set(markers(s)) & sources.keys()
    ]
    claims = [(t, w) for t in texts if len(w := content_words(t)) >= MIN_CLAIM_WORDS]
    if not claims:
        return []
    source_words = {n: content_words(text) for n, text in sources.items()}
    found: dict[int, Attribution] = {}
    unsettled: list[int] = []
    for i, (claim, words) in enumerate(claims):
        best_n, best = max(
            ((n, len(words & w) / len(words)) for n, w in source_words.items()),
            key=lambda pair: pair[1],
        )
        if best >= overlap_min:
            found[i] = Attribution(claim, best_n, round(best, 4), 0.0)
        else:
            unsettled.append(i)
    # only source sentences sharing a content word with some unsettled claim are embedded:
    # the embedding step stays a small batch however long the sources are
    wanted = set().union(*(claims[i][1] for i in unsettled))
    flat = [
        (n, s)
        for n, text in sources.items()
        for s in (split_sentences(text) or [text])
        if content_words(s) & wanted
    ]
    if unsettled and flat:
        vectors = embed([claims[i][0] for i in unsettled] + [s for _, s in flat])
        sims = cosines(vectors[: len(unsettled)], vectors[len(unsettled) :])
        for row, i in enumerate(unsettled):
            j = int(np.argmax(sims[row]))
            cosine = float(sims[row][j])
            if cosine >= cosine_min:
                claim, words = claims[i]
                n = flat[j][0]
                overlap = len(words & source_words[n]) / len(words)
                found[i] = Attribution(claim, n, round(overlap, 4), round(cosine, 4))
    return [found[i] for i in sorted(found)]
