"""The calling thread's side of a run: chunk, embed in batches across documents, hand over.

The embedder is loaded only when some document needs embedding (:class:`LazyEmbedder`): a run
over an unchanged corpus never imports torch. Loading it binds the index to it; before any
work, :meth:`LazyEmbedder.check_index` refuses an index built with another embedder.

:class:`Embedding` drains the producer's queue (ingest/produce.py). Each parsed document is cut
into chunks here, with the embedder's tokenizer, which is not shared between threads. While
fewer than a model batch of chunks (``embedder.batch_size``) wait, the next item is awaited;
up to :data:`PENDING_BATCHES` batches, an item is taken if one is ready and chunks are embedded
otherwise; past that the embedder catches up first. Each embedding call takes up to four
batches of waiting chunks across documents, sorted by length so that each model batch pads
little (a partial batch only at the end of the run). Documents with chunks reach the writer
(ingest/write.py) in the order they arrived, once all their chunks are embedded; failed, empty
and touched files reach it at once, and unchanged files are only counted.
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
from ingest.chunk import Chunker, ChunkingError, chunk_document
from ingest.produce import Item, Producer
from ingest.write import Writer
from models.embedder import Embedder
from models.variants import mismatch_message

if TYPE_CHECKING:
    from store.db import Store

#: chunks waiting for the embedder (in model batches) before the queue is left alone
PENDING_BATCHES = 16


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
                from models.embedder import load_embedder
                from models.variants import for_index

                t0 = time.perf_counter()
                settings = for_index(self._settings.embedder, self._store.embedder_name)
                self._embedder = load_embedder(settings)
                self.load_seconds = time.perf_counter() - t0
            if not self._bound:
                self._refuse_other(self._embedder.name)
                self._store.bind_embedder(self._embedder.name, self._embedder.dimension)
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
                mismatch_message(bound, expected, where=str(self._store.path))
            )

    def _refuse_other(self, name: str) -> None:
        bound = self._store.embedder_name
        if bound and not same_embedder(bound, name):
            raise EmbedderMismatchError(mismatch_message(bound, name, where=str(self._store.path)))


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

    def drain(self, producer: Producer) -> None:
        """Take every item of ``producer`` until its end; re-raise the error it hands over."""
        pending: list[Item] = []  # documents whose chunks are not all embedded yet
        done = False
        while not done or pending:
            item: Item | BaseException | _Nothing | None
            waiting = sum(len(p.chunks) - p.embedded for p in pending)
            batch = self.settings.embedder.batch_size
            if not done and waiting < batch:
                item = producer.get()
            elif not done and waiting < batch * PENDING_BATCHES:
                try:
                    item = producer.get_nowait()
                except queue.Empty:
                    item = _Nothing.NOW
            else:
                item = _Nothing.NOW
            if item is None:
                done = True
            elif isinstance(item, BaseException):
                raise item
            elif not isinstance(item, _Nothing):
                self._take(item, pending)
                continue
            if pending:
                self._embed_some(pending, final=done)
        self.writer.flush()

    def _take(self, item: Item, pending: list[Item]) -> None:
        if item.kind == "unchanged":
            self.writer.skip(item)
            return
        if item.kind == "parsed":
            self._chunk(item)
        if item.kind == "chunks":
            pending.append(item)
            return
        self.writer.add(item)

    def _chunk(self, item: Item) -> None:
        """Cut a cleaned document into chunks (main thread: the tokenizer is not shared
        between threads)."""
        assert item.cleaned is not None
        embedder = self.lazy.get()
        if self._chunker is None:
            ing = self.settings.ingest
            self._chunker = Chunker(embedder, ing.chunk_tokens, ing.chunk_overlap)
        t = time.perf_counter()
        try:
            item.chunks = chunk_document(item.cleaned, item.source.doc_id, self._chunker)
            item.kind = "chunks"
            if not item.chunks:
                item.kind, item.error = "empty", "no extractable text"
        except ChunkingError as exc:
            item.kind, item.error = "failed", str(exc)
        finally:
            item.cleaned = None
            self.stages["chunk_s"] += time.perf_counter() - t

    def _embed_some(self, pending: list[Item], *, final: bool) -> None:
        """Embed up to a few batches of waiting chunks, across documents."""
        embedder = self.lazy.get()
        batch = embedder.batch_size
        want = batch * 4
        texts: list[str] = []
        owners: list[Item] = []
        for p in pending:
            for c in p.chunks[p.embedded :]:
                if len(texts) >= want:
                    break
                texts.append(c.embed_text)
                owners.append(p)
            if len(texts) >= want:
                break
        if not final and len(texts) < batch:
            return
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
        while pending and pending[0].embedded >= len(pending[0].chunks):
            self.writer.add(pending.pop(0))
