"""The calling thread's side of a run: chunk, embed in batches across documents, hand over.

The embedder is loaded only when some document needs embedding (:class:`LazyEmbedder`): a run
over an unchanged corpus never imports torch. Loading it binds the index to it; before any
work, :meth:`LazyEmbedder.check_index` refuses an index built with another embedder.

:class:`Embedding` drains the producer's queue (ingest/produce.py). Each parsed document is cut
into chunks here, with the embedder's tokenizer, which is not shared between threads, and cut
*as its chunks are needed* (:class:`~ingest.chunk.ChunkStream`, at most
``ingest.max_chunks_per_document`` of them): a new document's first
:data:`SMALL_DOCUMENT_CHUNKS` chunks are cut when it is taken, the rest of a bigger one only
when the embedder is ready for them, so memory never holds more than a few batches of one
document's chunks, whatever its size.

While fewer than a model batch of chunks (``embedder.batch_size``) wait and no document is
still being cut, the next item is awaited; up to :data:`PENDING_BATCHES` batches, an item is
taken if one is ready and chunks are embedded otherwise; past that the embedder catches up
first. Each embedding call takes up to four batches of chunks across documents, documents
whose chunks are all cut first and those with the fewest first, so small documents overtake
a big one; within the call, chunks are sorted by length so that each model batch pads little
(a partial batch only when nothing more can come).

Documents reach the writer (ingest/write.py) in the order they finish, once all their chunks
are embedded; a document still being cut hands over a *slice* every
``ingest.write_batch_chunks`` embedded chunks, which the writer commits at once, together
with whatever small documents are ready. Failed, empty and touched files reach the writer at
once, and unchanged files are only counted.
"""

from __future__ import annotations

import enum
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from enclave.errors import EmbedderMismatchError
from enclave.settings import Settings
from ingest.changes import expected_embedder_name, same_embedder
from ingest.chunk import Chunker, ChunkingError, ChunkStream
from ingest.parse import CHARS_PER_CHUNK_TOKEN, document_char_budget
from ingest.produce import Item, Producer
from ingest.write import Writer
from models.embedder import Embedder
from models.variants import mismatch_message

if TYPE_CHECKING:
    from store.db import Store

#: chunks waiting for the embedder (in model batches) before the queue is left alone
PENDING_BATCHES = 16
#: a new document's first chunks are cut when it is taken: one with no more than this many is
#: complete at once and goes ahead of any document still being cut
SMALL_DOCUMENT_CHUNKS = 256
#: how long the calling thread waits for the producer before it looks at the writer again
POLL_S = 0.5


def build_settings(settings: Settings, embedder_name: str | None = None) -> dict[str, object]:
    """What a table set is built with, kept in its ``enclave-index.json``: the embedder's
    settings (a server loads the same embedder from them when the set goes live), the
    chunking and the settings that change what parsing reads (OCR, PII redaction); a change
    of any of them is a re-index (:func:`ingest.reindex.build_drift`). With ``embedder_name``
    (the embedder actually loaded), the variant it records (models/variants.py) replaces
    ``auto``, so the settings load that very variant."""
    from models.variants import variant_of

    embedder = settings.embedder.model_dump(mode="json", exclude={"cache_dir"})
    recorded = variant_of(embedder_name) if embedder_name else None
    if recorded:
        embedder["variant"] = recorded
    return {
        "embedder": embedder,
        "chunk_tokens": settings.ingest.chunk_tokens,
        "chunk_overlap": settings.ingest.chunk_overlap,
        "parse": parse_settings(settings),
    }


def parse_settings(settings: Settings) -> dict[str, object]:
    """The settings that change the text parsing gives every document: a table set records
    them (:func:`build_settings`)."""
    return {
        "ocr": settings.ingest.ocr,
        "ocr_languages": settings.ingest.ocr_languages,
        "ocr_dpi": settings.ingest.ocr_dpi,
        "redact_pii": settings.security.redact_pii,
    }


class LazyEmbedder:
    """Loads the embedder (and binds the index to it) the first time a chunk needs it."""

    def __init__(self, settings: Settings, store: Store, embedder: Embedder | None) -> None:
        self._settings = settings
        self._store = store
        self._embedder = embedder
        self._lock = threading.Lock()
        self._bound = False
        self.load_seconds = 0.0
        #: the name rows are written with: the loaded embedder's, else the one the index has
        self.name = ""

    @property
    def loaded(self) -> bool:
        return self._embedder is not None

    def get(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                from models.loading import load_embedder
                from models.variants import for_index

                t0 = time.perf_counter()
                settings = for_index(self._settings.embedder, self._store.embedder_name)
                self._embedder = load_embedder(settings)
                self.load_seconds = time.perf_counter() - t0
            if not self._bound:
                self._refuse_other(self._embedder.name)
                self._store.bind_embedder(
                    self._embedder.name,
                    self._embedder.dimension,
                    build_settings(self._settings, self._embedder.name),
                )
                self._bound = True
            self.name = self._embedder.name
            return self._embedder

    def check_index(self) -> None:
        """Refuse a different embedder (or another variant of it) up front, before any work
        (exit code 2). Under ``embedder.variant = "auto"`` the index's variant is used."""
        if self.loaded:
            self.get()  # binds: raises EmbedderMismatchError
            return
        bound = self._store.embedder_name
        expected = expected_embedder_name(self._settings, bound)
        self.name = bound or ""
        if bound and expected and not same_embedder(bound, expected):
            raise EmbedderMismatchError(
                mismatch_message(bound, expected, where=str(self._store.location))
            )

    def _refuse_other(self, name: str) -> None:
        bound = self._store.embedder_name
        if bound and not same_embedder(bound, name):
            raise EmbedderMismatchError(
                mismatch_message(bound, name, where=str(self._store.location))
            )


class _Nothing(enum.Enum):
    """No item taken this turn: embed what waits instead."""

    NOW = 0


class Embedding:
    """Chunks and embeds the documents of one run and hands them to the writer."""

    def __init__(
        self, settings: Settings, lazy: LazyEmbedder, writer: Writer, stages: dict[str, float]
    ) -> None:
        self.settings = settings
        self.lazy = lazy
        self.writer = writer
        self.stages = stages
        self._chunker: Chunker | None = None
        self._producer: Producer | None = None

    def drain(self, producer: Producer) -> None:
        """Take every item of ``producer`` until its end; re-raise the error it hands over."""
        self._producer = producer
        pending: list[Item] = []  # documents whose chunks are not all written yet
        done = False
        batch = self.settings.embedder.batch_size
        while True:
            self.writer.poll()
            item: Item | BaseException | _Nothing | None = _Nothing.NOW
            waiting = sum(len(p.chunks) - p.embedded for p in pending)
            cutting = any(p.stream is not None for p in pending)
            try:
                if not done and waiting < batch and not cutting:
                    item = producer.poll(POLL_S)  # a batch is not full yet: wait for more
                elif not done and waiting < batch * PENDING_BATCHES:
                    item = producer.get_nowait()
            except queue.Empty:
                if not pending:
                    continue
            if item is None:
                done = True
            elif isinstance(item, BaseException):
                raise item
            elif not isinstance(item, _Nothing):
                self._take(item, pending)
                continue
            if pending:
                self._embed_some(pending, final=done)
            elif done:
                break
        self.writer.flush()

    def _take(self, item: Item, pending: list[Item]) -> None:
        if item.kind == "unchanged":
            self.writer.skip(item)
            return
        if item.kind == "parsed":
            self._start(item)
            if item.kind == "chunks":
                self._cut(item, SMALL_DOCUMENT_CHUNKS)
        if item.kind == "chunks" and item.stream is None and not item.chunks:
            item.kind, item.error = "empty", "no extractable text"
        if item.kind == "chunks":
            pending.append(item)
            return
        self.writer.add(item)

    def _start(self, item: Item) -> None:
        """Open the document's chunk stream (main thread: the tokenizer is not shared
        between threads)."""
        assert item.cleaned is not None
        embedder = self.lazy.get()
        if self._chunker is None:
            ing = self.settings.ingest
            self._chunker = Chunker(embedder, ing.chunk_tokens, ing.chunk_overlap)
        limit = self.settings.ingest.max_chunks_per_document
        item.stream = ChunkStream(item.cleaned, item.source.doc_id, self._chunker, limit)
        item.cleaned = None
        item.kind = "chunks"

    def _cut(self, item: Item, n: int) -> None:
        """Take up to ``n`` more chunks of ``item`` from its stream; when the stream ends,
        the document's text is let go (and the producer's budget with it)."""
        stream = item.stream
        if stream is None:
            return
        t = time.perf_counter()
        try:
            for _ in range(n):
                chunk = next(stream, None)
                if chunk is None:
                    self._finish_stream(item, stream)
                    break
                item.chunks.append(chunk)
        except ChunkingError as exc:
            item.kind, item.error = "failed", str(exc)
            item.stream = None
            item.chunks, item.vectors, item.embedded = [], [], 0
            self._release(item)
        finally:
            self.stages["chunk_s"] += time.perf_counter() - t

    def _finish_stream(self, item: Item, stream: ChunkStream) -> None:
        item.stream = None
        limit = self.settings.ingest.max_chunks_per_document
        if stream.cut_at is not None:
            item.truncated = (
                f"truncated: only the first {limit:,} chunks were indexed (the text up to "
                f"character {stream.cut_at:,}; ingest.max_chunks_per_document)"
            )
        elif item.cut_by_parser:
            budget = document_char_budget(self.settings.ingest)
            item.truncated = (
                f"truncated: only the first {budget:,} characters of text were indexed "
                "(ingest.max_chunks_per_document x ingest.chunk_tokens x "
                f"{CHARS_PER_CHUNK_TOKEN})"
            )
        self._release(item)

    def _release(self, item: Item) -> None:
        if self._producer is not None:
            self._producer.release(item)

    def _embed_some(self, pending: list[Item], *, final: bool) -> None:
        """Embed up to a few batches of waiting chunks, across documents: documents whose
        chunks are all cut first, fewest waiting chunks first, so small documents overtake
        a big one; the chunks of a document still being cut are cut as they are needed."""
        embedder = self.lazy.get()
        batch = embedder.batch_size
        want = batch * 4
        texts: list[str] = []
        owners: list[Item] = []
        order = sorted(pending, key=lambda p: (p.stream is not None, len(p.chunks) - p.embedded))
        for p in order:
            if len(texts) >= want:
                break
            if p.stream is not None and len(p.chunks) - p.embedded < want - len(texts):
                self._cut(p, want - len(texts) - (len(p.chunks) - p.embedded))
            for c in p.chunks[p.embedded : p.embedded + want - len(texts)]:
                texts.append(c.embed_text)
                owners.append(p)
        # fewer than a batch means every stream ran dry: wait for more documents, unless
        # there are none to come
        if texts and (final or len(texts) >= batch):
            self._embed(texts, owners, embedder)
        self._hand_over(pending)

    def _embed(self, texts: list[str], owners: list[Item], embedder: Embedder) -> None:
        # similar lengths together: less padding inside each model batch
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        t = time.perf_counter()
        vecs = embedder.embed([texts[i] for i in order])
        self.stages["embed_s"] += time.perf_counter() - t
        out: list[Any] = [None] * len(texts)
        for row, i in enumerate(order):
            out[i] = vecs[row]
        for owner, vec in zip(owners, out, strict=True):
            owner.vectors.append(vec)
            owner.embedded += 1

    def _hand_over(self, pending: list[Item]) -> None:
        """Documents whose chunks are all cut and embedded go to the writer, in the order
        they finish; a document still being cut hands over a slice once
        ``ingest.write_batch_chunks`` of its chunks are embedded (ingest/write.py)."""
        slice_chunks = self.settings.ingest.write_batch_chunks
        for p in list(pending):
            if p.kind != "chunks":  # failed while being cut
                pending.remove(p)
                self.writer.add(p)
            elif p.stream is None and p.embedded >= len(p.chunks):
                pending.remove(p)
                if not p.chunk_count:
                    p.kind, p.error = "empty", "no extractable text"
                self.writer.add(p)
            elif p.stream is not None and p.embedded >= slice_chunks:
                self.writer.add_slice(p)
