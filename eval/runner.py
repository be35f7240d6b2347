"""Running a dataset's queries: retrieval for every query, answers for a seeded sample.

Two back ends with one shape: in-process (the eval index, ranked by the server's own retrieval
path ``rag.retrieval`` with its settings, answered by ``rag.service.RagService``) and HTTP (a
running Enclave server's ``/v1/search`` and ``/v1/chat/completions``).
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from enclave.errors import EnclaveError, UsageError
from eval.dataset import Query
from eval.retrieval_metrics import dedupe_ranking
from store.records import SearchFilters

if TYPE_CHECKING:
    import httpx

    from enclave.settings import Settings
    from eval.index import DocMapper
    from models.embedder import Embedder
    from store.reader import TableReader

log = logging.getLogger(__name__)

Advance = Callable[[int], None]

#: chunks fetched per query for every document ranked (documents repeat across chunks)
CHUNKS_PER_DOC = 3


def _noop(_: int) -> None:
    return None


def chunk_depth(settings: Settings, depth: int) -> int:
    return max(depth * CHUNKS_PER_DOC, settings.retrieval.top_k)


@dataclass
class RetrievalRun:
    #: query id -> ranked, de-duplicated corpus ids (at most ``depth``)
    run: dict[str, list[str]]
    depth: int
    chunks_per_query: int
    queries: int
    seconds: float
    embed_seconds: float = 0.0
    search_seconds: float = 0.0
    unmapped_hits: int = 0
    #: CPU time of the whole process meanwhile (all threads): the figure that load elsewhere
    #: on the machine does not inflate
    cpu_seconds: float = 0.0

    @property
    def queries_per_s(self) -> float:
        return self.queries / self.seconds if self.seconds > 0 else 0.0


def retrieve_local(
    queries: Sequence[Query],
    store: TableReader,
    embedder: Embedder,
    settings: Settings,
    mapper: DocMapper,
    *,
    depth: int = 10,
    threads: int = 2,
    advance: Advance = _noop,
    filters: SearchFilters | None = None,
) -> RetrievalRun:
    """Rank every query exactly as the server does (``rag.retrieval.Retriever``, with the
    server's retrieval settings and ``chunk_depth`` hits; a follow-up with its history, as
    the answer stage retrieves it), then map the hits to corpus ids. ``filters`` (a key's
    groups, ``--as-key``) go to the store as its prefilter."""
    from rag.conversation import conversation_of
    from rag.retrieval import Retriever

    n_chunks = chunk_depth(settings, depth)
    retriever = Retriever(settings, store, embedder)
    t0 = time.perf_counter()
    c0 = time.process_time()
    asks = [conversation_of(q.messages()) for q in queries]
    phases: dict[str, float] = {}
    results = retriever.retrieve_many(
        asks, top_k=n_chunks, filters=filters, threads=threads, advance=advance, timings=phases
    )
    seconds = time.perf_counter() - t0
    unmapped = 0
    run: dict[str, list[str]] = {}
    for q, result in zip(queries, results, strict=True):
        ids = [mapper(h.source) for h in result.hits]
        unmapped += sum(1 for d in ids if d is None)
        run[q.id] = dedupe_ranking(ids)[:depth]
    return RetrievalRun(
        run=run,
        depth=depth,
        chunks_per_query=n_chunks,
        queries=len(queries),
        seconds=seconds,
        embed_seconds=phases.get("embed_s", 0.0),
        search_seconds=phases.get("search_s", 0.0),
        unmapped_hits=unmapped,
        cpu_seconds=time.process_time() - c0,
    )


# ---------------------------------------------------------------------------------- HTTP
class HttpClient:
    """A thin client for a running Enclave server; every failure is a clear error."""

    def __init__(self, url: str, api_key: str | None = None, timeout_s: float = 600.0) -> None:
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = url.rstrip("/")
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    def close(self) -> None:
        self._client.close()

    def _fail(self, path: str, response: httpx.Response) -> EnclaveError:
        try:
            message = response.json()["error"]["message"]
        except Exception:
            message = response.text[:300]
        if response.status_code in (401, 403):
            return UsageError(
                f"{self.url}{path}: {response.status_code} {message} (pass --api-key KEY)"
            )
        return EnclaveError(f"{self.url}{path}: HTTP {response.status_code}: {message}")

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        import httpx

        try:
            response = self._client.post(path, json=body)
        except httpx.HTTPError as exc:
            raise UsageError(f"cannot reach {self.url}{path}: {exc}") from exc
        if response.status_code != 200:
            raise self._fail(path, response)
        data: dict[str, Any] = response.json()
        return data

    def get(self, path: str) -> dict[str, Any]:
        import httpx

        try:
            response = self._client.get(path)
        except httpx.HTTPError as exc:
            raise UsageError(f"cannot reach {self.url}{path}: {exc}") from exc
        if response.status_code != 200:
            raise self._fail(path, response)
        data: dict[str, Any] = response.json()
        return data

    def stream_chat(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], float | None]:
        """POST a streaming chat request; the parsed SSE chunks and the first-token time."""
        import httpx

        chunks: list[dict[str, Any]] = []
        first: float | None = None
        t0 = time.perf_counter()
        try:
            with self._client.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    response.read()
                    raise self._fail("/v1/chat/completions", response)
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    try:
                        chunk = json.loads(payload)
                    except json.JSONDecodeError:
                        continue
                    if first is None and any(
                        (c.get("delta") or {}).get("content") for c in chunk.get("choices") or []
                    ):
                        first = time.perf_counter() - t0
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise UsageError(f"cannot reach {self.url}/v1/chat/completions: {exc}") from exc
        return chunks, first


def retrieve_http(
    queries: Sequence[Query],
    client: HttpClient,
    mapper: DocMapper,
    *,
    depth: int = 10,
    chunks_per_query: int = 30,
    threads: int = 2,
    advance: Advance = _noop,
) -> RetrievalRun:
    """``POST /v1/search`` for each query; hits map to corpus ids by their ``source``."""
    unmapped = 0

    from rag.conversation import conversation_of

    def one(q: Query) -> list[str]:
        nonlocal unmapped
        # a follow-up is searched with its condensed query (the server's answer stage also
        # searches the new turn alone, which /v1/search cannot be told)
        query = conversation_of(q.messages()).query
        data = client.post("/v1/search", {"query": query, "top_k": chunks_per_query})
        ids = [mapper(str(h.get("source") or "")) for h in data.get("results") or []]
        unmapped += sum(1 for d in ids if d is None)
        return dedupe_ranking(ids)[:depth]

    run: dict[str, list[str]] = {}
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for q, docs in zip(queries, pool.map(one, queries), strict=True):
            run[q.id] = docs
            advance(1)
    seconds = time.perf_counter() - t0
    return RetrievalRun(
        run=run,
        depth=depth,
        chunks_per_query=chunks_per_query,
        queries=len(queries),
        seconds=seconds,
        search_seconds=seconds,
        unmapped_hits=unmapped,
    )


# ------------------------------------------------------------------------------- answers
@dataclass
class AnswerSample:
    """One generated answer with what the metrics need."""

    query_id: str
    question: str
    references: list[str]
    text: str
    #: answer metrics by fact (eval/dataset.py): keys, an expected abstention, a follow-up
    keys: list[str] = field(default_factory=list)
    unanswerable: bool = False
    follow_up: bool = False
    #: texts of the chunks retrieved for the answer (the key-fact ceiling looks in them)
    retrieved_texts: list[str] = field(default_factory=list)
    verified: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    abstained: bool = False
    #: marker number -> the passage text it refers to
    sources: dict[int, str] = field(default_factory=dict)
    #: corpus ids of the passages the answer was given, in order
    source_docs: list[str | None] = field(default_factory=list)
    first_token_s: float | None = None
    total_s: float | None = None
    #: how the answer was made: "extract" or "generate" ("" when unknown)
    mode: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str = ""


def sample_queries(queries: Sequence[Query], n: int, seed: int) -> list[Query]:
    """``n`` queries with reference answers, keys or an expected abstention, drawn with
    ``seed``, in dataset order."""
    pool = [i for i, q in enumerate(queries) if q.answers or q.scored_by_fact]
    chosen = pool if n >= len(pool) else sorted(random.Random(seed).sample(pool, n))
    return [queries[i] for i in chosen]


def _passages_of(sources: Sequence[dict[str, Any]], texts: dict[str, str]) -> dict[int, str]:
    """Marker number -> passage text for the sources an answer was given (each source entry
    has ``index``, ``chunk_id`` and a ``snippet``; the full chunk text when known)."""
    out: dict[int, str] = {}
    for s in sources:
        n = s.get("index")
        if not isinstance(n, int) or isinstance(n, bool):
            continue
        text = texts.get(str(s.get("chunk_id") or "")) or s.get("text") or s.get("snippet")
        if isinstance(text, str) and text:
            out[n] = text
    return out


def new_sample(query: Query) -> AnswerSample:
    return AnswerSample(
        query_id=query.id,
        question=query.text,
        references=query.answers,
        text="",
        keys=list(query.keys),
        unanswerable=query.unanswerable,
        follow_up=query.follow_up,
    )


def answer_local(
    rag: Any, query: Query, mapper: DocMapper, filters: SearchFilters | None = None
) -> AnswerSample:
    """One answer from an in-process :class:`rag.service.RagService` (as the key whose
    ``filters`` are given, ``--as-key``); a follow-up is asked after its history."""
    sample = new_sample(query)
    t0 = time.perf_counter()
    try:
        answer = rag.answer(query.messages(), filters=filters)
    except EnclaveError as exc:
        sample.error = exc.message
        sample.total_s = time.perf_counter() - t0
        return sample
    except Exception as exc:  # one failed generation must not lose a long run
        log.exception("answering %s failed", query.id)
        sample.error = f"{type(exc).__name__}: {exc}"
        sample.total_s = time.perf_counter() - t0
        return sample
    sample.text = answer.text
    sample.mode = str(getattr(answer, "mode", "") or "")
    sample.verified = list(answer.verified)
    sample.removed = list(answer.removed)
    sample.abstained = bool(answer.abstained)
    texts = {h.chunk_id: h.text for h in answer.retrieved}
    sample.retrieved_texts = [h.text for h in answer.retrieved]
    given = list(getattr(answer, "sources", None) or answer.citations)
    sample.sources = _passages_of(given, texts)
    by_chunk = {h.chunk_id: h for h in answer.retrieved}
    sample.source_docs = [
        mapper(str(s.get("source") or getattr(by_chunk.get(s.get("chunk_id")), "source", "")))
        for s in given
    ]
    timings = dict(answer.timings or {})
    sample.first_token_s = timings.get("first_token_s")
    sample.total_s = timings.get("total_s", time.perf_counter() - t0)
    sample.prompt_tokens = int(answer.usage.prompt_tokens)
    sample.completion_tokens = int(answer.usage.completion_tokens)
    return sample


def answer_http(
    client: HttpClient, query: Query, mapper: DocMapper, *, search_top_k: int = 30
) -> AnswerSample:
    """One streamed answer from ``/v1/chat/completions``. The final chunk carries usage,
    ``sources`` (what the model was given), ``citations`` and ``enclave`` (verified, removed,
    abstained, the cleaned text); full passage texts come from ``/v1/search`` by chunk id
    (the API lists 300-character snippets)."""
    sample = new_sample(query)
    body: dict[str, Any] = {
        "messages": query.messages(),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    t0 = time.perf_counter()
    try:
        chunks, first = client.stream_chat(body)
    except EnclaveError as exc:
        if isinstance(exc, UsageError):
            raise
        sample.error = exc.message
        sample.total_s = time.perf_counter() - t0
        return sample
    sample.total_s = time.perf_counter() - t0
    sample.first_token_s = first
    parts: list[str] = []
    sources: list[dict[str, Any]] = []
    meta: dict[str, Any] = {}
    for chunk in chunks:
        if isinstance(chunk.get("error"), dict):
            sample.error = str(chunk["error"].get("message") or "the generation failed")
        for choice in chunk.get("choices") or []:
            content = (choice.get("delta") or {}).get("content")
            if content:
                parts.append(content)
        if isinstance(chunk.get("sources"), list):
            sources = chunk["sources"]
        elif isinstance(chunk.get("citations"), list) and not sources:
            sources = chunk["citations"]
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            sample.prompt_tokens = int(usage.get("prompt_tokens") or 0)
            sample.completion_tokens = int(usage.get("completion_tokens") or 0)
        if isinstance(chunk.get("enclave"), dict):
            meta.update(chunk["enclave"])
    texts: dict[str, str] = {}
    if sources:
        try:
            found = client.post("/v1/search", {"query": query.text, "top_k": search_top_k})
            texts = {
                str(h.get("chunk_id")): str(h.get("text") or "") for h in found.get("results") or []
            }
        except EnclaveError as exc:  # snippets still allow a (weaker) check
            log.warning("could not fetch source texts: %s", exc.message)
    apply_http_answer(sample, "".join(parts), sources, meta, texts, mapper)
    sample.retrieved_texts = list(sample.sources.values())
    return sample


def apply_http_answer(
    sample: AnswerSample,
    streamed: str,
    sources: list[dict[str, Any]],
    meta: dict[str, Any],
    texts: dict[str, str],
    mapper: DocMapper,
) -> None:
    """Fill a sample from an HTTP answer's streamed text, sources and Enclave extras."""
    from rag.citations import markers

    content = meta.get("content")
    sample.text = str(content) if isinstance(content, str) else streamed
    sample.sources = _passages_of(sources, texts)
    sample.source_docs = [mapper(str(s.get("source") or "")) for s in sources]
    if isinstance(meta.get("verified"), list):
        sample.verified = [int(x) for x in meta["verified"]]
    else:
        numbers = {s.get("index") for s in sources}
        sample.verified = [n for n in dict.fromkeys(markers(sample.text)) if n in numbers]
    if isinstance(meta.get("removed"), list):
        sample.removed = [int(x) for x in meta["removed"]]
    sample.abstained = bool(meta.get("abstained", False))
    sample.mode = str(meta.get("mode") or "")
