"""The batch ingestion pipeline: walk -> hash -> parse -> clean -> chunk -> embed -> write.

Three things run at once:

* the parser worker processes (``ParserPool``), fed lazily;
* a *producer* thread that hashes files, drives the pool and cleans each parsed document
  (ingest/produce.py);
* the calling thread, which chunks each document, embeds chunks in batches across documents
  (ingest/embed.py) and writes to LanceDB in large, bounded batches (ingest/write.py).

A bounded queue between the producer and the embedder keeps memory flat whatever the corpus
size, and keeps the parsers busy while the model embeds.

A run, in order:

1. without a store given, a run with nothing to do is decided from the snapshot, without
   opening LanceDB (:func:`ingest.changes.unchanged_run`); otherwise the full path follows;
2. another embedder than the index's is refused before any work, chunks left by an
   interrupted run are removed and the documents table is read;
3. the walk, and a decision per file by the incremental rules (ingest/changes.py);
4. failed rows for the files the walk could not read, then producer, embedder and writer
   until every decided file is counted, then ``prune``;
5. new groups for unchanged documents (ingest/groups.py), the index optimised when something
   was written, the snapshot for the next run, and ``last-ingest.json`` (ingest/summary.py).

The progress (a bar, or JSON lines on stderr: ingest/progress.py) advances once per file as it
is counted. ``summary.stages`` holds where the
time went, in seconds: ``walk_s``, ``hash_s``, ``parse_wait_s`` (only the time spent waiting
for the parsers), ``clean_s``, ``chunk_s``, ``embed_s``, ``write_s``, ``setup_s``,
``optimize_s`` (when something was written) and ``embedder_load_s``.

The embedder is loaded only when some document needs embedding: a run over an unchanged
corpus never imports torch.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from enclave.offline import enforce_offline
from enclave.settings import Settings
from ingest.changes import Plan, leave_snapshot, plan, unchanged_run
from ingest.embed import Embedding, LazyEmbedder
from ingest.groups import Readers, parse_groups
from ingest.produce import Producer
from ingest.snapshot import index_signature
from ingest.summary import IngestSummary, write_last_ingest
from ingest.walk import check_roots
from ingest.write import Writer
from models.embedder import Embedder

if TYPE_CHECKING:
    from ingest.progress import IngestProgress, LineProgress
    from store.db import Store


class _Run:
    """One full run over ``roots``: wires the stages and times them."""

    def __init__(
        self,
        settings: Settings,
        roots: list[str],
        *,
        prune: bool,
        embedder: Embedder | None,
        store: Store,
        readers: Readers,
        progress: bool | str,
    ) -> None:
        self.settings = settings
        self.roots = roots
        self.prune = prune
        self.store = store
        self.readers = readers
        self.show_progress = progress
        self.summary = IngestSummary(data_dir=str(settings.data_dir))
        self.stages: dict[str, float] = {
            "walk_s": 0.0,
            "hash_s": 0.0,
            "parse_wait_s": 0.0,
            "clean_s": 0.0,
            "chunk_s": 0.0,
            "embed_s": 0.0,
            "write_s": 0.0,
        }
        self.lazy = LazyEmbedder(settings, store, embedder)
        self.writer = Writer(
            settings, store, self.summary, self.stages, readers, lambda: self.lazy.name
        )

    def _progress(self, walked: Plan) -> IngestProgress | LineProgress:
        """The bar (``progress`` true or ``"bar"``), JSON lines on stderr (``"lines"``), or a
        bar that shows nothing."""
        from ingest.progress import IngestProgress, LineProgress

        total = len(walked.decisions)
        if self.show_progress == "lines":
            work = [d for d in walked.decisions if d.must_hash or d.retry]
            summary = self.summary

            def stats() -> dict[str, int]:
                return {
                    "ingested": summary.ingested,
                    "updated": summary.updated,
                    "unchanged": summary.unchanged,
                    "failed": len(summary.failed),
                    "chunks_written": self.writer.chunks_written,
                }

            return LineProgress(
                total=total, bytes_total=sum(d.file.size for d in work), stats=stats
            )
        return IngestProgress(enabled=bool(self.show_progress), total=total)

    def run(self) -> IngestSummary:
        t0 = time.perf_counter()
        self.lazy.check_index()
        self.writer.remove_orphans()
        signature = index_signature(self.store.path)
        state = self.store.documents_state()
        self.stages["setup_s"] = time.perf_counter() - t0
        tw = time.perf_counter()
        walked = plan(self.settings, self.roots, state)
        self.stages["walk_s"] = time.perf_counter() - tw
        self.summary.files_seen = walked.files_seen
        self.summary.skipped_unsupported = walked.skipped.get("unsupported", 0)
        self.summary.skipped = [{"path": s.path, "reason": s.reason} for s in walked.skips]

        with self._progress(walked) as bar:
            self.writer.tick = bar.advance
            self.writer.record_issues(walked.issues, state)
            embedding = Embedding(self.settings, self.lazy, self.writer, self.stages)
            with Producer(self.settings, walked.decisions, self.readers, self.stages) as producer:
                embedding.drain(producer)
            if self.prune:
                self.writer.prune(state, walked.seen, self.roots)
        if self.readers.may_regroup:
            self.writer.regroup(walked.decisions)
        if self.writer.wrote:
            tws = time.perf_counter()
            self.store.optimize()
            self.stages["optimize_s"] = time.perf_counter() - tws
        leave_snapshot(self.settings, self.store, None if self.writer.wrote else (signature, state))
        self.stages["embedder_load_s"] = self.lazy.load_seconds
        self.summary.stages = self.stages
        self.summary.embedder = self.lazy.name or (self.store.embedder_name or "")
        self.summary.seconds = time.perf_counter() - t0
        write_last_ingest(self.settings, self.roots, self.summary)
        return self.summary


def ingest_paths(
    settings: Settings,
    paths: Sequence[str | Path],
    *,
    prune: bool = False,
    embedder: Embedder | None = None,
    store: Store | None = None,
    groups: list[str] | None = None,
    progress: bool | str = False,
) -> IngestSummary:
    """Ingest files and folders into the index at ``settings.data_dir``.

    Raises :class:`~enclave.errors.UsageError` for a missing path or a bad group name and
    :class:`~enclave.errors.EmbedderMismatchError` when the index was built with another
    embedder. Files that cannot be ingested do not raise: they are listed in
    ``summary.failed`` with their reason and the run goes on.

    ``progress``: true (or ``"bar"``) shows a bar on stderr, ``"lines"`` writes JSON progress
    lines to stderr (ingest/progress.py), false shows nothing.
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
        readers=Readers(policy, checked, tuple(roots)),
        progress=progress,
    )
    return run.run()
