"""Retrieval-augmented answers: retrieve, check relevance, pack the prompt, generate, verify.

``RagService`` is a plain class (no web framework): the server drives it step by step
(:meth:`prepare`, generation, :meth:`finish`) to stream, queue and cancel; the evaluation
harness calls :meth:`answer` in-process.

Relevance rule: a question is answered only when at least one retrieved chunk either has a
vector cosine similarity to the question of at least ``retrieval.min_similarity`` or was
matched by the full-text search (stemmed content words, stop words removed). Otherwise the
answer is :data:`server.prompt.ABSTAIN_TEXT`, ``abstained=True``, zero usage, and the model is
not called.

Packing: the prompt (system prompt, history, sources, question) must fit in
``generator.context_size - max_tokens`` tokens, counted with the model's own tokenizer and
chat template. The system prompt and the question always go in (else
:class:`PromptTooLongError`); earlier turns get at most half of the room left, newest first;
sources fill the rest in rank order. The lowest-ranked sources are dropped first; a source is
trimmed only when not even the best one fits whole.

Untrusted documents: every source's text goes through
:func:`enclave.security.injection.neutralise` (it cannot close its block or open a chat turn);
a source flagged ``prompt_injection`` (at ingestion, or here at query time) is *withheld*: the
model sees its header and :data:`server.prompt.WITHHELD_TEXT`, never its text. Whatever the
model writes is then checked: an answer that repeats the system prompt, or that contains a
distinctive token (a word with digits, dashes or in capitals) found only in a source with
instruction-like text, is replaced by :data:`server.prompt.REFUSAL_TEXT`. The defence does not
rely on the model obeying its rules.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from enclave.errors import ModelNotAvailableError, PromptTooLongError, UsageError
from enclave.security.injection import (
    FLAG_INJECTION,
    flag_injection,
    injection_signals,
    leaks_system_prompt,
)
from models.generator import Message, StreamEvent, Usage
from server.citations import strip_citations, verify_citations
from server.prompt import (
    ABSTAIN_TEXT,
    REFUSAL_TEXT,
    SYSTEM_PROMPT,
    WITHHELD_TEXT,
    format_source,
    format_user_turn,
)
from server.support import attribute_sentences
from store.db import fuse
from store.records import SearchFilters, SearchHit

if TYPE_CHECKING:
    from enclave.settings import Settings
    from models.embedder import Embedder
    from models.generator import Generator
    from store.db import Store

SNIPPET_CHARS = 300
#: characters of the question used for retrieval (the embedder truncates far earlier)
QUERY_CHARS = 4000
#: a trimmed source keeps at least this many tokens, or it is left out
MIN_TRIMMED_TOKENS = 32


@dataclass
class Retrieval:
    """Hits of one search with what the relevance check needs."""

    hits: list[SearchHit]
    #: cosine similarity of each hit's chunk to the question, by chunk id
    similarity: dict[str, float] = field(default_factory=dict)
    #: chunk ids the full-text search matched
    text_matches: set[str] = field(default_factory=set)
    relevant: bool = False
    seconds: float = 0.0


@dataclass
class PackedSource:
    index: int
    hit: SearchHit
    text: str
    trimmed: bool = False
    similarity: float | None = None
    #: the text was not given to the model (instruction-like text)
    withheld: bool = False


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
    #: distinctive tokens only sources with instruction-like text hold (see finish)
    suspect_tokens: set[str] = field(default_factory=set)


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
    #: (server/support.py); never written into ``text`` and never counted as ``verified``
    attributed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def flagged_sources(self) -> int:
        return sum(1 for s in self.sources if FLAG_INJECTION in s.get("flags", ()))


_DISTINCT = re.compile(r"[\w][\w-]{3,}[\w]")


def distinctive_tokens(text: str) -> set[str]:
    """Words a model would only write by copying them: with a digit, a dash or an
    underscore, or in capitals (5+ letters). Lower-cased."""
    out: set[str] = set()
    for tok in _DISTINCT.findall(text):
        if (
            any(c.isdigit() for c in tok)
            or "-" in tok
            or "_" in tok
            or (tok.isupper() and len(tok) >= 5)
        ):
            out.add(tok.lower())
    return out


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
        store: Store,
        embedder: Embedder,
        generator: Generator | None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.generator = generator
        self._embed_lock = threading.Lock()

    # ------------------------------------------------------------------ retrieval
    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        with self._embed_lock:
            return self.embedder.embed_query(text[:QUERY_CHARS])

    def retrieve(
        self, query: str, *, top_k: int | None = None, filters: SearchFilters | None = None
    ) -> Retrieval:
        """Hybrid search (the steps of ``Store.hybrid_search``: vector and full-text
        candidates, reciprocal-rank fusion, near-duplicate collapse), keeping each candidate's
        cosine similarity and full-text match for the relevance check."""
        started = time.perf_counter()
        rs = self.settings.retrieval
        k = rs.top_k if top_k is None else top_k
        if k < 1:
            raise UsageError("top_k must be at least 1")
        if not query.strip():
            raise UsageError("the query is empty")
        vector = self.embed_query(query)
        n = max(rs.candidates, k)
        dense = self.store.vector_search(vector, n, filters)
        sparse = self.store.text_search(query[:QUERY_CHARS], n, filters)
        hits = fuse(dense, sparse, top_k=k, rrf_k=rs.rrf_k, dedup_threshold=rs.dedup_threshold)
        if rs.min_score > 0:
            hits = [h for h in hits if h.score >= rs.min_score]
        if self.settings.security.flag_injection:
            for hit in hits:  # flags from ingestion, or from this check for older chunks
                for flag in flag_injection(hit.text):
                    if flag not in hit.flags:
                        hit.flags.append(flag)
        similarity: dict[str, float] = {}
        for row in dense:
            if row.get("_distance") is not None:
                similarity[row["chunk_id"]] = 1.0 - float(row["_distance"])
        for row in sparse:
            if row["chunk_id"] not in similarity and row.get("vector") is not None:
                vec = np.asarray(row["vector"], dtype=np.float32)
                similarity[row["chunk_id"]] = float(np.dot(vec, vector))
        text_matches = {row["chunk_id"] for row in sparse}
        relevant = any(
            similarity.get(h.chunk_id, -1.0) >= rs.min_similarity or h.chunk_id in text_matches
            for h in hits
        )
        return Retrieval(
            hits=hits,
            similarity=similarity,
            text_matches=text_matches,
            relevant=relevant,
            seconds=time.perf_counter() - started,
        )

    def search(
        self, query: str, *, top_k: int | None = None, filters: SearchFilters | None = None
    ) -> list[SearchHit]:
        return self.retrieve(query, top_k=top_k, filters=filters).hits

    # ------------------------------------------------------------------ prompt
    def require_generator(self) -> Generator:
        if self.generator is None:
            raise ModelNotAvailableError("no generator is loaded: this service only searches")
        return self.generator

    def effective_max_tokens(self, max_tokens: int | None) -> int:
        """The request's ``max_tokens`` clamped to ``generator.max_tokens``; when absent,
        ``server.answer_reserve_tokens`` (at most a quarter of the model's context)."""
        cap = self.settings.generator.max_tokens
        if max_tokens is None:
            default = min(self.settings.server.answer_reserve_tokens, cap)
            if self.generator is not None:  # never more than a quarter of a small context
                default = min(default, max(16, self.generator.context_size // 4))
            return default
        if max_tokens < 1:
            raise UsageError("max_tokens must be at least 1")
        return min(max_tokens, cap)

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
        limit = self.effective_max_tokens(max_tokens)
        temp = self.settings.generator.temperature if temperature is None else temperature
        self._check_fits(generator, question, limit)
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
            )
        started = time.perf_counter()
        packed, prompt, tokens = self._pack(generator, question, history, retrieval, limit)
        timings["pack_s"] = time.perf_counter() - started
        suspect: set[str] = set()
        for hit in retrieval.hits:
            if FLAG_INJECTION in hit.flags or injection_signals(hit.text):
                suspect |= distinctive_tokens(hit.text)
        if suspect:  # tokens the user or a clean source also gave are fair to repeat
            clean = [p.text for p in packed if not p.withheld and not injection_signals(p.text)]
            suspect -= distinctive_tokens("\n".join([question, *clean]))
            for message in history:
                suspect -= distinctive_tokens(message["content"])
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
            suspect_tokens=suspect,
        )

    @staticmethod
    def _check_fits(generator: Generator, question: str, max_tokens: int) -> int:
        """Tokens of the system prompt and the question alone; PromptTooLongError when even
        they leave no room for ``max_tokens``."""
        budget = generator.context_size - max_tokens
        prompt: list[Message] = [
            {"role": "system", "content": SYSTEM_PROMPT},
            {"role": "user", "content": format_user_turn(question, [])},
        ]
        base = generator.count_chat_tokens(prompt)
        if base > budget:
            raise PromptTooLongError(
                f"the question and the system prompt need {base} tokens, but the model's "
                f"context of {generator.context_size} tokens leaves {budget} after reserving "
                f"{max_tokens} for the answer; shorten the question or lower max_tokens"
            )
        return base

    def _pack(
        self,
        generator: Generator,
        question: str,
        history: list[Message],
        retrieval: Retrieval,
        max_tokens: int,
    ) -> tuple[list[PackedSource], list[Message], int]:
        budget = generator.context_size - max_tokens
        system: Message = {"role": "system", "content": SYSTEM_PROMPT}

        def build(hist: list[Message], blocks: list[str]) -> list[Message]:
            user: Message = {"role": "user", "content": format_user_turn(question, blocks)}
            return [system, *hist, user]

        base = self._check_fits(generator, question, max_tokens)
        # earlier turns: newest first, at most half of the room left
        hist = list(history)
        used = base
        if hist:
            cap = (budget - base) // 2
            used = generator.count_chat_tokens(build(hist, []))
            while hist and used - base > cap:
                hist.pop(0)
                while hist and hist[0]["role"] != "user":
                    hist.pop(0)
                used = generator.count_chat_tokens(build(hist, []))
        # sources in rank order; each costs its block plus the blank line between blocks
        room = budget - used
        packed: list[PackedSource] = []
        for rank, hit in enumerate(retrieval.hits, start=1):
            if FLAG_INJECTION in hit.flags:  # never shown to the model
                block = format_source(rank, hit, WITHHELD_TEXT)
                cost = generator.count_tokens(block) + 2
                if cost <= room:
                    source = self._packed(rank, hit, WITHHELD_TEXT, False, retrieval)
                    source.withheld = True
                    packed.append(source)
                    room -= cost
                continue
            block = format_source(rank, hit)
            cost = generator.count_tokens(block) + 2
            if cost <= room:
                packed.append(self._packed(rank, hit, hit.text, False, retrieval))
                room -= cost
                continue
            if not packed:
                trimmed = self._trim(generator, rank, hit, room)
                if trimmed is not None:
                    packed.append(self._packed(rank, hit, trimmed, True, retrieval))
            break
        # the exact count, with the chat template; drop (or trim) from the end until it fits
        while True:
            blocks = [format_source(p.index, p.hit, p.text) for p in packed]
            prompt = build(hist, blocks)
            total = generator.count_chat_tokens(prompt)
            if total <= budget or not packed:
                break
            last = packed[-1]
            if len(packed) == 1 and not last.withheld:
                over = total - budget
                keep = generator.count_tokens(last.text) - over - 8
                shorter = _cut_to_tokens(generator, last.text, keep)
                if shorter is None or shorter == last.text:
                    packed.pop()
                else:
                    last.text, last.trimmed = shorter, True
            else:
                packed.pop()
        if total > budget:  # pragma: no cover - base fitted, so no sources always fits
            raise PromptTooLongError(f"the prompt needs {total} tokens; {budget} are available")
        return packed, prompt, total

    @staticmethod
    def _packed(
        index: int, hit: SearchHit, text: str, trimmed: bool, retrieval: Retrieval
    ) -> PackedSource:
        return PackedSource(
            index=index,
            hit=hit,
            text=text,
            trimmed=trimmed,
            similarity=retrieval.similarity.get(hit.chunk_id),
        )

    @staticmethod
    def _trim(generator: Generator, index: int, hit: SearchHit, room: int) -> str | None:
        overhead = generator.count_tokens(format_source(index, hit, "")) + 2
        return _cut_to_tokens(generator, hit.text, room - overhead)

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
        """Verify the citations of a generated ``text`` and build the answer."""
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
            )
        guard = self.guard_answer(text, prepared)
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
                sources=[source_entry(p, False) for p in prepared.sources],
                finish_reason=finish_reason,
                raw_text=text,
                guard=guard,
            )
        check = verify_citations(text, len(prepared.sources))
        # a withheld source gave the model no text: citing it supports nothing
        withheld = {p.index for p in prepared.sources if p.withheld}
        verified = [i for i in check.verified if i not in withheld]
        cited = set(verified)
        sources = [source_entry(p, p.index in cited) for p in prepared.sources]
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
            with self._embed_lock:
                return self.embedder.embed(list(texts))

        return [a.to_dict() for a in attribute_sentences(text, passages, embed)]

    @staticmethod
    def guard_answer(text: str, prepared: Prepared) -> str | None:
        """Why ``text`` must not reach the user, or None: it quotes the system prompt, or it
        repeats a distinctive token that only a source with instruction-like text holds."""
        if leaks_system_prompt(text, SYSTEM_PROMPT):
            return "system_prompt_leak"
        if prepared.suspect_tokens:
            said = {t.lower() for t in re.findall(r"[\w-]+", text)}
            said |= distinctive_tokens(text)
            if said & prepared.suspect_tokens:
                return "injected_text"
        return None

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
        parts: list[str] = []
        finish = "stop"
        usage = Usage(prepared.prompt_tokens, 0)
        first: float | None = None
        gen_started = time.perf_counter()
        for event in self.generate(prepared, cancel):
            if first is None and event.delta:
                first = time.perf_counter() - started
            parts.append(event.delta)
            if event.finish_reason is not None:
                finish = event.finish_reason
            if event.usage is not None:
                usage = event.usage
        now = time.perf_counter()
        timings = {
            "first_token_s": first if first is not None else now - started,
            "generate_s": now - gen_started,
            "total_s": now - started,
        }
        return self.finish(
            prepared, "".join(parts), finish_reason=finish, usage=usage, timings=timings
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


def source_entry(packed: PackedSource, verified: bool) -> dict[str, Any]:
    """A source as the API lists it (``citations`` and ``sources``)."""
    hit = packed.hit
    return {
        "index": packed.index,
        "doc_id": hit.doc_id,
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


def _cut_to_tokens(generator: Generator, text: str, tokens: int) -> str | None:
    """The longest word-boundary prefix of ``text`` within ``tokens`` model tokens (a few
    proportional guesses, then checked), or None when under :data:`MIN_TRIMMED_TOKENS`."""
    if tokens < MIN_TRIMMED_TOKENS:
        return None
    total = generator.count_tokens(text)
    if total <= tokens:
        return text
    chars = int(len(text) * tokens / max(total, 1))
    for _ in range(8):
        cut = text.rfind(" ", 0, chars)
        candidate = (text[: cut if cut > 0 else chars]).rstrip() + " …"
        if generator.count_tokens(candidate) <= tokens:
            return candidate
        chars = int(chars * 0.85)
        if chars <= 0:
            break
    return None
