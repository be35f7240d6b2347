"""Answering: retrieve with the conversation, decide, then quote or generate and verify.

``RagService`` is plain Python (no web framework): the server drives it step by step
(:meth:`RagService.prepare`, :meth:`RagService.generate`, :meth:`RagService.finish`) to
stream, queue and cancel; the evaluation harness calls :meth:`RagService.answer` in-process.

:meth:`RagService.prepare` retrieves ``answer.top_k`` passages with the conversation
(``rag/retrieval.py``: a follow-up is retrieved with its condensed history), then decides:

* **abstain**, without a model call, when no passage is relevant (:data:`rag.prompt.
  ABSTAIN_TEXT`), when the question names a distinctive term that no candidate passage
  contains (``answer.abstain_on_absent_terms``, ``rag/question.py``), or when no passage
  has a sentence to quote;
* **extract** (``answer.mode = "extract"``, or ``"auto"`` with a model under
  :data:`AUTO_EXTRACT_BELOW` parameters): the answer is ready at once: the best
  ``answer.quotes`` sentences, quoted and cited by construction (``rag/extract.py``); no
  model call, no generation queue, zero usage;
* **generate** (``"generate"``, or ``"auto"`` with a larger model): the model answers from
  the best sentences as numbered facts (``rag/generated.py``); while it streams, only the
  sentences the support rule verifies are passed on (:class:`rag.generated.SentenceGate`),
  and :meth:`RagService.finish` falls back to the extract when none is left.

Either way the sources are the retrieved passages numbered by rank (``[n]``); ``citations``
are those the answer's verified statements cite. A passage flagged as holding
instruction-like text is never quoted nor given to the model, and the answer guard
(``rag/answer_guard.py``) replaces a generated answer that quotes Enclave's prompts or
repeats such a passage's distinctive words.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from enclave.errors import ModelNotAvailableError, UsageError
from enclave.security.injection import FLAG_INJECTION
from models.generator import Message, StreamCollector, StreamEvent, Usage
from rag.answer_guard import guard_answer, suspect_tokens
from rag.budget import answer_tokens
from rag.citations import verify_citations
from rag.conversation import Conversation, split_conversation
from rag.extract import Extract, Scored, build_extract, pick, score_units
from rag.generated import (
    STOP_STRINGS,
    FactSources,
    SentenceGate,
    facts_prompt,
    verify_generated,
)
from rag.packing import PackedSource, check_fits
from rag.prompt import ABSTAIN_TEXT, REFUSAL_TEXT, absent_text
from rag.question import absent_terms
from rag.retrieval import Retrieval, Retriever
from store.records import DocumentRecord, SearchFilters, SearchHit

if TYPE_CHECKING:
    from enclave.settings import Settings
    from models.embedder import Embedder
    from models.generator import Generator
    from store.reader import IndexSource

__all__ = ["Answer", "Prepared", "RagService", "source_entry", "split_conversation"]

SNIPPET_CHARS = 300
#: ``answer.mode = "auto"`` quotes instead of generating with a model smaller than this: the
#: bundled 135M model adds no fact to the quotes and invents some (measured: its own answers
#: hold a key fact for 7 of 55 questions)
AUTO_EXTRACT_BELOW = 1_000_000_000

#: why an answer abstained
NOT_RELEVANT = "not_relevant"
ABSENT_TERMS = "absent_terms"
NO_SENTENCE = "no_sentence"


@dataclass
class Prepared:
    """Everything decided before generation: the mode, the sources, the extract, the prompt."""

    question: str
    messages: list[Message]
    sources: list[PackedSource]
    retrieved: list[SearchHit]
    max_tokens: int
    temperature: float
    abstained: bool
    prompt_tokens: int = 0
    stop: list[str] | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: distinctive tokens only sources with instruction-like text hold (rag/answer_guard.py)
    suspect_tokens: set[str] = field(default_factory=set)
    #: the release the sources come from, and their documents' rows in it
    release: str | None = None
    documents: dict[str, DocumentRecord] = field(default_factory=dict)
    #: "extract" or "generate" (for an abstention: the mode that would have answered)
    mode: str = "extract"
    #: the extractive answer (the answer in extract mode, the fallback in generate mode)
    extract: Extract | None = None
    #: the units given to the model as facts, and what its sentences are checked against
    facts: list[Scored] = field(default_factory=list)
    fact_sources: FactSources | None = None
    #: why the answer abstains (NOT_RELEVANT, ABSENT_TERMS, NO_SENTENCE), and its text
    abstain_reason: str | None = None
    abstain_text: str = ABSTAIN_TEXT
    #: the query retrieved with (the conversation condensed)
    query: str = ""
    #: the filter on the model's stream (generate mode), set by :meth:`RagService.generate`
    gate: SentenceGate | None = None

    @property
    def ready(self) -> bool:
        """The answer needs no model call (an abstention or an extract)."""
        return self.abstained or self.mode == "extract"


@dataclass
class Answer:
    text: str
    #: the sources the answer cites (each with ``verified: True``)
    citations: list[dict[str, Any]]
    verified: list[int]
    removed: list[int]
    abstained: bool
    usage: Usage
    retrieved: list[SearchHit]
    timings: dict[str, float]
    #: every retrieved source, ``verified`` telling whether the answer cites it
    sources: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str = "stop"
    #: the model's raw text (generate mode), before debris and unverified sentences went
    raw_text: str = ""
    #: why a generated answer was replaced by a refusal: "system_prompt_leak",
    #: "injected_text", or None
    guard: str | None = None
    #: generated sentences the model left without (or with a wrong) marker, matched by the
    #: support rule to the given fact that supports them, and cited as that fact
    attributed: list[dict[str, Any]] = field(default_factory=list)
    #: the release the answer was served from (lineage), and its documents' rows there
    release: str | None = None
    documents: dict[str, DocumentRecord] = field(default_factory=dict)
    #: "extract" or "generate"
    mode: str = "extract"
    #: the quotes of an extractive answer (also of a generated one that fell back to them)
    quotes: list[dict[str, Any]] = field(default_factory=list)
    #: generated sentences dropped as unsupported
    dropped: list[str] = field(default_factory=list)
    #: a generated answer with no verified sentence, answered by the extract instead
    fell_back: bool = False
    abstain_reason: str | None = None
    query: str = ""

    def doc_sha256(self) -> dict[str, str]:
        """doc_id -> the file's sha256 in the release answered from (for the audit)."""
        return {doc_id: d.sha256 for doc_id, d in self.documents.items()}

    @property
    def flagged_sources(self) -> int:
        return sum(1 for s in self.sources if FLAG_INJECTION in s.get("flags", ()))


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit)
    return text[: cut if cut > limit // 2 else limit].rstrip() + "…"


class RagService:
    """Retrieval, extractive and generated answers, and their checks over one index."""

    def __init__(
        self,
        settings: Settings,
        index: IndexSource,
        embedder: Embedder,
        generator: Generator | None,
        *,
        retriever: Retriever | None = None,
    ) -> None:
        self.settings = settings
        self.index = index
        self.embedder = embedder
        self.generator = generator
        self.retriever = retriever or Retriever(settings, index, embedder)

    # ------------------------------------------------------------------ retrieval
    def retrieve(
        self,
        query: str | Conversation,
        *,
        top_k: int | None = None,
        filters: SearchFilters | None = None,
    ) -> Retrieval:
        return self.retriever.retrieve(query, top_k=top_k, filters=filters)

    def search(
        self, query: str, *, top_k: int | None = None, filters: SearchFilters | None = None
    ) -> list[SearchHit]:
        return self.retrieve(query, top_k=top_k, filters=filters).hits

    # ------------------------------------------------------------------ decisions
    def require_generator(self) -> Generator:
        if self.generator is None:
            raise ModelNotAvailableError("no generator is loaded: this service only searches")
        return self.generator

    def mode(self) -> str:
        """The answer mode in force: ``answer.mode``, with ``auto`` resolved by the model's
        size (extract under :data:`AUTO_EXTRACT_BELOW` parameters or without a model;
        generate with a larger model, or one whose size is unknown)."""
        mode = self.settings.answer.mode
        if mode != "auto":
            return mode
        if self.generator is None:
            return "extract"
        params = self.generator.parameter_count()
        return "extract" if params is not None and params < AUTO_EXTRACT_BELOW else "generate"

    def max_tokens(self, requested: int | None) -> int:
        """The answer's token budget for a request (rag/budget.py)."""
        context = self.generator.context_size if self.generator is not None else None
        return answer_tokens(requested, self.settings, context)

    def prepare(
        self,
        messages: list[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        filters: SearchFilters | None = None,
        stop: list[str] | None = None,
    ) -> Prepared:
        """Retrieve with the conversation and decide: abstain, extract (ready) or generate (the
        facts prompt)."""
        question, history = split_conversation(messages)
        mode = self.mode()
        limit = self.max_tokens(max_tokens)
        temp = self.settings.generator.temperature if temperature is None else temperature
        generator = self.require_generator() if mode == "generate" else None
        if generator is not None:
            check_fits(generator, question, limit)
        k = self.settings.answer.top_k if top_k is None else top_k
        retrieval = self.retriever.retrieve(
            Conversation(question, history), top_k=k, filters=filters, leads=True
        )
        prepared = Prepared(
            question=question,
            messages=[],
            sources=[],
            retrieved=retrieval.hits,
            max_tokens=limit,
            temperature=temp,
            abstained=False,
            stop=stop,
            timings={"retrieve_s": retrieval.seconds},
            release=retrieval.release,
            documents=retrieval.documents,
            mode=mode,
            query=retrieval.query,
        )
        if not retrieval.relevant:
            return _abstain(prepared, NOT_RELEVANT)
        if self.settings.answer.abstain_on_absent_terms:
            missing = absent_terms(question, retrieval.pool)
            if missing:
                return _abstain(prepared, ABSENT_TERMS, absent_text(missing))
        started = time.perf_counter()
        ranked = score_units(
            question,
            history,
            retrieval.hits,
            lambda texts: self.retriever.embed(texts, retrieval.embedder),
            query_vector=retrieval.vector,
            chunk_similarity=retrieval.similarity,
            leads=retrieval.leads,
        )
        prepared.timings["rank_s"] = time.perf_counter() - started
        chosen = pick(ranked, self.settings.answer.quotes)
        if not chosen:
            return _abstain(prepared, NO_SENTENCE)
        prepared.extract = build_extract(chosen)
        prepared.sources = [
            PackedSource(
                i,
                hit,
                hit.text,
                False,
                retrieval.similarity.get(hit.chunk_id),
                FLAG_INJECTION in hit.flags,
            )
            for i, hit in enumerate(retrieval.hits, start=1)
        ]
        if generator is None:
            return prepared
        started = time.perf_counter()
        prompt, facts, tokens = facts_prompt(generator, question, chosen, limit)
        prepared.timings["pack_s"] = time.perf_counter() - started
        if not facts:  # not even one fact fits beside the question: quote instead
            prepared.mode = "extract"
            return prepared
        clean = {p.index: p.text for p in prepared.sources if not p.withheld}
        leads = {
            p.index: retrieval.leads[p.hit.chunk_id]
            for p in prepared.sources
            if p.hit.chunk_id in retrieval.leads
        }
        prepared.messages = prompt
        prepared.facts = facts
        prepared.fact_sources = FactSources.of(facts, clean, leads)
        prepared.prompt_tokens = tokens
        prepared.stop = list(dict.fromkeys([*STOP_STRINGS, *(stop or [])]))
        prepared.suspect_tokens = suspect_tokens(
            question, history, retrieval.hits, prepared.sources
        )
        return prepared

    # ------------------------------------------------------------------ generation
    def generate(
        self, prepared: Prepared, cancel: threading.Event | None = None
    ) -> Iterator[StreamEvent]:
        """The model's stream for a prepared prompt, passed through the sentence gate: its
        content arrives as verified sentences (not for an answer that is ready)."""
        if prepared.ready or prepared.fact_sources is None:
            raise UsageError("this answer is ready: there is nothing to generate")
        stream = self.require_generator().stream(
            prepared.messages,
            max_tokens=prepared.max_tokens,
            temperature=prepared.temperature,
            stop=prepared.stop,
            cancel=cancel,
        )
        prepared.gate = SentenceGate(
            prepared.fact_sources, attribute=self.settings.server.attribute_sentences
        )
        return prepared.gate.filter(stream)

    def finish(
        self,
        prepared: Prepared,
        text: str = "",
        *,
        finish_reason: str = "stop",
        usage: Usage | None = None,
        timings: dict[str, float] | None = None,
    ) -> Answer:
        """The answer: the abstention, the extract, or the generated ``text`` guarded and
        verified (the extract when no sentence of it is supported)."""
        all_timings = {**prepared.timings, **(timings or {})}
        answer = Answer(
            text=prepared.abstain_text,
            citations=[],
            verified=[],
            removed=[],
            abstained=prepared.abstained,
            usage=Usage(0, 0),
            retrieved=prepared.retrieved,
            timings=all_timings,
            raw_text=prepared.abstain_text,
            release=prepared.release,
            documents=prepared.documents,
            mode=prepared.mode,
            abstain_reason=prepared.abstain_reason,
            query=prepared.query,
        )
        if prepared.abstained:
            return answer
        extract = prepared.extract
        assert extract is not None  # set whenever the answer does not abstain
        if prepared.ready:
            return _cited(answer, prepared, extract.text, extract.citations, extract)
        raw = prepared.gate.raw if prepared.gate is not None else text
        answer.raw_text = raw
        answer.usage = usage or Usage(prepared.prompt_tokens, 0)
        answer.finish_reason = finish_reason
        answer.removed = verify_citations(raw, len(prepared.sources)).removed
        answer.guard = guard_answer(raw, prepared.suspect_tokens)
        if answer.guard is not None:
            answer.text = REFUSAL_TEXT
            answer.sources = [source_entry(p, False, prepared.documents) for p in prepared.sources]
            return answer
        assert prepared.fact_sources is not None
        # the model's own text, checked whole (what the stream gate sent is the same sentences;
        # the dropped and attributed ones are recorded here)
        checked = verify_generated(
            raw, prepared.fact_sources, attribute=self.settings.server.attribute_sentences
        )
        answer.dropped = checked.dropped
        answer.attributed = checked.attributed
        if not checked.text:
            answer.fell_back = True
            return _cited(answer, prepared, extract.text, extract.citations, extract)
        return _cited(answer, prepared, checked.text, checked.citations, None)

    def answer(
        self,
        messages: list[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_k: int | None = None,
        filters: SearchFilters | None = None,
        cancel: threading.Event | None = None,
    ) -> Answer:
        """Prepare, generate when needed, finish: the whole answer in one call (the
        evaluation harness's entry). ``first_token_s`` is when the answer's first words were
        ready: the end of prepare for an abstention or an extract."""
        started = time.perf_counter()
        prepared = self.prepare(
            messages, max_tokens=max_tokens, temperature=temperature, top_k=top_k, filters=filters
        )
        if prepared.ready:
            now = time.perf_counter() - started
            return self.finish(prepared, timings={"first_token_s": now, "total_s": now})
        collected = StreamCollector(prepared.prompt_tokens)
        first: float | None = None
        gen_started = time.perf_counter()
        for event in self.generate(prepared, cancel):
            if first is None and event.delta:
                first = time.perf_counter() - started
            collected.add(event)
        now = time.perf_counter()
        answer = self.finish(
            prepared,
            collected.text,
            finish_reason=collected.finish_reason,
            usage=collected.usage,
            timings={"generate_s": now - gen_started},
        )
        # a fallback's first words are the extract's, ready at the end of generation
        answer.timings["first_token_s"] = first if first is not None else now - started
        answer.timings["total_s"] = time.perf_counter() - started
        return answer


def _abstain(prepared: Prepared, reason: str, text: str = ABSTAIN_TEXT) -> Prepared:
    prepared.abstained = True
    prepared.abstain_reason = reason
    prepared.abstain_text = text
    return prepared


def _cited(
    answer: Answer,
    prepared: Prepared,
    text: str,
    cited: list[int],
    extract: Extract | None,
) -> Answer:
    """``answer`` with its text, its citations and every source marked cited or not."""
    chosen = set(cited)
    answer.text = text
    answer.verified = list(cited)
    answer.sources = [
        source_entry(p, p.index in chosen, prepared.documents) for p in prepared.sources
    ]
    by_index = {s["index"]: s for s in answer.sources}
    answer.citations = [by_index[i] for i in cited if i in by_index]
    for a in answer.attributed:
        if a["index"] in by_index:
            by_index[a["index"]]["attributed"] = True
    if extract is not None:
        answer.quotes = [q.to_dict() for q in extract.quotes]
    return answer


def source_entry(
    packed: PackedSource, verified: bool, documents: dict[str, DocumentRecord] | None = None
) -> dict[str, Any]:
    """A source as the API lists it (``citations`` and ``sources``): the chunk, its document
    (id, path, the file's sha256 in the release answered from) and what the answer did
    with it."""
    hit = packed.hit
    doc = (documents or {}).get(hit.doc_id)
    return {
        "index": packed.index,
        "doc_id": hit.doc_id,
        "path": doc.path if doc is not None else hit.source,
        "doc_sha256": doc.sha256 if doc is not None else None,
        "source": hit.source,
        "title": hit.title,
        "page": hit.page,
        "heading_path": list(hit.heading_path),
        "chunk_id": hit.chunk_id,
        "score": hit.score,
        "similarity": None if packed.similarity is None else round(packed.similarity, 4),
        "snippet": snippet(hit.text),
        "trimmed": packed.trimmed,
        "verified": verified,
        "flags": list(hit.flags),
        "withheld": packed.withheld,
        "attributed": False,
    }
