"""Retrieval: the one path from a question to ranked passages, for the server and the evaluation.

Steps, the same for every caller, all on ONE reader of the index taken at the start
(``index.reader()``: the server's live release view, store/live.py), so a question never
mixes two releases:

1. the question is a :class:`rag.conversation.Conversation`: a single question, or a
   follow-up with its earlier turns, retrieved with the condensed query (the earlier turns'
   salient terms, then the new turn: ``rag/conversation.py``); its first :data:`QUERY_CHARS`
   characters are embedded;
2. candidate lists come from the store (:func:`search_plan`), each of
   ``max(retrieval.candidates, top_k)`` chunks and each under the caller's prefilter (ACL
   groups, path prefix, document ids): vector search (cosine; exact, ANN or flat as
   store/ann.py decides for the release) and full-text search (the plain words) of the
   query; a full-text search on the question's distinctive terms alone (identifiers, codes,
   names: ``rag/question.py``), which a whole question's words drown; and for a follow-up,
   vector and full-text searches on the new turn alone, so a turn that changes the subject
   still finds it. The full-text searches run on other threads while the query is embedded
   and the vector searches run; a search that repeats an earlier one (a question made only
   of distinctive terms asks the full-text index the same words twice) runs once and its
   list stands for both (:func:`repeated_searches`: the fusion is unchanged);
3. :func:`fuse` merges the lists by reciprocal rank (``rrf_k``) and collapses true duplicates
   only (the same text after normalisation: Unicode NFKC, case folded, white space collapsed;
   a passage whose numbers, codes or names differ is never dropped), keeping ``top_k``; hits
   below ``min_score`` are dropped;
4. each hit is checked for instruction-like text (``security.flag_injection``), so chunks
   ingested before that check existed are flagged too;
5. relevance: the question counts as covered when at least one hit has a cosine similarity
   of at least ``retrieval.min_similarity`` or was matched by a full-text search. Otherwise
   the answer stage abstains without calling the model.

The :class:`Retrieval` also keeps the texts of every candidate of every list (the pool the
answer stage's absent-term check reads) and, when asked (``leads=True``, the answer stage),
the definition term in force where each hit starts, read from the chunk before it in the
same document, from the same reader and under the same prefilter (:func:`lead_contexts`).

:class:`Retriever` runs these steps for one conversation (:meth:`Retriever.retrieve`) or for a
batch (:meth:`Retriever.retrieve_many`: one embedding pass, and when no prefilter applies and
the index is small enough, exact vector candidates from one in-memory matrix product, which
ranks exactly as LanceDB's flat search does). Both build the same lists, so the evaluation's
retrieval figures are the server's, follow-ups included.
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
from rag.conversation import Conversation
from rag.question import distinctive_terms
from rag.units import trailing_context
from store.records import Candidate, DocumentRecord, SearchFilters, SearchHit

if TYPE_CHECKING:
    from enclave.settings import Settings
    from models.embedder import Embedder
    from store.reader import IndexSource, TableReader

#: characters of the question used for retrieval (the embedder truncates far earlier)
QUERY_CHARS = 4000
#: up to this many chunks, a batch's vector candidates come from one in-memory matrix product
EXACT_BATCH_MAX = 200_000
#: questions embedded per batch by :meth:`Retriever.retrieve_many`
EMBED_BATCH = 256

#: what a retrieval is asked: a question, or a conversation ending in one
Ask = str | Conversation


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _search_pool() -> ThreadPoolExecutor:
    """The threads full-text searches run on while the vector search runs (one per
    concurrent question, up to 8)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="enclave-fts")
        return _POOL


@dataclass
class Retrieval:
    """The hits of one question with what the relevance check and the answer stage need."""

    hits: list[SearchHit]
    #: cosine similarity of each candidate chunk to the question, by chunk id
    similarity: dict[str, float] = field(default_factory=dict)
    #: chunk ids a full-text search matched
    text_matches: set[str] = field(default_factory=set)
    relevant: bool = False
    seconds: float = 0.0
    #: the release the hits come from (None: an index without releases, or the head)
    release: str | None = None
    #: the hits' document rows in that same release, by doc_id (path, sha256, mtime)
    documents: dict[str, DocumentRecord] = field(default_factory=dict)
    #: the query retrieved with (the condensed conversation)
    query: str = ""
    #: the texts of every candidate of every list (the absent-term check reads them)
    pool: list[str] = field(default_factory=list)
    #: chunk id -> the definition term in force where the hit starts (``leads=True`` only)
    leads: dict[str, str] = field(default_factory=dict)
    #: the embedding of :attr:`query`
    vector: npt.NDArray[np.float32] | None = None
    #: the embedder of the searched release (passages are compared with :attr:`vector` in
    #: its space); None: the retriever's own
    embedder: Embedder | None = None


@dataclass(frozen=True)
class Search:
    """One candidate list: a vector search of an embedded text, or a full-text search."""

    name: str
    kind: str  # "vector" | "text"
    text: str


def as_conversation(ask: Ask) -> Conversation:
    return ask if isinstance(ask, Conversation) else Conversation.of(ask)


def search_plan(conv: Conversation) -> list[Search]:
    """The candidate lists of one conversation, in fusion order (module docstring, step 2)."""
    query = conv.query[:QUERY_CHARS]
    plan = [Search("vector", "vector", query), Search("text", "text", query)]
    terms = distinctive_terms(conv.question) or (distinctive_terms(query) if conv.follow_up else [])
    if terms:
        plan.append(Search("terms", "text", " ".join(terms)))
    if conv.follow_up and conv.question.strip() != query.strip():
        turn = conv.question[:QUERY_CHARS]
        plan += [Search("turn_vector", "vector", turn), Search("turn_text", "text", turn)]
    return plan


def repeated_searches(plan: Sequence[Search]) -> dict[int, int]:
    """The searches of ``plan`` that repeat an earlier one (the same kind and the same query
    as the store sees it: a question made only of distinctive terms asks the full-text index
    the same thing twice), each with the index of the first: it is run once and its list
    used for both, so the fusion is unchanged."""
    from store.reader import fts_query

    first: dict[tuple[str, str], int] = {}
    out: dict[int, int] = {}
    for i, s in enumerate(plan):
        key = (s.kind, fts_query(s.text) if s.kind == "text" else s.text)
        if key in first:
            out[i] = first[key]
        else:
            first[key] = i
    return out


def duplicate_key(text: str) -> str:
    """What two passages share when one is a copy of the other: the text after NFKC
    normalisation, case folding and white-space collapse, hashed."""
    normal = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return hashlib.sha256(normal.encode("utf-8")).hexdigest()


def fuse(
    *lists: Sequence[Candidate],
    top_k: int,
    rrf_k: int = 60,
    collapse_duplicates: bool = True,
) -> list[SearchHit]:
    """Reciprocal-rank fusion of any number of ranked lists (the first is the vector list, the
    second the full-text list: their ranks are kept on each hit); copies of a passage already
    kept (the same :func:`duplicate_key`) are collapsed into it."""
    scores: dict[str, float] = {}
    found: dict[str, Candidate] = {}
    ranks: dict[str, dict[int, int]] = {}
    for li, ranked in enumerate(lists):
        for rank, cand in enumerate(ranked, start=1):
            cid = cand.chunk_id
            scores[cid] = scores.get(cid, 0.0) + 1.0 / (rrf_k + rank)
            found.setdefault(cid, cand)
            ranks.setdefault(cid, {}).setdefault(li, rank)
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


def _hit(cand: Candidate, score: float, ranks: dict[int, int]) -> SearchHit:
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
        vector_rank=ranks.get(0),
        text_rank=ranks.get(1),
    )


def rank(
    vectors: Sequence[npt.NDArray[np.float32]],
    plan: Sequence[Search],
    lists: Sequence[Sequence[Candidate]],
    settings: Settings,
    *,
    top_k: int,
) -> Retrieval:
    """Steps 3-5 of the module docstring over one question's candidate lists. ``vectors``:
    the embedded texts of the plan's vector searches (the query's first); a chunk's
    similarity is its best cosine to any of them."""
    rs = settings.retrieval
    hits = fuse(*lists, top_k=top_k, rrf_k=rs.rrf_k, collapse_duplicates=rs.collapse_duplicates)
    if rs.min_score > 0:
        hits = [h for h in hits if h.score >= rs.min_score]
    if settings.security.flag_injection and hits:
        from enclave.security.injection import flag_injection

        for hit in hits:  # flags from ingestion, or from this check for older chunks
            for flag in flag_injection(hit.text):
                if flag not in hit.flags:
                    hit.flags.append(flag)
    similarity: dict[str, float] = {}
    text_matches: set[str] = set()
    pool: dict[str, str] = {}
    matrix = np.stack(vectors) if vectors else None
    for search, cands in zip(plan, lists, strict=True):
        for cand in cands:
            pool.setdefault(cand.chunk_id, cand.text)
            if search.kind == "text":
                text_matches.add(cand.chunk_id)
            if cand.chunk_id in similarity:
                continue
            if cand.vector is not None and matrix is not None:
                similarity[cand.chunk_id] = float(np.max(matrix @ cand.vector))
            elif cand.similarity is not None:
                similarity[cand.chunk_id] = cand.similarity
    relevant = any(
        similarity.get(h.chunk_id, -1.0) >= rs.min_similarity or h.chunk_id in text_matches
        for h in hits
    )
    return Retrieval(
        hits=hits,
        similarity=similarity,
        text_matches=text_matches,
        relevant=relevant,
        pool=list(pool.values()),
        vector=vectors[0] if vectors else None,
    )


def lead_contexts(
    reader: TableReader, hits: Sequence[SearchHit], filters: SearchFilters | None = None
) -> dict[str, str]:
    """For each hit after its document's first chunk, the definition term in force where it
    starts, read from the chunk before it (chunks overlap, so a description often starts
    mid-chunk, under a term the chunk itself does not show). One query, on the caller's
    reader and prefilter."""
    wanted = [(h.doc_id, h.ordinal - 1) for h in hits if h.ordinal > 0]
    if not wanted:
        return {}
    before = reader.chunk_texts_at(wanted, filters)
    out: dict[str, str] = {}
    for h in hits:
        text = before.get((h.doc_id, h.ordinal - 1))
        if text:
            term = trailing_context(text)
            if term:
                out[h.chunk_id] = term
    return out


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
        embedders: Callable[[str | None], Embedder | None] | None = None,
    ) -> None:
        self.settings = settings
        self.index = index
        self.embedder = embedder
        self.embed_lock = embed_lock or threading.Lock()
        #: the embedder of a release built with another model (a re-index), by its name
        self.embedders = embedders

    def embedder_for(self, reader: TableReader) -> Embedder:
        """The embedder whose vectors ``reader``'s tables hold: questions are embedded by the
        model of the release they search (a server follows releases across re-indexes)."""
        name = getattr(reader, "embedder_name", None)
        if self.embedders is None or name is None or name == self.embedder.name:
            return self.embedder
        return self.embedders(name) or self.embedder

    def embed_query(self, text: str, embedder: Embedder | None = None) -> npt.NDArray[np.float32]:
        with self.embed_lock:
            return (embedder or self.embedder).embed_query(text[:QUERY_CHARS])

    def embed(
        self, texts: Sequence[str], embedder: Embedder | None = None
    ) -> npt.NDArray[np.float32]:
        with self.embed_lock:
            return (embedder or self.embedder).embed(list(texts))

    def _depth(self, top_k: int | None) -> tuple[int, int]:
        k = self.settings.retrieval.top_k if top_k is None else top_k
        if k < 1:
            raise UsageError("top_k must be at least 1")
        return k, max(self.settings.retrieval.candidates, k)

    def retrieve(
        self,
        ask: Ask,
        *,
        top_k: int | None = None,
        filters: SearchFilters | None = None,
        leads: bool = False,
    ) -> Retrieval:
        """The ``top_k`` (default ``retrieval.top_k``) hits for one question or conversation;
        with ``leads``, the definition terms in force where the hits start."""
        started = time.perf_counter()
        k, n = self._depth(top_k)
        conv = as_conversation(ask)
        if not conv.question.strip():
            raise UsageError("the query is empty")
        plan = search_plan(conv)
        reader = self.index.reader()
        # the full-text searches overlap the embedding and the vector searches (LanceDB
        # releases the GIL): the slower side sets the pace
        pool = _search_pool()
        repeats = repeated_searches(plan)  # run once, their list used again
        pending = {
            i: pool.submit(reader.text_search, s.text, n, filters)
            for i, s in enumerate(plan)
            if s.kind != "vector" and i not in repeats
        }
        model = self.embedder_for(reader)
        vectors = {s.text: self.embed_query(s.text, model) for s in plan if s.kind == "vector"}
        lists = [
            reader.vector_search(vectors[s.text], n, filters)
            if s.kind == "vector" and i not in repeats
            else []
            for i, s in enumerate(plan)
        ]
        for i, future in pending.items():
            lists[i] = future.result()
        for i, j in repeats.items():
            lists[i] = list(lists[j])
        result = rank(list(vectors.values()), plan, lists, self.settings, top_k=k)
        result.query = conv.query
        result.embedder = model
        result.release = reader.release_id
        result.documents = reader.documents_by_id(h.doc_id for h in result.hits)
        if leads:
            result.leads = lead_contexts(reader, result.hits, filters)
        result.seconds = time.perf_counter() - started
        return result

    def retrieve_many(
        self,
        asks: Sequence[Ask],
        *,
        top_k: int | None = None,
        filters: SearchFilters | None = None,
        threads: int = 2,
        advance: Callable[[int], None] | None = None,
        timings: dict[str, float] | None = None,
    ) -> list[Retrieval]:
        """:meth:`retrieve` for every question or conversation, ranked alike (the same lists),
        with the embedding done in batches (shortest first, so batches waste no padding) and,
        without a prefilter on a release searched exactly (no vector index: store/ann.py) of up
        to :data:`EXACT_BATCH_MAX` chunks, the vector candidates of all of them from one
        in-memory matrix product. ``timings`` receives
        ``embed_s`` and ``search_s`` (wall time of each phase)."""
        k, n = self._depth(top_k)
        t0 = time.perf_counter()
        convs = [as_conversation(a) for a in asks]
        plans = [search_plan(c) for c in convs]
        texts = list(dict.fromkeys(s.text for p in plans for s in p if s.kind == "vector"))
        row = {t: i for i, t in enumerate(texts)}
        reader = self.index.reader()
        model = self.embedder_for(reader)
        vectors = self.embed_queries(texts, model)
        t1 = time.perf_counter()
        restricted = filters is not None and filters != SearchFilters()
        dense: list[list[Candidate]] | None = None
        searcher = reader.vector_searcher()
        exact = searcher is not None and searcher.path == "exact"  # else ANN or flat (store/ann.py)
        if not restricted and texts and exact and reader.count_chunks() <= EXACT_BATCH_MAX:
            dense = reader.exact_index().search(vectors, n)

        def one(i: int) -> Retrieval:
            started = time.perf_counter()
            lists: list[list[Candidate]] = []
            repeats = repeated_searches(plans[i])
            for at, s in enumerate(plans[i]):
                if at in repeats:
                    lists.append(list(lists[repeats[at]]))
                elif s.kind == "text":
                    lists.append(reader.text_search(s.text, n, filters))
                elif dense is not None:
                    lists.append(dense[row[s.text]])
                else:
                    lists.append(reader.vector_search(vectors[row[s.text]], n, filters))
            used = [vectors[row[s.text]] for s in plans[i] if s.kind == "vector"]
            result = rank(used, plans[i], lists, self.settings, top_k=k)
            result.query = convs[i].query
            result.embedder = model
            result.release = reader.release_id
            result.seconds = time.perf_counter() - started
            return result

        out: list[Retrieval] = []
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            for result in pool.map(one, range(len(convs))):
                out.append(result)
                if advance is not None:
                    advance(1)
        if timings is not None:
            timings["embed_s"] = t1 - t0
            timings["search_s"] = time.perf_counter() - t1
        return out

    def embed_queries(
        self, texts: Sequence[str], embedder: Embedder | None = None
    ) -> npt.NDArray[np.float32]:
        """Every question embedded, in batches of similar length."""
        model = embedder or self.embedder
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), model.dimension), dtype=np.float32)
        for start in range(0, len(order), EMBED_BATCH):
            idx = order[start : start + EMBED_BATCH]
            with self.embed_lock:
                out[idx] = model.embed([texts[i][:QUERY_CHARS] for i in idx])
        return out
