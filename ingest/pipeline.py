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
   was written (fragments, the full-text and scalar indexes, and the vector index when one
   is due and ``vector_index.background`` is off: store/ann.py; none of these index builds
   on an index on object storage), then the release step
   (ingest/promotion.py): when anything changed, the head's versions become a candidate
   release, promoted at once under
   ``release.auto_promote`` if the rails and the gate pass; finally the snapshot for the next
   run and ``last-ingest.json`` (ingest/summary.py).

The whole run holds the index's writer lock (store/lock.py): a second ingest, promote or
purge is refused while it runs. Before writing, the head is prepared
(:meth:`store.releases.Releases.prepare_head`): an index from before releases is adopted, and
a head holding a rejected, held or rolled-back release is restored to the live one. Nothing
this run writes is served before it is promoted.

The progress (a bar, or JSON lines on stderr: ingest/progress.py) advances once per file as it
is counted. ``summary.stages`` holds where the
time went, in seconds: ``walk_s``, ``hash_s``, ``parse_wait_s`` (only the time spent waiting
for the parsers), ``clean_s``, ``chunk_s``, ``embed_s``, ``write_s``, ``setup_s``,
``optimize_s`` (when something was written: fragments and the full-text index, see
store/maintain.py), ``embedder_load_s``, ``release_s`` (the release bookkeeping: preparing
the head, recording, rails, promotion, retention), ``prune_s`` (removing the versions
retention dropped) and ``gate_s`` (the gate's evaluation, when one ran).

When the vector index is due (the table reached ``vector_index.ann_min_rows``, or too many
chunks were added since its build) and ``vector_index.background`` is on, a run that wrote to
the live release's table set starts ``enclave index optimize`` in its own process after
releasing the writer lock: the index is built without blocking writers or queries and goes
live as a release of that set. A run into a set built beside the live one (``enclave
reindex``) leaves the build to ``enclave index optimize`` once that set is live; on an index
on object storage no build starts (store/ann.py).

The embedder is loaded only when some document needs embedding: a run over an unchanged
corpus never imports torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from enclave.offline import enforce_offline
from enclave.settings import Settings
from ingest.changes import Plan, leave_snapshot, no_release, plan, unchanged_run
from ingest.embed import Embedding, LazyEmbedder
from ingest.groups import Readers, parse_groups
from ingest.produce import Producer
from ingest.promotion import Outcome, ReleaseHooks, after_ingest
from ingest.snapshot import forget_snapshot, index_signature
from ingest.summary import IngestSummary, write_last_ingest
from ingest.walk import check_roots
from ingest.write import Writer
from models.embedder import Embedder
from store.lock import WriterLock

if TYPE_CHECKING:
    from ingest.progress import IngestProgress, LineProgress, Progress
    from store.db import Store
    from store.releases import Releases


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
        progress: Progress,
        hooks: ReleaseHooks | None = None,
        engine: str = "local",
        ray_address: str | None = None,
        force: frozenset[str] = frozenset(),
        admit: frozenset[str] = frozenset(),
        by: str = "",
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.ray_address = ray_address
        self.embedder = embedder
        self.hooks = hooks
        self.force = force
        self.admit = admit
        self.by = by
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
        if engine == "ray":
            from ingest.ray_engine import whole_run

            write_settings = whole_run(settings)  # the cluster's results: one write
        else:
            write_settings = settings
        self.writer = Writer(
            write_settings, store, self.summary, self.stages, readers, lambda: self.lazy.name
        )

    def _progress(self, walked: Plan) -> IngestProgress | LineProgress:
        """The bar (``progress`` true or ``"bar"``), JSON lines on stderr (``"lines"``), or a
        bar that shows nothing."""
        from ingest.progress import IngestProgress, LineProgress

        total = len(walked.decisions)
        if self.show_progress == "lines" or callable(self.show_progress):
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
                total=total,
                bytes_total=sum(d.file.size for d in work),
                stats=stats,
                sink=self.show_progress if callable(self.show_progress) else None,
            )
        return IngestProgress(enabled=bool(self.show_progress), total=total)

    def run(self) -> IngestSummary:
        t0 = time.perf_counter()
        self.lazy.check_index()
        releases = self._releases()
        tr = time.perf_counter()
        prepared = releases.prepare_head()
        was_dirty = releases.begin_writes()
        self.stages["release_s"] = time.perf_counter() - tr
        self.writer.remove_orphans()
        signature = index_signature(self.store.location)
        state = self.store.documents_state()
        self.stages["setup_s"] = time.perf_counter() - t0 - self.stages["release_s"]
        tw = time.perf_counter()
        walked = plan(self.settings, self.roots, state, self.force)
        self.stages["walk_s"] = time.perf_counter() - tw
        self.summary.files_seen = walked.files_seen
        self.summary.skipped_unsupported = walked.skipped.get("unsupported", 0)
        self.summary.skipped = [{"path": s.path, "reason": s.reason} for s in walked.skips]

        with self._progress(walked) as bar:
            self.writer.tick = bar.advance
            self.writer.record_issues(walked.issues, state)
            if self.engine == "ray":
                from ingest.ray_engine import run_on_ray

                self.summary.engine = run_on_ray(
                    self.settings,
                    walked.decisions,
                    self.readers,
                    self.stages,
                    self.lazy,
                    self.writer,
                    self.embedder,
                    self.ray_address,
                    self.store.embedder_name,
                    admit=self.admit,
                    admitted_by=self.by,
                )
                self.writer.flush()
            else:
                embedding = Embedding(self.settings, self.lazy, self.writer, self.stages)
                with Producer(
                    self.settings,
                    walked.decisions,
                    self.readers,
                    self.stages,
                    admit=self.admit,
                    admitted_by=self.by,
                ) as producer:
                    embedding.drain(producer)
            if self.prune:
                self.writer.prune(state, walked.seen, self.roots)
        if self.readers.may_regroup:
            self.writer.regroup(walked.decisions)
        if self.writer.wrote or prepared.restored_from:
            from store.ann import AnnTuning

            tws = time.perf_counter()
            done = self.store.compact(AnnTuning.from_settings(self.settings.vector_index))
            self.summary.index = {
                k: v
                for k, v in done.items()
                if k in ("scalar_built", "vector_due", "vector_build_s")
            }
            self.stages["optimize_s"] = time.perf_counter() - tws
        self.stages["embedder_load_s"] = self.lazy.load_seconds
        self.summary.stages = self.stages
        self.summary.embedder = self.lazy.name or (self.store.embedder_name or "")
        self.summary.seconds = time.perf_counter() - t0
        outcome = self._release(releases, prepared.parent, self.writer.wrote or was_dirty)
        if outcome is not None or prepared.restored_from:
            tp = time.perf_counter()
            self.store.prune()  # what the releases dropped now, and the run's own steps
            releases.drop_unused_sets()  # table sets no retained release needs (reindex)
            self.stages["prune_s"] = time.perf_counter() - tp
        if outcome is not None and outcome.blocked:
            forget_snapshot(self.settings.data_dir)  # the next run restores the head
        else:
            changed = self.writer.wrote or prepared.restored_from or outcome is not None
            read = None if changed else (signature, state)
            leave_snapshot(self.settings, self.store, read)
        self.summary.seconds = time.perf_counter() - t0
        write_last_ingest(self.settings, self.roots, self.summary)
        return self.summary

    def _releases(self) -> Releases:
        from store.releases import Releases

        return Releases(self.store)

    def _release(self, releases: Releases, parent: str | None, changed: bool) -> Outcome | None:
        """The release step: a candidate when anything changed, promoted when it may be."""
        tr = time.perf_counter()
        if not changed:
            releases.end_without_changes()
            live = releases.registry.live()
            self.summary.release = no_release(live.release if live else None)
            self.stages["release_s"] += time.perf_counter() - tr
            return None
        rec = releases.record_candidate(parent, self.summary.to_dict())
        loaded = self.lazy.get() if self.lazy.loaded else None
        outcome = after_ingest(self.settings, releases, rec, self.hooks, loaded)
        gate_s = float((outcome.gate or {}).get("seconds") or 0.0)
        if gate_s:
            self.stages["gate_s"] = gate_s
        self.stages["release_s"] += time.perf_counter() - tr - gate_s
        live = releases.registry.live()
        self.summary.release = {**outcome.to_dict(), "live": live.release if live else None}
        return outcome


def ingest_paths(
    settings: Settings,
    paths: Sequence[str | Path],
    *,
    prune: bool = False,
    embedder: Embedder | None = None,
    store: Store | None = None,
    groups: list[str] | None = None,
    progress: Progress = False,
    hooks: ReleaseHooks | None = None,
    table_set: str | None = None,
    inherit_groups: dict[str, list[str]] | None = None,
    loaded: Callable[[Embedder], None] | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    force: frozenset[str] = frozenset(),
    admit: frozenset[str] = frozenset(),
    by: str = "enclave ingest",
) -> IngestSummary:
    """Ingest files and folders into the index at ``settings.data_dir``, as a candidate
    release (promoted at once under ``release.auto_promote`` when it passes).

    Raises :class:`~enclave.errors.UsageError` for a missing path or a bad group name,
    :class:`~enclave.errors.EmbedderMismatchError` when the index was built with another
    embedder and :class:`~store.lock.WriterBusyError` while another process writes to the
    index. Files that cannot be ingested do not raise: they are listed in ``summary.failed``
    with their reason and the run goes on. ``hooks`` lend the gate (``eval/``).

    ``progress``: true (or ``"bar"``) shows a bar on stderr, ``"lines"`` writes JSON progress
    lines to stderr (ingest/progress.py), a function receives each line's object, false shows
    nothing.

    The run writes to the table set of the live release (store/sets.py), or to
    ``table_set`` (``enclave reindex``: a new set built beside the live one), whose new
    documents get the groups ``inherit_groups`` names for their paths. ``loaded`` receives
    the embedder when the run loaded one (a long-lived caller keeps it for its next runs).

    ``engine``: ``"local"`` (the default: this process and its parser workers) or ``"ray"``
    (parse, chunk and embed on a Ray cluster at ``ray_address``, default a local one started
    for the run: ingest/ray_engine.py); the same rules, summary and releases either way.
    ``force`` (document ids) are parsed again even when unchanged, ``admit`` (document ids)
    are indexed whatever their parse-quality score, recorded in their rows as admitted by
    ``by`` (``enclave quarantine retry|release``: ingest/quarantine.py).
    """
    enforce_offline()
    if engine not in ("local", "ray"):
        from enclave.errors import UsageError

        raise UsageError(f"unknown ingest engine {engine!r}: local or ray")
    roots = check_roots(paths)
    checked = parse_groups(groups)
    from enclave.security.policy import AclPolicy

    policy = AclPolicy.load(settings.security.policy_file)  # ConfigError: exit code 2
    with WriterLock(settings.index, by):
        if store is None and table_set is None and not force:
            quick = unchanged_run(
                settings, roots, prune=prune, groups=checked, policy=policy, embedder=embedder
            )
            if quick is not None:
                write_last_ingest(settings, roots, quick)
                return quick
        if store is None:
            from store.db import Store
            from store.sets import active_tables

            tables = table_set if table_set is not None else active_tables(settings.index)
            from store.ann import AnnTuning

            store = Store(
                settings.index,
                tables=tables,
                tuning=AnnTuning.from_settings(settings.vector_index),
            )
        run = _Run(
            settings,
            roots,
            prune=prune,
            embedder=embedder,
            store=store,
            readers=Readers(policy, checked, tuple(roots), inherit_groups),
            progress=progress,
            hooks=hooks,
            engine=engine,
            ray_address=ray_address,
            force=force,
            admit=admit,
            by=by,
        )
        try:
            summary = run.run()
        finally:
            if loaded is not None and embedder is None and run.lazy.loaded:
                loaded(run.lazy.get())
    if summary.index.get("vector_due") and settings.vector_index.background:
        from store.index_build import start_background_build
        from store.sets import active_tables

        if run.store.tables != active_tables(settings.index):
            return summary  # a set built beside the live one: optimized once it is live

        # the vector index builds after the run, outside the writer lock (store/ann.py)
        summary.index["background_build_pid"] = start_background_build(settings)
    return summary
