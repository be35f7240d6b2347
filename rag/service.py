"""Answering: retrieve, check relevance, pack the prompt, generate, verify, attribute.

``RagService`` is plain Python (no web framework): the server drives it step by step
(:meth:`RagService.prepare`, :meth:`RagService.generate`, :meth:`RagService.finish`) to
stream, queue and cancel; the evaluation harness calls :meth:`RagService.answer` in-process.

* Retrieval and the relevance rule: ``rag/retrieval.py``. A question with no relevant hit is
  answered :data:`rag.prompt.ABSTAIN_TEXT`, ``abstained=True``, zero usage, and the model is
  not called.
* The answer's token budget: ``rag/budget.py``. Packing the prompt within the model's
  context: ``rag/packing.py``.
* After generation, the answer guard (``rag/answer_guard.py``) may replace the text by
  :data:`rag.prompt.REFUSAL_TEXT`; otherwise the ``[n]`` markers are verified against the
  sources given (``rag/citations.py``) and, with ``server.attribute_sentences``, the
  sentences left without a valid marker are matched to the source that supports them
  (``rag/attribution.py``), listed apart from the model's own citations.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from enclave.errors import ModelNotAvailableError, UsageError
from enclave.security.injection import FLAG_INJECTION
from models.generator import Message, StreamCollector, StreamEvent, Usage
from rag.answer_guard import guard_answer, suspect_tokens
from rag.attribution import attribute_sentences
from rag.budget import answer_tokens
from rag.citations import strip_citations, verify_citations
from rag.packing import PackedSource, check_fits, pack
from rag.prompt import ABSTAIN_TEXT, REFUSAL_TEXT
from rag.retrieval import Retrieval, Retriever
from store.records import DocumentRecord, SearchFilters, SearchHit

if TYPE_CHECKING:
    from enclave.settings import Settings
    from models.embedder import Embedder
    from models.generator import Generator
    from store.reader import IndexSource

SNIPPET_CHARS = 300


@dataclass
class Prepared:
    """Everything decided before generation: the prompt, its sources, the limits."""

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
    #: every source given to the model, ``verified`` telling whether the answer cites it
    sources: list[dict[str, Any]] = field(default_factory=list)
    finish_reason: str = "stop"
    #: the model's raw text before invalid markers were removed
    raw_text: str = ""
    #: why the model's answer was replaced by a refusal: "system_prompt_leak",
    #: "injected_text", or None
    guard: str | None = None
    #: sentences without a citation marker matched to the source that supports them
    #: (rag/attribution.py); never written into ``text`` and never counted as ``verified``
    attributed: list[dict[str, Any]] = field(default_factory=list)
    #: the release the answer was served from (lineage), and its documents' rows there
    release: str | None = None
    documents: dict[str, DocumentRecord] = field(default_factory=dict)

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
    """Retrieval, prompt packing, generation and citation checks over one index."""

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
        self, query: str, *, top_k: int | None = None, filters: SearchFilters | None = None
    ) -> Retrieval:
        return self.retriever.retrieve(query, top_k=top_k, filters=filters)

    def search(
        self, query: str, *, top_k: int | None = None, filters: SearchFilters | None = None
    ) -> list[SearchHit]:
        return self.retrieve(query, top_k=top_k, filters=filters).hits

    # ------------------------------------------------------------------ prompt
    def require_generator(self) -> Generator:
        if self.generator is None:
            raise ModelNotAvailableError("no generator is loaded: this service only searches")
        return self.generator

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
        """Retrieve and pack: the prompt to generate from, or an abstention."""
        generator = self.require_generator()
        question, history = split_conversation(messages)
        limit = self.max_tokens(max_tokens)
        temp = self.settings.generator.temperature if temperature is None else temperature
        check_fits(generator, question, limit)
        retrieval = self.retrieve(question, top_k=top_k, filters=filters)
        timings = {"retrieve_s": retrieval.seconds}
        if not retrieval.relevant:
            return Prepared(
                question=question,
                messages=[],
                sources=[],
                retrieved=retrieval.hits,
                max_tokens=limit,
                temperature=temp,
                abstained=True,
                timings=timings,
                release=retrieval.release,
                documents=retrieval.documents,
            )
        started = time.perf_counter()
        packed, prompt, tokens = pack(generator, question, history, retrieval, limit)
        timings["pack_s"] = time.perf_counter() - started
        return Prepared(
            question=question,
            messages=prompt,
            sources=packed,
            retrieved=retrieval.hits,
            max_tokens=limit,
            temperature=temp,
            abstained=False,
            prompt_tokens=tokens,
            stop=stop,
            timings=timings,
            suspect_tokens=suspect_tokens(question, history, retrieval.hits, packed),
            release=retrieval.release,
            documents=retrieval.documents,
        )

    # ------------------------------------------------------------------ generation
    def generate(
        self, prepared: Prepared, cancel: threading.Event | None = None
    ) -> Iterator[StreamEvent]:
        """The model's stream for a prepared prompt (not for an abstention)."""
        if prepared.abstained:
            raise UsageError("an abstained question has nothing to generate")
        return self.require_generator().stream(
            prepared.messages,
            max_tokens=prepared.max_tokens,
            temperature=prepared.temperature,
            stop=prepared.stop,
            cancel=cancel,
        )

    def finish(
        self,
        prepared: Prepared,
        text: str,
        *,
        finish_reason: str = "stop",
        usage: Usage | None = None,
        timings: dict[str, float] | None = None,
    ) -> Answer:
        """Guard, verify the citations of and attribute a generated ``text``: the answer."""
        all_timings = {**prepared.timings, **(timings or {})}
        if prepared.abstained:
            return Answer(
                text=ABSTAIN_TEXT,
                citations=[],
                verified=[],
                removed=[],
                abstained=True,
                usage=Usage(0, 0),
                retrieved=prepared.retrieved,
                timings=all_timings,
                sources=[],
                finish_reason="stop",
                raw_text=ABSTAIN_TEXT,
                release=prepared.release,
                documents=prepared.documents,
            )
        guard = guard_answer(text, prepared.suspect_tokens)
        if guard is not None:
            return Answer(
                text=REFUSAL_TEXT,
                citations=[],
                verified=[],
                removed=[],
                abstained=False,
                usage=usage or Usage(prepared.prompt_tokens, 0),
                retrieved=prepared.retrieved,
                timings=all_timings,
                sources=[source_entry(p, False, prepared.documents) for p in prepared.sources],
                finish_reason=finish_reason,
                raw_text=text,
                guard=guard,
                release=prepared.release,
                documents=prepared.documents,
            )
        check = verify_citations(text, len(prepared.sources))
        # a withheld source gave the model no text: citing it supports nothing
        withheld = {p.index for p in prepared.sources if p.withheld}
        verified = [i for i in check.verified if i not in withheld]
        cited = set(verified)
        sources = [source_entry(p, p.index in cited, prepared.documents) for p in prepared.sources]
        by_index = {s["index"]: s for s in sources}
        citations = [by_index[i] for i in verified]
        started = time.perf_counter()
        attributed = self.attribute(check.text, prepared)
        if attributed:
            all_timings["attribute_s"] = time.perf_counter() - started
        for a in attributed:
            by_index[a["index"]]["attributed"] = True
        return Answer(
            text=check.text.strip(),
            citations=citations,
            verified=verified,
            removed=check.removed,
            abstained=False,
            usage=usage or Usage(prepared.prompt_tokens, 0),
            retrieved=prepared.retrieved,
            timings=all_timings,
            sources=sources,
            finish_reason=finish_reason,
            raw_text=text,
            attributed=attributed,
            release=prepared.release,
            documents=prepared.documents,
        )

    def attribute(self, text: str, prepared: Prepared) -> list[dict[str, Any]]:
        """The answer's uncited sentences matched to the sources given to the model (not the
        withheld ones), when ``server.attribute_sentences`` is on."""
        if not self.settings.server.attribute_sentences or not text.strip():
            return []
        passages = {p.index: p.text for p in prepared.sources if not p.withheld}
        if not passages:
            return []

        def embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
            return self.retriever.embed(texts)

        return [a.to_dict() for a in attribute_sentences(text, passages, embed)]

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
        """Retrieve, generate and verify in one call (the evaluation harness's entry)."""
        started = time.perf_counter()
        prepared = self.prepare(
            messages, max_tokens=max_tokens, temperature=temperature, top_k=top_k, filters=filters
        )
        if prepared.abstained:
            return self.finish(prepared, "", timings={"total_s": time.perf_counter() - started})
        collected = StreamCollector(prepared.prompt_tokens)
        first: float | None = None
        gen_started = time.perf_counter()
        for event in self.generate(prepared, cancel):
            if first is None and event.delta:
                first = time.perf_counter() - started
            collected.add(event)
        now = time.perf_counter()
        timings = {
            "first_token_s": first if first is not None else now - started,
            "generate_s": now - gen_started,
            "total_s": now - started,
        }
        return self.finish(
            prepared,
            collected.text,
            finish_reason=collected.finish_reason,
            usage=collected.usage,
            timings=timings,
        )


def split_conversation(messages: list[Message]) -> tuple[str, list[Message]]:
    """The question (the last message, from the user) and the earlier user/assistant turns.

    System messages from the caller are ignored: Enclave's own system prompt governs. Earlier
    answers lose their citation markers, whose numbers referred to other sources.
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
        "snippet": snippet(hit.text if packed.withheld else packed.text),
        "trimmed": packed.trimmed,
        "verified": verified,
        "flags": list(hit.flags),
        "withheld": packed.withheld,
        "attributed": False,
    }
