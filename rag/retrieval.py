"""Retrieval: the one path from a question to ranked passages, for the server and the evaluation.

Steps, the same for every caller, all on ONE reader of the index taken at the start
(``index.reader()``: the server's live release view, store/live.py), so a question never
mixes two releases:

1. the question (its first :data:`QUERY_CHARS` characters) is embedded;
2. two candidate lists come from the store, each of ``max(retrieval.candidates, top_k)``
   chunks and each under the caller's prefilter (ACL groups, path prefix, document ids):
   vector search (cosine) and full-text search (the question's plain words);
3. :func:`fuse` merges them by reciprocal rank (``rrf_k``) and collapses true duplicates only
   (the same text after normalisation: Unicode NFKC, case folded, white space collapsed; a
   passage whose numbers, codes or names differ is never dropped), keeping ``top_k``; hits
   below ``min_score`` are dropped;
4. each hit is checked for instruction-like text (``security.flag_injection``), so chunks
   ingested before that check existed are flagged too;
5. relevance: the question counts as covered when at least one hit has a cosine similarity
   of at least ``retrieval.min_similarity`` or was matched by the full-text search. Otherwise
   the answer stage abstains without calling the model.

:class:`Retriever` runs these steps for one question (:meth:`Retriever.retrieve`) or for a
batch (:meth:`Retriever.retrieve_many`: one embedding pass, and when no prefilter applies and
the index is small enough, exact vector candidates from one in-memory matrix product, which
ranks exactly as LanceDB's flat search does).
"""

from __future__ import annotations

import hashlib
import threading
import time
import unicodedata
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from enclave.errors import UsageError
from store.records import Candidate, DocumentRecord, SearchFilters, SearchHit

if TYPE_CHECKING:
    from enclave.settings import Settings
    from models.embedder import Embedder
    from store.reader import IndexSource

#: characters of the question used for retrieval (the embedder truncates far earlier)
QUERY_CHARS = 4000
#: up to this many chunks, a batch's vector candidates come from one in-memory matrix product
EXACT_BATCH_MAX = 200_000
#: questions embedded per batch by :meth:`Retriever.retrieve_many`
EMBED_BATCH = 256


@dataclass
class Retrieval:
    """The hits of one question with what the relevance check needs."""

    hits: list[SearchHit]
    #: cosine similarity of each candidate chunk to the question, by chunk id
    similarity: dict[str, float] = field(default_factory=dict)
    #: chunk ids the full-text search matched
    text_matches: set[str] = field(default_factory=set)
    relevant: bool = False
    seconds: float = 0.0
    #: the release the hits come from (None: an index without releases, or the head)
    release: str | None = None
    #: the hits' document rows in that same release, by doc_id (path, sha256, mtime)
    documents: dict[str, DocumentRecord] = field(default_factory=dict)


def duplicate_key(text: str) -> str:
    """What two passages share when one is a copy of the other: the text after NFKC
    normalisation, case folding and white-space collapse, hashed."""
    normal = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return hashlib.sha256(normal.encode("utf-8")).hexdigest()


def fuse(
    dense: Sequence[Candidate],
    sparse: Sequence[Candidate],
    *,
    top_k: int,
    rrf_k: int = 60,
    collapse_duplicates: bool = True,
) -> list[SearchHit]:
    """Reciprocal-rank fusion of two ranked lists; copies of a passage already kept (the same
    :func:`duplicate_key`) are collapsed into it."""
    scores: dict[str, float] = {}
    found: dict[str, Candidate] = {}
    ranks: dict[str, dict[str, int]] = {}
    for name, ranked in (("vector", dense), ("text", sparse)):
        for rank, cand in enumerate(ranked, start=1):
            cid = cand.chunk_id
            scores[cid] = scores.get(cid, 0.0) + 1.0 / (rrf_k + rank)
            found.setdefault(cid, cand)
            ranks.setdefault(cid, {})[name] = rank
    order = sorted(scores, key=lambda c: (-scores[c], c))
    kept: list[SearchHit] = []
    seen: set[str] = set()
    for cid in order:
        cand = found[cid]
        if collapse_duplicates:
            key = duplicate_key(cand.text)
            if key in seen:
                continue
            seen.add(key)
        kept.append(_hit(cand, scores[cid], ranks[cid]))
        if len(kept) >= top_k:
            break
    return kept


def _hit(cand: Candidate, score: float, ranks: dict[str, int]) -> SearchHit:
    return SearchHit(
        chunk_id=cand.chunk_id,
        doc_id=cand.doc_id,
        source=cand.source,
        title=cand.title,
        page=cand.page,
        heading_path=list(cand.heading_path),
        text=cand.text,
        score=round(score, 6),
        ordinal=cand.ordinal,
        char_start=cand.char_start,
        char_end=cand.char_end,
        tokens=cand.tokens,
        flags=list(cand.flags),
        vector_rank=ranks.get("vector"),
        text_rank=ranks.get("text"),
    )


def rank(
    vector: npt.NDArray[np.float32],
    dense: Sequence[Candidate],
    sparse: Sequence[Candidate],
    settings: Settings,
    *,
    top_k: int,
) -> Retrieval:
    """Steps 3-5 of the module docstring over one question's two candidate lists."""
    rs = settings.retrieval
    hits = fuse(
        dense, sparse, top_k=top_k, rrf_k=rs.rrf_k, collapse_duplicates=rs.collapse_duplicates
    )
    if rs.min_score > 0:
        hits = [h for h in hits if h.score >= rs.min_score]
    if settings.security.flag_injection and hits:
        from enclave.security.injection import flag_injection

        for hit in hits:  # flags from ingestion, or from this check for older chunks
            for flag in flag_injection(hit.text):
                if flag not in hit.flags:
                    hit.flags.append(flag)
    similarity: dict[str, float] = {}
    for cand in dense:
        if cand.similarity is not None:
            similarity[cand.chunk_id] = cand.similarity
    for cand in sparse:
        if cand.chunk_id not in similarity and cand.vector is not None:
            similarity[cand.chunk_id] = float(np.dot(cand.vector, vector))
    text_matches = {cand.chunk_id for cand in sparse}
    relevant = any(
        similarity.get(h.chunk_id, -1.0) >= rs.min_similarity or h.chunk_id in text_matches
        for h in hits
    )
    return Retrieval(hits=hits, similarity=similarity, text_matches=text_matches, relevant=relevant)


class Retriever:
    """Hybrid retrieval over one index with one embedder. Safe to share between threads: the
    embedder is used by one thread at a time (``embed_lock``, shared with whoever else embeds
    with the same model in this process)."""

    def __init__(
        self,
        settings: Settings,
        index: IndexSource,
        embedder: Embedder,
        *,
        embed_lock: threading.Lock | None = None,
    ) -> None:
        self.settings = settings
        self.index = index
        self.embedder = embedder
        self.embed_lock = embed_lock or threading.Lock()

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        with self.embed_lock:
            return self.embedder.embed_query(text[:QUERY_CHARS])

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        with self.embed_lock:
            return self.embedder.embed(list(texts))

    def _depth(self, top_k: int | None) -> tuple[int, int]:
        k = self.settings.retrieval.top_k if top_k is None else top_k
        if k < 1:
            raise UsageError("top_k must be at least 1")
        return k, max(self.settings.retrieval.candidates, k)

    def retrieve(
        self, query: str, *, top_k: int | None = None, filters: SearchFilters | None = None
    ) -> Retrieval:
        """The ``top_k`` (default ``retrieval.top_k``) hits for one question."""
        started = time.perf_counter()
        k, n = self._depth(top_k)
        if not query.strip():
            raise UsageError("the query is empty")
        vector = self.embed_query(query)
        reader = self.index.reader()
        dense = reader.vector_search(vector, n, filters)
        sparse = reader.text_search(query[:QUERY_CHARS], n, filters)
        result = rank(vector, dense, sparse, self.settings, top_k=k)
        result.release = reader.release_id
        result.documents = reader.documents_by_id(h.doc_id for h in result.hits)
        result.seconds = time.perf_counter() - started
        return result

    def retrieve_many(
        self,
        queries: Sequence[str],
        *,
        top_k: int | None = None,
        filters: SearchFilters | None = None,
        threads: int = 2,
        advance: Callable[[int], None] | None = None,
        timings: dict[str, float] | None = None,
    ) -> list[Retrieval]:
        """:meth:`retrieve` for every question, ranked alike, with the embedding done in
        batches (shortest first, so batches waste no padding) and, without a prefilter on an
        index of up to :data:`EXACT_BATCH_MAX` chunks, the vector candidates of all questions
        from one in-memory matrix product. ``timings`` receives ``embed_s`` and ``search_s``
        (wall time of each phase)."""
        k, n = self._depth(top_k)
        t0 = time.perf_counter()
        vectors = self.embed_queries(queries)
        t1 = time.perf_counter()
        restricted = filters is not None and filters != SearchFilters()
        reader = self.index.reader()
        dense_all: list[list[Candidate]] | None = None
        if not restricted and reader.count_chunks() <= EXACT_BATCH_MAX:
            dense_all = reader.exact_index().search(vectors, n)

        def one(i: int) -> Retrieval:
            started = time.perf_counter()
            text = queries[i][:QUERY_CHARS]
            dense = (
                dense_all[i]
                if dense_all is not None
                else reader.vector_search(vectors[i], n, filters)
            )
            sparse = reader.text_search(text, n, filters)
            result = rank(vectors[i], dense, sparse, self.settings, top_k=k)
            result.release = reader.release_id
            result.seconds = time.perf_counter() - started
            return result

        out: list[Retrieval] = []
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            for result in pool.map(one, range(len(queries))):
                out.append(result)
                if advance is not None:
                    advance(1)
        if timings is not None:
            timings["embed_s"] = t1 - t0
            timings["search_s"] = time.perf_counter() - t1
        return out

    def embed_queries(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Every question embedded, in batches of similar length."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.embedder.dimension), dtype=np.float32)
        for start in range(0, len(order), EMBED_BATCH):
            idx = order[start : start + EMBED_BATCH]
            out[idx] = self.embed([texts[i][:QUERY_CHARS] for i in idx])
        return out
