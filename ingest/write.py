"""Writes to the index, and the counts of the summary.

Documents reach the :class:`Writer` one by one (ingest/embed.py) and are written in large,
bounded batches: a batch goes out once it holds ``ingest.write_batch_chunks`` chunks or
``ingest.write_batch_docs`` documents, once its first document has waited
``ingest.commit_interval_s`` (:meth:`Writer.poll`), before a slice, and the rest at the end
of the run. A document too big to wait for (still being cut after ``write_batch_chunks``
embedded chunks) is written in slices (:meth:`Writer.add_slice`) behind a row that does not
claim it complete (:data:`INCOMPLETE`); its complete row is written after its last chunks.
``Store.replace_documents`` deletes a document's old chunks before adding the new ones and
writes its row last, so a document whose write was interrupted has a missing or stale row and
the next run redoes it, never doubles it; chunks left without a row are removed when a run
starts (:meth:`Writer.remove_orphans`).

What each item becomes:

* ``chunks``: a document row (``ok``; its ``error`` says why when it was indexed in part) and
  a chunk row per chunk, with the document's groups and, under ``security.flag_injection``,
  the prompt-injection flags of each chunk;
* ``failed`` and ``empty``: a row that says why, and no chunks (old chunks go);
* ``quarantined``: a row with status ``quarantined``, the reason as its ``error`` and the
  score and signals in ``quality``, and no chunks (old chunks go): nothing that reads chunks
  can serve it;
* ``touch``: the stored row with its new size, mtime and groups, nothing re-embedded.

The summary counts a file only once it is safely written; unchanged files are counted as
they pass. Files the walk could not read get a ``failed`` row, and their old chunks go.
``prune`` deletes the documents under the roots whose files are gone, and a run with
``--groups`` or an ACL policy gives unchanged documents their new groups without re-embedding
(ingest/groups.py).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from enclave.settings import Settings
from ingest.changes import Decision
from ingest.chunk import Chunk
from ingest.groups import Readers
from ingest.produce import Item
from ingest.summary import IngestSummary, now_iso
from ingest.walk import WalkIssue, is_under
from store.records import (
    STATUS_EMPTY,
    STATUS_FAILED,
    STATUS_OK,
    STATUS_QUARANTINED,
    ChunkRecord,
    DocumentRecord,
    fs_path_for,
    safe_text,
)

if TYPE_CHECKING:
    from store.db import Store

log = logging.getLogger(__name__)

#: the error of a document whose chunks are being written in slices: the row does not claim
#: the document complete, and a run that stops before the last slice leaves it to be redone
INCOMPLETE = (
    "incomplete: its chunks are being written, or the run writing them stopped; "
    "the next ingest redoes it"
)


class Writer:
    """Everything one run writes to ``store``, counted in ``summary``."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        summary: IngestSummary,
        stages: dict[str, float],
        readers: Readers,
        embedder_name: Callable[[], str],
    ) -> None:
        self.settings = settings
        self.store = store
        self.summary = summary
        self.stages = stages
        self.readers = readers
        self._embedder_name = embedder_name
        #: something was written in this run (the index is optimised, the snapshot read again)
        self.wrote = False
        #: called once a file is counted, with its path, its size and whether it needed work
        #: (hashing or parsing): the progress bar or lines
        self.tick: Callable[[str, int, bool], None] = lambda _p, _s, _w: None
        #: chunks committed so far in this run, slices of unfinished documents included
        self.chunks_written = 0
        self._ready: list[Item] = []
        self._ready_since = 0.0  # when the oldest queued document was queued

    # ------------------------------------------------------------------ batches
    def add(self, item: Item) -> None:
        """Queue a document for writing; write the batch when it is full."""
        if not self._ready:
            self._ready_since = time.monotonic()
        self._ready.append(item)
        if self._full():
            self.flush()

    def poll(self) -> None:
        """Write the queued documents once the oldest has waited ``ingest.commit_interval_s``
        (called often by the calling thread): a document is never held back for long by
        documents that take long to parse or embed."""
        if self._ready and time.monotonic() - self._ready_since >= self._interval():
            self.flush()

    def _interval(self) -> float:
        return float(self.settings.ingest.commit_interval_s)

    def flush(self) -> None:
        """Write what is queued."""
        if self._ready:
            ready, self._ready = self._ready, []
            self._write(ready)

    def add_slice(self, item: Item) -> None:
        """Write the embedded chunks of a document still being cut (ingest/embed.py), after
        the documents queued so far.

        The first slice replaces the document's row by one that does not claim it complete
        (status ``failed``, error :data:`INCOMPLETE`, no sha256: a run that stops before the
        last slice leaves a document the next run redoes) and deletes its old chunks; then
        each slice's chunks are added. The last chunks and the complete row go with the
        document's final write (:meth:`flush`)."""
        self.flush()
        t = time.perf_counter()
        n = item.embedded
        rows = self._chunk_rows(item, item.chunks[:n], item.vectors[:n])
        if item.written == 0:
            row = self._record(item, STATUS_FAILED, 0, error=INCOMPLETE, sha256="")
            self.summary.chunks_deleted += self.store.replace_documents([row], [])
        self.store.append_chunks(rows)
        self.wrote = True
        self.chunks_written += n
        item.written += n
        del item.chunks[:n]
        del item.vectors[:n]
        item.embedded = 0
        self.stages["write_s"] += time.perf_counter() - t

    def skip(self, item: Item) -> None:
        """Count an unchanged file (nothing to write)."""
        self.summary.unchanged += 1
        if item.old is not None and item.old.status != STATUS_OK:
            self.summary.previously_failed += 1  # failed or empty before, still unchanged
        self.tick(item.source.path, item.source.size, False)

    def _full(self) -> bool:
        ing = self.settings.ingest
        chunks = sum(len(i.chunks) for i in self._ready)
        return chunks >= ing.write_batch_chunks or len(self._ready) >= ing.write_batch_docs

    def _record(
        self,
        item: Item,
        status: str,
        chunk_count: int,
        *,
        error: str | None = None,
        sha256: str | None = None,
    ) -> DocumentRecord:
        src = item.source
        if error is None:
            error = item.truncated if status == STATUS_OK else item.error
        return DocumentRecord(
            doc_id=src.doc_id,
            path=src.path,
            title=safe_text(
                item.title or (item.old.title if item.old and status != STATUS_OK else "")
            ),
            sha256=src.sha256 if sha256 is None else sha256,
            size=src.size,
            mtime=src.mtime,
            parser=item.parser,
            status=status,
            error=safe_text(error),
            chunk_count=chunk_count,
            ingested_at=now_iso(),
            embedder=self._embedder_name(),
            groups=list(src.groups),
            quality=dict(item.quality),
        )

    def _chunk_rows(self, item: Item, chunks: list[Chunk], vectors: list[Any]) -> list[ChunkRecord]:
        """Rows of ``chunks`` of ``item``, with the document's groups and, under
        ``security.flag_injection``, each chunk's prompt-injection flags."""
        src = item.source
        flag = self.settings.security.flag_injection
        if flag:
            from enclave.security.injection import flag_injection
        rows: list[ChunkRecord] = []
        for c, vec in zip(chunks, vectors, strict=True):
            flags = flag_injection(c.text) if flag else []
            if flags:
                self.summary.flagged_chunks += 1
            rows.append(
                ChunkRecord(
                    chunk_id=c.chunk_id,
                    doc_id=c.doc_id,
                    ordinal=c.ordinal,
                    text=c.text,
                    vector=vec,
                    source=src.path,
                    title=safe_text(item.title),
                    page=c.page,
                    heading_path=c.heading_path,
                    char_start=c.char_start,
                    char_end=c.char_end,
                    tokens=c.tokens,
                    groups=list(src.groups),
                    flags=flags,
                )
            )
        return rows

    def _write(self, items: list[Item]) -> None:
        t = time.perf_counter()
        docs: list[DocumentRecord] = []
        chunks: list[ChunkRecord] = []
        touched: list[DocumentRecord] = []
        sliced: list[DocumentRecord] = []  # documents written in slices: rows go last
        sliced_chunks: list[ChunkRecord] = []
        for item in items:
            src = item.source
            if item.kind == "touch":
                assert item.old is not None
                old = item.old
                if (old.size, old.mtime, sorted(old.groups)) == (
                    src.size,
                    src.mtime,
                    sorted(src.groups),
                ):
                    continue  # nothing to write (a rehash of an unchanged file)
                row = DocumentRecord(**{**old.__dict__})
                row.size, row.mtime = src.size, src.mtime
                row.groups = list(src.groups)
                touched.append(row)
                continue
            if item.kind == "chunks":
                rows = self._chunk_rows(item, item.chunks, item.vectors)
                if item.written:
                    sliced.append(self._record(item, STATUS_OK, item.chunk_count))
                    sliced_chunks.extend(rows)
                else:
                    docs.append(self._record(item, STATUS_OK, item.chunk_count))
                    chunks.extend(rows)
            else:
                status = {"empty": STATUS_EMPTY, "quarantined": STATUS_QUARANTINED}.get(
                    item.kind, STATUS_FAILED
                )
                docs.append(self._record(item, status, 0))
        if docs:
            self.summary.chunks_deleted += self.store.replace_documents(docs, chunks)
            self.wrote = True
        if sliced:
            # their earlier slices are in: add the rest, then the rows that complete them
            self.store.append_chunks(sliced_chunks)
            self.store.upsert_document_rows(sliced)
            self.wrote = True
        if touched:
            self.store.upsert_document_rows(touched)
            self.wrote = True
        self.stages["write_s"] += time.perf_counter() - t
        # the summary counts a file once it is safely written
        self.chunks_written += len(chunks) + len(sliced_chunks)
        for item in items:
            self._count(item)
            self.tick(item.source.path, item.source.size, True)

    def _count(self, item: Item) -> None:
        s = self.summary
        if item.kind == "touch":
            s.unchanged += 1
        elif item.kind == "chunks":
            s.chunks_added += item.chunk_count
            if item.truncated:
                s.truncated.append({"path": item.source.path, "reason": item.truncated})
            if item.quality.get("admitted") and item.quality.get("reason"):
                s.admitted.append({"path": item.source.path, "reason": item.quality["reason"]})
            for kind, n in item.redacted.items():
                s.redacted[kind] = s.redacted.get(kind, 0) + n
            if item.old is None:
                s.ingested += 1
            else:
                s.updated += 1
        elif item.kind == "quarantined":
            s.quarantined.append(
                {
                    "path": item.source.path,
                    "reason": safe_text(item.error),
                    "score": item.quality.get("score"),
                }
            )
        else:
            if item.kind == "empty":
                s.empty += 1
            s.failed.append({"path": item.source.path, "error": safe_text(item.error)})

    # -------------------------------------------------------------- whole index
    def remove_orphans(self) -> None:
        """Remove the chunks an interrupted run left without a document row."""
        removed = self.store.remove_orphan_chunks()
        if removed:
            log.info("removed %d orphan chunks left by an interrupted run", removed)
            self.summary.chunks_deleted += removed
            self.wrote = True

    def record_issues(self, issues: list[WalkIssue], state: dict[str, DocumentRecord]) -> None:
        """List what the walk could not read; a file among them gets a ``failed`` row."""
        rows: list[DocumentRecord] = []
        for issue in issues:
            self.summary.failed.append({"path": issue.path, "error": issue.error})
            if not issue.is_file or not issue.doc_id:
                continue
            old = state.get(issue.path)
            rows.append(
                DocumentRecord(
                    doc_id=issue.doc_id,
                    path=issue.path,
                    title=old.title if old else "",
                    status=STATUS_FAILED,
                    error=issue.error,
                    ingested_at=now_iso(),
                    embedder=self._embedder_name(),
                    groups=self.readers.groups_for(issue.path, old),
                )
            )
        if rows:
            # an unreadable file's old chunks are stale: its row now says why it is missing
            self.summary.chunks_deleted += self.store.replace_documents(rows, [])
            self.wrote = True

    def prune(self, state: dict[str, DocumentRecord], seen: set[str], roots: list[str]) -> None:
        """Delete the documents under ``roots`` whose files are gone."""
        gone = [
            rec.doc_id
            for path, rec in state.items()
            if path not in seen
            and any(is_under(path, r) for r in roots)
            and not os.path.exists(fs_path_for(path, rec.doc_id))
        ]
        if gone:
            t = time.perf_counter()
            self.summary.chunks_deleted += self.store.delete_documents(gone)
            self.summary.deleted += len(gone)
            self.wrote = True
            self.stages["write_s"] += time.perf_counter() - t

    def regroup(self, decisions: list[Decision]) -> None:
        """New readers for unchanged documents (``--groups`` or an edited ACL policy),
        without re-embedding: one update per distinct group list."""
        by_groups: dict[tuple[str, ...], list[str]] = {}
        for d in decisions:
            if d.old is None:
                continue
            new = sorted(self.readers.groups_for(d.file.path, d.old))
            if new != sorted(d.old.groups):
                by_groups.setdefault(tuple(new), []).append(d.file.doc_id)
        for groups, ids in by_groups.items():
            self.store.set_groups(ids, list(groups))
            self.wrote = True
