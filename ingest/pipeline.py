"""The batch ingestion pipeline: walk -> hash -> parse -> clean -> chunk -> embed -> write.

Three things run at once:

* the parser worker processes (``ParserPool``), fed lazily;
* a *producer* thread that walks the decisions, hashes files, drives the pool and cleans and
  chunks each parsed document;
* the calling thread, which embeds chunks in batches across documents and writes to LanceDB
  in large, bounded batches.

A bounded queue between the producer and the embedder keeps memory flat whatever the corpus
size, and keeps the parsers busy while the model embeds.

Incremental rules (per file, keyed by its normalised path):

* same size and mtime as the stored row: unchanged, the file is not even read
  (``ingest.rehash`` forces hashing);
* otherwise the file is hashed; the same sha256 means unchanged (only the row's mtime moves);
* a changed file is parsed again and its chunks replaced (``Store.replace_documents`` deletes
  before adding and writes the row last, so an interrupted run is redone, never doubled);
* a file that failed before is retried when it changes, and also when it did not change if
  the failure was transient: a parser timeout, a permission problem or a vanished file;
* ``prune`` deletes the documents under the given roots whose files are gone.

The embedder is loaded only when some document needs embedding: a run over an unchanged
corpus never imports torch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enclave.errors import EmbedderMismatchError, UsageError
from enclave.offline import enforce_offline
from enclave.settings import Settings
from ingest.chunk import Chunk, Chunker, ChunkingError, chunk_document
from ingest.clean import CleanDocument, UnreadableDocument, clean_document
from ingest.snapshot import index_signature, load_snapshot, write_snapshot
from ingest.types import ParsedDocument, ParseError, Source
from ingest.walk import WalkedFile, WalkIssue, check_roots, is_under, walk
from models.embedder import Embedder
from store.records import (
    STATUS_EMPTY,
    STATUS_FAILED,
    STATUS_OK,
    ChunkRecord,
    DocumentRecord,
    read_index_meta,
    valid_group,
)

if TYPE_CHECKING:
    from enclave.security.policy import AclPolicy
    from store.db import Store

log = logging.getLogger(__name__)

#: parsed-and-chunked documents waiting for the embedder
QUEUE_DOCS = 32
#: chunks waiting for the embedder (in model batches) before the queue is left alone
PENDING_BATCHES = 16
#: failures whose cause may have gone away without the file changing
RETRY_MARKERS = ("timed out", "permission denied", "file not found")
LAST_INGEST_FILE = "last-ingest.json"


@dataclass
class IngestSummary:
    """What one ingest run did. :meth:`to_dict` is the ``--json`` contract."""

    files_seen: int = 0
    ingested: int = 0
    unchanged: int = 0
    updated: int = 0
    deleted: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    chunks_added: int = 0
    chunks_deleted: int = 0
    seconds: float = 0.0
    # extras (allowed beyond the contract)
    empty: int = 0
    previously_failed: int = 0
    skipped_unsupported: int = 0
    redacted: dict[str, int] = field(default_factory=dict)
    flagged_chunks: int = 0
    embedder: str = ""
    data_dir: str = ""
    stages: dict[str, float] = field(default_factory=dict)
    #: nothing to do, decided from the snapshot without opening LanceDB (ingest/snapshot.py)
    from_snapshot: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "files_seen": self.files_seen,
            "ingested": self.ingested,
            "unchanged": self.unchanged,
            "updated": self.updated,
            "deleted": self.deleted,
            "failed": [dict(f) for f in self.failed],
            "chunks_added": self.chunks_added,
            "chunks_deleted": self.chunks_deleted,
            "seconds": round(self.seconds, 3),
            "empty": self.empty,
            "previously_failed": self.previously_failed,
            "skipped_unsupported": self.skipped_unsupported,
            "redacted": dict(self.redacted),
            "flagged_chunks": self.flagged_chunks,
            "embedder": self.embedder,
            "data_dir": self.data_dir,
            "stages": {k: round(v, 3) for k, v in self.stages.items()},
            "from_snapshot": self.from_snapshot,
        }


def parse_groups(value: str | Sequence[str] | None) -> list[str] | None:
    """``"a,b"`` or ``["a", "b"]`` -> validated group names; ``None`` keeps stored groups."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    groups = [g.strip() for g in items if g.strip()]
    for g in groups:
        if not valid_group(g):
            raise UsageError(
                f"invalid group name {g!r}: use letters, digits, '_', '.', '-' (max 64)"
            )
    return sorted(set(groups))


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def expected_embedder_name(settings: Settings) -> str | None:
    """The identity the configured embedder will have, found without loading it (None when
    it cannot be told cheaply; the index is then checked when the embedder loads)."""
    model = settings.embedder.model
    if model == "hash":
        from models.embedder import HashEmbedder

        return HashEmbedder().name
    from models.bundled import resolve_embedder

    path = resolve_embedder(model)  # ConfigError when the model is not installed
    try:
        from models import embedder as embedder_module

        identity: str = embedder_module._model_identity(str(path))
    except Exception:  # the identity helper changed: fall back to the check at load time
        return None
    return identity


def same_embedder(bound: str, expected: str) -> bool:
    """Names are ``label@fingerprint``; the fingerprint (config and weight sizes) decides."""
    return bound.rsplit("@", 1)[-1] == expected.rsplit("@", 1)[-1]


def _retryable(error: str) -> bool:
    low = error.lower()
    return any(m in low for m in RETRY_MARKERS)


class _LazyEmbedder:
    """Loads the embedder (and binds the index to it) the first time a chunk needs it."""

    def __init__(self, settings: Settings, store: Store, embedder: Embedder | None) -> None:
        self._settings = settings
        self._store = store
        self._embedder = embedder
        self._lock = threading.Lock()
        self._bound = False
        self.load_seconds = 0.0

    @property
    def loaded(self) -> bool:
        return self._embedder is not None

    def get(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                from models.embedder import load_embedder

                t0 = time.perf_counter()
                self._embedder = load_embedder(self._settings.embedder)
                self.load_seconds = time.perf_counter() - t0
            if not self._bound:
                self._store.bind_embedder(self._embedder.name, self._embedder.dimension)
                self._bound = True
            return self._embedder


@dataclass
class _Decision:
    file: WalkedFile
    old: DocumentRecord | None
    must_hash: bool  # size/mtime changed, new file, or rehash
    retry: bool = False  # a failed file retried although unchanged


@dataclass
class _Item:
    """One file's outcome on its way from the producer to the writer."""

    kind: str  # "chunks" | "failed" | "empty" | "touch"
    source: Source
    old: DocumentRecord | None
    error: str = ""
    parser: str = ""
    title: str = ""
    cleaned: CleanDocument | None = None
    redacted: dict[str, int] = field(default_factory=dict)
    chunks: list[Chunk] = field(default_factory=list)
    embedded: int = 0
    vectors: list[Any] = field(default_factory=list)


class _Stop(Exception):
    pass


class _Run:
    def __init__(
        self,
        settings: Settings,
        roots: list[str],
        *,
        prune: bool,
        embedder: Embedder | None,
        store: Store,
        groups: list[str] | None,
        progress: bool,
        policy: AclPolicy,
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.roots = roots
        self.prune = prune
        self.store = store
        self.groups = groups
        self.summary = IngestSummary(data_dir=str(settings.data_dir))
        self.lazy = _LazyEmbedder(settings, store, embedder)
        self.queue: queue.Queue[_Item | BaseException | None] = queue.Queue(maxsize=QUEUE_DOCS)
        self.stop = threading.Event()
        self.stages: dict[str, float] = {
            "walk_s": 0.0,
            "hash_s": 0.0,
            "parse_wait_s": 0.0,
            "clean_s": 0.0,
            "chunk_s": 0.0,
            "embed_s": 0.0,
            "write_s": 0.0,
        }
        self.wrote = False
        self.show_progress = progress
        self._tick: Callable[[str], None] = lambda _p: None
        self.embedder_name = ""
        self._chunker: Chunker | None = None

    # ------------------------------------------------------------------ driver
    def run(self) -> IngestSummary:
        t0 = time.perf_counter()
        self._check_embedder()
        removed = self.store.remove_orphan_chunks()
        if removed:
            log.info("removed %d orphan chunks left by an interrupted run", removed)
            self.summary.chunks_deleted += removed
            self.wrote = True
        signature = index_signature(self.store.path)
        state = self.store.documents_state()
        self.stages["setup_s"] = time.perf_counter() - t0
        tw = time.perf_counter()
        decisions: list[_Decision] = []
        seen: set[str] = set()
        issues: list[WalkIssue] = []
        skipped: dict[str, int] = {}
        for item in walk_supported(self.settings, self.roots, skipped):
            if isinstance(item, WalkIssue):
                issues.append(item)
                seen.add(item.path)
                continue
            seen.add(item.path)
            decisions.append(self._decide(item, state.get(item.path)))
        self.stages["walk_s"] = time.perf_counter() - tw
        self.summary.files_seen = len(decisions) + sum(1 for i in issues if i.is_file)
        self.summary.skipped_unsupported = skipped.get("unsupported", 0)

        from ingest.progress import IngestProgress

        with IngestProgress(enabled=self.show_progress, total=len(decisions)) as bar:
            self._tick = bar.advance
            self._record_issues(issues, state)
            self._process(decisions)
            if self.prune:
                self._prune(state, seen)
        if self.groups is not None or self.policy.rules:
            self._regroup(decisions)
        if self.wrote:
            tws = time.perf_counter()
            self.store.optimize()
            self.stages["optimize_s"] = time.perf_counter() - tws
        self._snapshot(None if self.wrote else (signature, state))
        self.stages["embedder_load_s"] = self.lazy.load_seconds
        self.summary.stages = self.stages
        self.summary.embedder = self.embedder_name or (self.store.embedder_name or "")
        self.summary.seconds = time.perf_counter() - t0
        write_last_ingest(self.settings, self.roots, self.summary)
        return self.summary

    def _snapshot(self, read: tuple[str | None, dict[str, DocumentRecord]] | None) -> None:
        """Leave the snapshot of the documents table for the next run (ingest/snapshot.py):
        the rows read at the start when nothing was written, else read again."""
        if read is None:
            signature = index_signature(self.store.path)
            state = self.store.documents_state()
        else:
            signature, state = read
        if signature is not None and index_signature(self.store.path) == signature:
            write_snapshot(self.settings.data_dir, signature, state, _retryable)

    def _check_embedder(self) -> None:
        """Refuse a different embedder up front, before any work (exit code 2)."""
        if self.lazy.loaded:
            emb = self.lazy.get()  # binds: raises EmbedderMismatchError
            self.embedder_name = emb.name
            return
        bound = self.store.embedder_name
        expected = expected_embedder_name(self.settings)
        self.embedder_name = bound or ""
        if bound and expected and not same_embedder(bound, expected):
            raise EmbedderMismatchError(
                f"this index was built with embedder {bound}, not {expected}. Mixing them would "
                "corrupt search. To re-embed with the new model, ingest into a new data "
                f"directory (--data-dir NEW) and point the server at it, or remove "
                f"{self.store.path} and ingest again."
            )

    def _decide(self, f: WalkedFile, old: DocumentRecord | None) -> _Decision:
        if old is None:
            return _Decision(f, None, must_hash=True)
        same_stat = old.size == f.size and old.mtime == f.mtime
        retry = old.status == STATUS_FAILED and _retryable(old.error)
        if same_stat and not self.settings.ingest.rehash:
            return _Decision(f, old, must_hash=False, retry=retry)
        return _Decision(f, old, must_hash=True, retry=retry)

    # ---------------------------------------------------------------- producer
    def _sources(self, decisions: list[_Decision]) -> Iterator[Source]:
        """Hash what needs hashing; yield what must be parsed; report the rest."""
        for d in decisions:
            if self.stop.is_set():
                return
            f, old = d.file, d.old
            groups = self._groups_for(f.path, old)
            src = Source(path=f.path, doc_id=f.doc_id, size=f.size, mtime=f.mtime, groups=groups)
            if not d.must_hash and not d.retry:
                self._put(_Item("unchanged", src, old))
                continue
            if d.must_hash or not (old and old.sha256):
                t = time.perf_counter()
                try:
                    src.sha256 = sha256_file(f.path)
                except OSError as exc:
                    self.stages["hash_s"] += time.perf_counter() - t
                    reason = (
                        "permission denied"
                        if isinstance(exc, PermissionError)
                        else (f"cannot read file: {exc.strerror or exc}")
                    )
                    self._put(_Item("failed", src, old, error=reason))
                    continue
                self.stages["hash_s"] += time.perf_counter() - t
            else:
                src.sha256 = old.sha256
            if old is not None and old.sha256 == src.sha256 and not d.retry:
                self._put(_Item("touch", src, old))
                continue
            yield src

    def _groups_for(self, path: str, old: DocumentRecord | None) -> list[str]:
        """Readers of a document: the ACL policy (authoritative when it has rules) plus
        ``--groups``; without either, the stored groups stay."""
        if self.policy.rules:
            return self.policy.groups_for(path, self.groups or [])
        if self.groups is not None:
            return list(self.groups)
        return list(old.groups) if old is not None else []

    def _put(self, item: _Item | BaseException | None) -> None:
        while True:
            if self.stop.is_set():
                raise _Stop
            try:
                self.queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _producer(self, decisions: list[_Decision], olds: dict[str, DocumentRecord]) -> None:
        from ingest.parse import ParserPool

        try:
            with ParserPool(self.settings.ingest) as pool:
                it = pool.imap(self._sources(decisions))
                while True:
                    t = time.perf_counter()
                    try:
                        src, result = next(it)
                    except StopIteration:
                        break
                    finally:
                        self.stages["parse_wait_s"] += time.perf_counter() - t
                    self._put(self._prepare(src, olds.get(src.path), result))
            self._put(None)
        except _Stop:
            return
        except BaseException as exc:  # handed to the main thread, which re-raises it
            with contextlib.suppress(_Stop):
                self._put(exc)

    def _prepare(
        self, src: Source, old: DocumentRecord | None, result: ParsedDocument | ParseError
    ) -> _Item:
        if isinstance(result, ParseError):
            return _Item("failed", src, old, error=str(result) or "could not parse")
        redacted: dict[str, int] = {}
        if self.settings.security.redact_pii:
            from enclave.security.redact import redact_document

            # before cleaning and chunking: neither chunks, vectors nor title see the values
            redacted = redact_document(result)
        t = time.perf_counter()
        try:
            cleaned = clean_document(result)
        except UnreadableDocument as exc:
            return _Item("empty", src, old, error=str(exc), parser=result.parser)
        finally:
            self.stages["clean_s"] += time.perf_counter() - t
        title = cleaned.title or result.title or os.path.basename(src.path)
        return _Item(
            "parsed",
            src,
            old,
            parser=result.parser,
            title=title,
            cleaned=cleaned,
            redacted=redacted,
        )

    def _chunk(self, item: _Item) -> None:
        """Cut a cleaned document into chunks (main thread: the tokenizer is not shared
        between threads)."""
        assert item.cleaned is not None
        embedder = self.lazy.get()
        self.embedder_name = embedder.name
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

    # ----------------------------------------------------------------- consumer
    def _process(self, decisions: list[_Decision]) -> None:
        olds = {d.file.path: d.old for d in decisions if d.old is not None}
        thread = threading.Thread(
            target=self._producer, args=(decisions, olds), name="enclave-ingest", daemon=True
        )
        thread.start()
        pending: list[_Item] = []  # documents whose chunks are not all embedded yet
        ready: list[_Item] = []  # documents ready to write
        done = False
        try:
            while not done or pending:
                item: _Item | BaseException | None
                waiting = sum(len(p.chunks) - p.embedded for p in pending)
                batch = self.settings.embedder.batch_size
                if not done and waiting < batch:
                    item = self._get(thread)
                elif not done and waiting < batch * PENDING_BATCHES:
                    try:
                        item = self.queue.get_nowait()
                    except queue.Empty:
                        item = _NOTHING
                else:
                    item = _NOTHING
                if item is None:
                    done = True
                elif isinstance(item, BaseException):
                    raise item
                elif item is not _NOTHING:
                    self._take(item, pending, ready)
                    continue
                if pending:
                    self._embed_some(pending, ready, final=done)
                if ready and ((done and not pending) or self._full(ready)):
                    self._write(ready)
                    ready = []
            if ready:
                self._write(ready)
        finally:
            self.stop.set()
            thread.join(timeout=30)

    def _get(self, thread: threading.Thread) -> _Item | BaseException | None:
        while True:
            try:
                return self.queue.get(timeout=0.5)
            except queue.Empty:
                if not thread.is_alive() and self.queue.empty():
                    return RuntimeError("the ingest producer thread stopped unexpectedly")

    def _take(self, item: _Item, pending: list[_Item], ready: list[_Item]) -> None:
        if item.kind == "unchanged":
            self.summary.unchanged += 1
            if item.old is not None and item.old.status != STATUS_OK:
                self.summary.previously_failed += 1  # failed or empty before, still unchanged
            self._tick(item.source.path)
            return
        if item.kind == "parsed":
            self._chunk(item)
        if item.kind == "chunks":
            pending.append(item)
            return
        ready.append(item)
        if self._full(ready):
            self._write(ready)
            ready.clear()

    def _full(self, ready: list[_Item]) -> bool:
        ing = self.settings.ingest
        chunks = sum(len(i.chunks) for i in ready)
        return chunks >= ing.write_batch_chunks or len(ready) >= ing.write_batch_docs

    def _embed_some(self, pending: list[_Item], ready: list[_Item], *, final: bool) -> None:
        """Embed up to a few batches of waiting chunks, across documents."""
        embedder = self.lazy.get()
        batch = embedder.batch_size
        want = batch * 4
        texts: list[str] = []
        owners: list[_Item] = []
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
            doc = pending.pop(0)
            ready.append(doc)
            if self._full(ready):
                self._write(ready)
                ready.clear()

    # ------------------------------------------------------------------- writes
    def _record(self, item: _Item, status: str, chunk_count: int) -> DocumentRecord:
        src = item.source
        return DocumentRecord(
            doc_id=src.doc_id,
            path=src.path,
            title=item.title or (item.old.title if item.old and status != STATUS_OK else ""),
            sha256=src.sha256,
            size=src.size,
            mtime=src.mtime,
            parser=item.parser,
            status=status,
            error=item.error,
            chunk_count=chunk_count,
            ingested_at=now_iso(),
            embedder=self.embedder_name,
            groups=list(src.groups),
        )

    def _write(self, items: list[_Item]) -> None:
        t = time.perf_counter()
        docs: list[DocumentRecord] = []
        chunks: list[ChunkRecord] = []
        touched: list[DocumentRecord] = []
        flag = self.settings.security.flag_injection
        if flag:
            from enclave.security.injection import flag_injection
        for item in items:
            src = item.source
            if item.kind == "touch":
                assert item.old is not None
                row = DocumentRecord(**{**item.old.__dict__})
                row.size, row.mtime = src.size, src.mtime
                row.groups = list(src.groups)
                touched.append(row)
                continue
            if item.kind == "chunks":
                docs.append(self._record(item, STATUS_OK, len(item.chunks)))
                for c, vec in zip(item.chunks, item.vectors, strict=True):
                    flags = flag_injection(c.text) if flag else []
                    if flags:
                        self.summary.flagged_chunks += 1
                    chunks.append(
                        ChunkRecord(
                            chunk_id=c.chunk_id,
                            doc_id=c.doc_id,
                            ordinal=c.ordinal,
                            text=c.text,
                            vector=vec,
                            source=src.path,
                            title=item.title,
                            page=c.page,
                            heading_path=c.heading_path,
                            char_start=c.char_start,
                            char_end=c.char_end,
                            tokens=c.tokens,
                            groups=list(src.groups),
                            flags=flags,
                        )
                    )
            else:
                status = STATUS_EMPTY if item.kind == "empty" else STATUS_FAILED
                docs.append(self._record(item, status, 0))
        if docs:
            self.summary.chunks_deleted += self.store.replace_documents(docs, chunks)
            self.wrote = True
        if touched:
            self.store.upsert_document_rows(touched)
            self.wrote = True
        self.stages["write_s"] += time.perf_counter() - t
        # the summary counts a file once it is safely written
        for item in items:
            self._count(item)
            self._tick(item.source.path)

    def _count(self, item: _Item) -> None:
        s = self.summary
        if item.kind == "touch":
            s.unchanged += 1
        elif item.kind == "chunks":
            s.chunks_added += len(item.chunks)
            for kind, n in item.redacted.items():
                s.redacted[kind] = s.redacted.get(kind, 0) + n
            if item.old is None:
                s.ingested += 1
            else:
                s.updated += 1
        else:
            if item.kind == "empty":
                s.empty += 1
            s.failed.append({"path": item.source.path, "error": item.error})

    def _record_issues(self, issues: list[WalkIssue], state: dict[str, DocumentRecord]) -> None:
        rows: list[DocumentRecord] = []
        for issue in issues:
            self.summary.failed.append({"path": issue.path, "error": issue.error})
            if not issue.is_file:
                continue
            from store.records import doc_id_for_path

            old = state.get(issue.path)
            rows.append(
                DocumentRecord(
                    doc_id=doc_id_for_path(issue.path),
                    path=issue.path,
                    title=old.title if old else "",
                    status=STATUS_FAILED,
                    error=issue.error,
                    ingested_at=now_iso(),
                    embedder=self.embedder_name,
                    groups=self._groups_for(issue.path, old),
                )
            )
        if rows:
            # an unreadable file's old chunks are stale: its row now says why it is missing
            self.summary.chunks_deleted += self.store.replace_documents(rows, [])
            self.wrote = True

    def _prune(self, state: dict[str, DocumentRecord], seen: set[str]) -> None:
        gone = [
            rec.doc_id
            for path, rec in state.items()
            if path not in seen
            and any(is_under(path, r) for r in self.roots)
            and not os.path.exists(path)
        ]
        if gone:
            t = time.perf_counter()
            self.summary.chunks_deleted += self.store.delete_documents(gone)
            self.summary.deleted += len(gone)
            self.wrote = True
            self.stages["write_s"] += time.perf_counter() - t

    def _regroup(self, decisions: list[_Decision]) -> None:
        """New readers for unchanged documents (``--groups`` or an edited ACL policy),
        without re-embedding: one update per distinct group list."""
        by_groups: dict[tuple[str, ...], list[str]] = {}
        for d in decisions:
            if d.old is None:
                continue
            new = sorted(self._groups_for(d.file.path, d.old))
            if new != sorted(d.old.groups):
                by_groups.setdefault(tuple(new), []).append(d.file.doc_id)
        for groups, ids in by_groups.items():
            self.store.set_groups(ids, list(groups))
            self.wrote = True


_NOTHING: Any = object()


def walk_supported(
    settings: Settings, roots: list[str], skipped: dict[str, int]
) -> Iterator[WalkedFile | WalkIssue]:
    """The files of a run: under ``roots``, of a supported format, through the include and
    exclude globs (``skipped`` counts the rest by reason)."""
    from ingest.parse import SUPPORTED_EXTENSIONS

    ing = settings.ingest
    return walk(
        roots,
        include=ing.include,
        exclude=ing.exclude,
        extensions=SUPPORTED_EXTENSIONS,
        skipped=skipped,
    )


def write_last_ingest(settings: Settings, roots: list[str], summary: IngestSummary) -> None:
    """The record ``enclave status`` shows: when the last run finished, over what, and its
    summary."""
    path = Path(settings.data_dir) / LAST_INGEST_FILE
    data = {"finished_at": now_iso(), "roots": roots, "summary": summary.to_dict()}
    with contextlib.suppress(OSError):
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2), "utf-8")
        os.replace(tmp, path)


def unchanged_run(
    settings: Settings,
    roots: list[str],
    *,
    prune: bool,
    groups: list[str] | None,
    policy: AclPolicy,
    embedder: Embedder | None,
) -> IngestSummary | None:
    """The summary of a run with nothing to do, decided from the snapshot without opening
    LanceDB; None when the snapshot cannot tell (then the full path runs)."""
    if settings.ingest.rehash or groups is not None or policy.rules:
        return None
    t0 = time.perf_counter()
    snapshot = load_snapshot(settings.data_dir, settings.lance_dir)
    if snapshot is None:
        return None
    bound = str(read_index_meta(settings.lance_dir).get("embedder") or "")
    expected = embedder.name if embedder is not None else expected_embedder_name(settings)
    if not bound or (expected and not same_embedder(bound, expected)):
        return None  # the full path explains the mismatch
    setup_s = time.perf_counter() - t0
    tw = time.perf_counter()
    summary = IngestSummary(data_dir=str(settings.data_dir), embedder=bound)
    seen: set[str] = set()
    skipped: dict[str, int] = {}
    for item in walk_supported(settings, roots, skipped):
        if isinstance(item, WalkIssue):
            return None
        entry = snapshot.docs.get(item.path)
        if entry is None or entry.retry or (entry.size, entry.mtime) != (item.size, item.mtime):
            return None
        seen.add(item.path)
        summary.unchanged += 1
        if entry.status != STATUS_OK:
            summary.previously_failed += 1
    if prune and any(
        path not in seen and any(is_under(path, r) for r in roots) and not os.path.exists(path)
        for path in snapshot.docs
    ):
        return None
    summary.files_seen = summary.unchanged
    summary.skipped_unsupported = skipped.get("unsupported", 0)
    summary.stages = {"walk_s": time.perf_counter() - tw, "setup_s": setup_s}
    summary.from_snapshot = True
    summary.seconds = time.perf_counter() - t0
    return summary


def read_last_ingest(data_dir: Path | str) -> dict[str, Any] | None:
    """The record the last finished ingest run left in ``data_dir``, if any."""
    try:
        data: dict[str, Any] = json.loads((Path(data_dir) / LAST_INGEST_FILE).read_text("utf-8"))
        return data
    except (OSError, ValueError):
        return None


def ingest_paths(
    settings: Settings,
    paths: Sequence[str | Path],
    *,
    prune: bool = False,
    embedder: Embedder | None = None,
    store: Store | None = None,
    groups: list[str] | None = None,
    progress: bool = False,
) -> IngestSummary:
    """Ingest files and folders into the index at ``settings.data_dir``.

    Raises :class:`~enclave.errors.UsageError` for a missing path or a bad group name and
    :class:`~enclave.errors.EmbedderMismatchError` when the index was built with another
    embedder. Files that cannot be ingested do not raise: they are listed in
    ``summary.failed`` with their reason and the run goes on.
    """
    enforce_offline()
    roots = check_roots(paths)
    checked = parse_groups(groups)
    from enclave.security.policy import AclPolicy

    policy = AclPolicy.load(settings.security.policy_file)  # ConfigError: exit code 2
    if store is None:
        quick = unchanged_run(
            settings, roots, prune=prune, groups=checked, policy=policy, embedder=embedder
        )
        if quick is not None:
            write_last_ingest(settings, roots, quick)
            return quick
        from store.db import Store

        store = Store(settings.lance_dir)
    run = _Run(
        settings,
        roots,
        prune=prune,
        embedder=embedder,
        store=store,
        groups=checked,
        progress=progress,
        policy=policy,
    )
    return run.run()
