"""The producer: a thread that turns the decisions of a run into items for the embedder.

For each decision, in walk order, the producer thread:

* passes an unchanged file (same size and mtime, no retry due) on as ``unchanged``;
* hashes the file when its size or mtime moved, when it is new, or under ``ingest.rehash``; a
  file that cannot be read is ``failed`` (``permission denied`` or ``cannot read file: ...``);
* passes a file with the stored sha256 on as ``touch`` (only its row's size, mtime and groups
  move) unless a retry is due;
* feeds everything else, lazily, to the parser worker processes (``ParserPool``) and takes
  their results in order: a parse error is ``failed``; a parsed document is scored for parse
  quality (ingest/quality.py) and is ``quarantined`` when it scores below
  ``quality.min_score`` (unless a quarantine release admitted this very file); otherwise it
  has its PII redacted (``security.redact_pii``, before anything else sees its text) and is
  cleaned, and is ``empty`` when nothing readable is left, else ``parsed``.

Items go to the calling thread through a bounded queue (:data:`QUEUE_DOCS` documents), which
keeps memory flat whatever the corpus size and keeps the parsers busy while the model embeds;
the queue ends with ``None``. The cleaned texts in flight are bounded too
(:data:`IN_FLIGHT_BYTES`, :class:`InFlight`): a document's share is held from the moment it is
cleaned until the calling thread has cut all its chunks (:meth:`Producer.release`), so a few
huge documents never pile up in memory. An exception in the producer is handed through the queue and
raised by the calling thread. Leaving the :class:`Producer` context stops the thread.
Chunking is not done here: it needs the embedder's tokenizer, which stays on the calling
thread (ingest/embed.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from enclave.settings import Settings
from ingest.changes import Decision
from ingest.chunk import Chunk, ChunkStream
from ingest.clean import CleanDocument, UnreadableDocument, clean_document, clean_inline
from ingest.groups import Readers
from ingest.summary import now_iso
from ingest.types import ParsedDocument, ParseError, Source
from store.records import DocumentRecord

#: parsed-and-cleaned documents waiting for the embedder
QUEUE_DOCS = 32
#: bytes of cleaned text in flight between the producer and the writer (queued documents
#: plus those whose chunks are still being cut); see :class:`InFlight`
IN_FLIGHT_BYTES = 256 * 1024 * 1024


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


@dataclass
class Item:
    """One file's outcome on its way from the producer to the writer."""

    #: from the producer: "unchanged" | "touch" | "failed" | "empty" | "quarantined" |
    #: "parsed"; a "parsed"
    #: item becomes "chunks" (or "empty", "failed") when the calling thread chunks it
    kind: str
    source: Source
    old: DocumentRecord | None
    error: str = ""
    parser: str = ""
    title: str = ""
    cleaned: CleanDocument | None = None
    redacted: dict[str, int] = field(default_factory=dict)
    #: the parser cut the text at the document's character budget
    cut_by_parser: bool = False
    #: bytes of the in-flight budget this item holds until its text is let go
    held: int = 0
    # ---- on the calling thread (ingest/embed.py)
    #: the document's chunks still to be cut; None once they are all taken
    stream: ChunkStream | None = None
    #: chunks taken from the stream and not yet written (``vectors`` holds the first
    #: ``embedded`` of them)
    chunks: list[Chunk] = field(default_factory=list)
    embedded: int = 0
    vectors: list[Any] = field(default_factory=list)
    #: chunks already written in earlier slices of this document (ingest/write.py)
    written: int = 0
    #: why not all of the document's text was indexed ("truncated: ..."), else ""
    truncated: str = ""
    #: the parse-quality verdict stored with the row (ingest/quality.py), {} when not scored
    quality: dict[str, Any] = field(default_factory=dict)

    @property
    def chunk_count(self) -> int:
        """Chunks of the document so far: written in slices plus held."""
        return self.written + len(self.chunks)


class InFlight:
    """A budget of bytes for the cleaned texts between the producer and the writer: the
    producer waits while the documents already in flight hold it (one document alone is
    always let through, however big)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self._cond = threading.Condition()

    def acquire(self, n: int, stop: threading.Event) -> bool:
        """Wait for ``n`` bytes; False when ``stop`` was set first."""
        with self._cond:
            while self.used and self.used + n > self.capacity:
                if stop.is_set():
                    return False
                self._cond.wait(0.2)
            self.used += n
            return True

    def release(self, n: int) -> None:
        with self._cond:
            self.used = max(0, self.used - n)
            self._cond.notify_all()


class _Stop(Exception):
    pass


class Producer:
    """The producer thread of one run, started and stopped as a context manager."""

    def __init__(
        self,
        settings: Settings,
        decisions: list[Decision],
        readers: Readers,
        stages: dict[str, float],
        admit: frozenset[str] = frozenset(),
        admitted_by: str = "",
    ) -> None:
        self.settings = settings
        self.decisions = decisions
        self.readers = readers
        self.stages = stages
        #: documents a quarantine release lets in whatever their score (``enclave quarantine
        #: release``), and who did
        self.admit = admit
        self.admitted_by = admitted_by
        self.queue: queue.Queue[Item | BaseException | None] = queue.Queue(maxsize=QUEUE_DOCS)
        self.stop = threading.Event()
        self.in_flight = InFlight(IN_FLIGHT_BYTES)
        olds = {d.file.path: d.old for d in decisions if d.old is not None}
        self._thread = threading.Thread(
            target=self._run, args=(olds,), name="enclave-ingest", daemon=True
        )

    def __enter__(self) -> Producer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop.set()
        self._thread.join(timeout=30)

    # ------------------------------------------------------------ calling thread
    def get(self) -> Item | BaseException | None:
        """The next item, waiting for it; an error when the thread died without a word."""
        while True:
            try:
                return self.queue.get(timeout=0.5)
            except queue.Empty:
                if not self._thread.is_alive() and self.queue.empty():
                    return RuntimeError("the ingest producer thread stopped unexpectedly")

    def get_nowait(self) -> Item | BaseException | None:
        """The next item if one is waiting; raises :class:`queue.Empty` otherwise."""
        return self.queue.get_nowait()

    def poll(self, wait_s: float) -> Item | BaseException | None:
        """The next item, waiting up to ``wait_s``; raises :class:`queue.Empty` after that
        (an error when the thread died without a word)."""
        try:
            return self.queue.get(timeout=wait_s)
        except queue.Empty:
            if not self._thread.is_alive() and self.queue.empty():
                return RuntimeError("the ingest producer thread stopped unexpectedly")
            raise

    def release(self, item: Item) -> None:
        """The calling thread let go of ``item``'s text: its share of the budget returns."""
        if item.held:
            self.in_flight.release(item.held)
            item.held = 0

    # ---------------------------------------------------------- producer thread
    def _sources(self) -> Iterator[Source]:
        """Hash what needs hashing; yield what must be parsed; report the rest."""
        for d in self.decisions:
            if self.stop.is_set():
                return
            f, old = d.file, d.old
            groups = self.readers.groups_for(f.path, old)
            src = Source(
                path=f.path,
                doc_id=f.doc_id,
                size=f.size,
                mtime=f.mtime,
                groups=groups,
                fs_path=f.fs_path,
            )
            if not d.must_hash and not d.retry:
                self._put(Item("unchanged", src, old))
                continue
            if d.must_hash or not (old and old.sha256):
                t = time.perf_counter()
                try:
                    src.sha256 = sha256_file(f.fs_path)
                except OSError as exc:
                    self.stages["hash_s"] += time.perf_counter() - t
                    reason = (
                        "permission denied"
                        if isinstance(exc, PermissionError)
                        else (f"cannot read file: {exc.strerror or exc}")
                    )
                    self._put(Item("failed", src, old, error=reason))
                    continue
                self.stages["hash_s"] += time.perf_counter() - t
            else:
                src.sha256 = old.sha256
            if old is not None and old.sha256 == src.sha256 and not d.retry:
                self._put(Item("touch", src, old))
                continue
            yield src

    def _put(self, item: Item | BaseException | None) -> None:
        while True:
            if self.stop.is_set():
                raise _Stop
            try:
                self.queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _run(self, olds: dict[str, DocumentRecord]) -> None:
        from ingest.parser_pool import ParserPool

        try:
            with ParserPool(self.settings.ingest) as pool:
                it = pool.imap(self._sources())
                while True:
                    t = time.perf_counter()
                    try:
                        src, result = next(it)
                    except StopIteration:
                        break
                    finally:
                        self.stages["parse_wait_s"] += time.perf_counter() - t
                    item = self._prepare(src, olds.get(src.path), result)
                    del result
                    if item.cleaned is not None:
                        item.held = sys.getsizeof(item.cleaned.text)
                        if not self.in_flight.acquire(item.held, self.stop):
                            return
                    self._put(item)
            self._put(None)
        except _Stop:
            return
        except BaseException as exc:  # handed to the main thread, which re-raises it
            with contextlib.suppress(_Stop):
                self._put(exc)

    def _prepare(
        self, src: Source, old: DocumentRecord | None, result: ParsedDocument | ParseError
    ) -> Item:
        if isinstance(result, ParseError):
            return Item("failed", src, old, error=str(result) or "could not parse")
        quality = self._quality(src, old, result)
        quarantine = str(quality.pop("quarantine", "")) if quality else ""
        if quarantine and result.needs_ocr:
            # scanned pages left unread: quarantined as needing OCR, whatever text is left
            title = result.title or (old.title if old else "") or os.path.basename(src.path)
            result.elements = []
            return self._quarantined(src, old, result.parser, title, quarantine, quality)
        redacted: dict[str, int] = {}
        if self.settings.security.redact_pii:
            from enclave.security.redact import redact_document

            # before cleaning and chunking: neither chunks, vectors nor title see the values
            redacted = redact_document(result)
        t = time.perf_counter()
        try:
            cleaned = clean_document(result)
        except UnreadableDocument as exc:
            return Item(
                "empty", src, old, error=str(exc), parser=result.parser, quality=quality or {}
            )
        finally:
            self.stages["clean_s"] += time.perf_counter() - t
            result.elements = []  # the parser's copy of the text goes (the pool still holds
            # the document object until its next result)
        cleaned.drop_element_texts()
        title = cleaned.title or result.title or os.path.basename(src.path)
        if quarantine:
            # readable text (the cleaner's refusals of garbage come first, as `empty`), but
            # of too poor a quality to be served
            return self._quarantined(src, old, result.parser, title, quarantine, quality)
        return Item(
            "parsed",
            src,
            old,
            parser=result.parser,
            title=title,
            cleaned=cleaned,
            redacted=redacted,
            cut_by_parser=result.truncated,
            quality=quality or {},
        )

    @staticmethod
    def _quarantined(
        src: Source,
        old: DocumentRecord | None,
        parser: str,
        title: str,
        reason: str,
        quality: dict[str, Any] | None,
    ) -> Item:
        return Item(
            "quarantined",
            src,
            old,
            error=reason,
            parser=parser,
            title=clean_inline(title),
            quality=quality or {},
        )

    def _quality(
        self, src: Source, old: DocumentRecord | None, doc: ParsedDocument
    ) -> dict[str, Any] | None:
        """The verdict stored with the row; its ``quarantine`` key holds the reason when the
        document is to be quarantined. A document admitted by a quarantine release (now,
        or earlier for this very file: the same sha256) keeps its admission instead."""
        if not self.settings.quality.enabled:
            return None
        from ingest.quality import assess

        t = time.perf_counter()
        try:
            q = assess(doc, src.size, self.settings.quality)
        finally:
            self.stages["quality_s"] = self.stages.get("quality_s", 0.0) + (time.perf_counter() - t)
        if q is None:
            return None
        out = q.to_dict()
        if src.doc_id in self.admit:
            out["admitted"] = {"sha256": src.sha256, "at": now_iso(), "by": self.admitted_by}
        elif old is not None and src.sha256 and old.admitted_sha256() == src.sha256:
            out["admitted"] = dict(old.quality["admitted"])
        elif q.quarantined:
            out["quarantine"] = q.reason
        if q.quarantined:
            out["reason"] = q.reason
        return out
