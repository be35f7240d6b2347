"""The Ray engine of ``enclave ingest --engine ray``: parsing, chunking and embedding as Ray
Data stages across a cluster's workers; deciding and writing stay on the driver.

A run, as with the local engine (ingest/pipeline.py), holds the writer lock, prepares the
head and walks the roots; then:

1. **Decide, on the driver.** The incremental rules (ingest/changes.py) and the hashing of
   the local producer (ingest/produce.py) run unchanged: unchanged files are counted, files
   whose content did not change only have their rows touched, unreadable files fail. Only
   new and changed files go to the cluster.
2. **Parse and clean** (``ParseStage``, Ray actors): each actor keeps a parser pool of one
   worker process (ingest/parser_pool.py: a fresh interpreter per file under the same time
   limit and memory cap, replaced when it hangs or dies), so a bad file fails exactly as
   locally, with the same reason, and never takes a Ray worker down.
3. **Chunk and embed** (``EmbedStage``, Ray actors holding the embedder, loaded once per
   actor): the local engine's own chunk-and-embed loop (ingest/embed.py) over each batch of
   documents, so chunk boundaries, ids, truncation and empty documents are the same.
4. **Write, on the driver,** in one batch at the end (ingest/write.py): the changed
   documents' old chunks deleted, every new chunk added by one commit, the document rows by
   one merge; then the candidate release, the rails, the gate and the promotion as always.

The cluster is ``--ray-address`` (``ray://`` or ``host:port``; every worker needs the same
Enclave installed, the files readable at the same paths, and the embedder's model) or, by
default, a local one started for the run and stopped after it. Ray's usage statistics are
switched off before it starts (no egress), and the dashboard is not started.

The driver holds every embedded chunk of the run until the write (the price of one commit):
about 2 KB per chunk with 384-dimension vectors, so 1 GB per 500,000 chunks.
"""

from __future__ import annotations

import os
import pickle
import queue
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from enclave.errors import ConfigError
from enclave.settings import Settings
from ingest.changes import Decision
from ingest.groups import Readers
from ingest.produce import Item, Producer
from models.embedder import Embedder

if TYPE_CHECKING:
    from ingest.embed import LazyEmbedder
    from ingest.write import Writer

#: documents per parse task and per embedding task
PARSE_BATCH = 16
EMBED_BATCH = 64
#: the environment the cluster's workers need here (offline switches, caches)
_PASSED_ENV = (
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "HF_HUB_DISABLE_TELEMETRY",
    "DO_NOT_TRACK",
    "SCARF_NO_ANALYTICS",
    "TOKENIZERS_PARALLELISM",
    "XDG_CACHE_HOME",
    "XDG_CONFIG_HOME",
    "HOME",
)
_ROOT = Path(__file__).resolve().parents[1]


def whole_run(settings: Settings) -> Settings:
    """``settings`` with the writer's batches as large as the run: one write at the end."""
    big = settings.ingest.model_copy(
        update={"write_batch_chunks": 10**12, "write_batch_docs": 10**12, "commit_interval_s": 1e9}
    )
    return settings.model_copy(update={"ingest": big})


class _Decide(Producer):
    """The local producer's decisions and hashing, on the driver, without its thread."""

    def __init__(
        self,
        settings: Settings,
        decisions: list[Decision],
        readers: Readers,
        stages: Any,
        admit: frozenset[str],
        admitted_by: str,
    ) -> None:
        super().__init__(settings, decisions, readers, stages, admit=admit, admitted_by=admitted_by)
        self.items: list[Item] = []

    def _put(self, item: Item | BaseException | None) -> None:
        if isinstance(item, Item):
            self.items.append(item)


def run_on_ray(
    settings: Settings,
    decisions: list[Decision],
    readers: Readers,
    stages: dict[str, float],
    lazy: LazyEmbedder,
    writer: Writer,
    embedder: Embedder | None,
    address: str | None,
    bound: str | None,
    *,
    admit: frozenset[str] = frozenset(),
    admitted_by: str = "",
) -> dict[str, Any]:
    """Send the new and changed files of ``decisions`` through the cluster and hand every
    item to ``writer`` (which the caller flushes). Returns the summary's ``engine`` object."""
    decide = _Decide(settings, decisions, readers, stages, admit, admitted_by)
    sources = list(decide._sources())
    for item in decide.items:
        if item.kind == "unchanged":
            writer.skip(item)
        else:
            writer.add(item)
    info: dict[str, Any] = {"name": "ray", "documents_sent": len(sources)}
    if not sources:
        return info
    olds = {d.file.path: d.old for d in decisions if d.old is not None}
    started = time.perf_counter()
    ray, owned = _connect(address)
    try:
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.verbose_progress = False
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        parsers = max(1, cpus // 3)
        embedders = max(1, cpus - parsers)
        info.update({"address": address or "local", "cpus": cpus})
        model: Any = _shippable(embedder)
        if model is None:  # each actor loads the model the settings name, once
            from models.variants import for_index

            model = for_index(settings.embedder, bound)
        rows = [{"doc": pickle.dumps((src, olds.get(src.path)))} for src in sources]
        ds = ray.data.from_items(rows)
        ds = ds.map_batches(
            ParseStage,
            fn_constructor_kwargs={
                "settings": settings,
                "admit": admit,
                "admitted_by": admitted_by,
            },
            batch_size=PARSE_BATCH,
            concurrency=parsers,
        )
        ds = ds.map_batches(
            EmbedStage,
            fn_constructor_kwargs={"settings": settings, "model": model},
            batch_size=EMBED_BATCH,
            concurrency=embedders,
        )
        for row in ds.iter_rows():
            done: Item = pickle.loads(row["doc"])
            if done.kind == "chunks":
                lazy.get()  # binds the index to the embedder before the first chunk
            for key, seconds in pickle.loads(row["stages"]).items():
                stages[key] = stages.get(key, 0.0) + seconds
            writer.add(done)
    finally:
        if owned:
            ray.shutdown()
    stages["cluster_s"] = time.perf_counter() - started
    return info


def _shippable(embedder: Embedder | None) -> Embedder | None:
    """The embedder object itself when it is small enough to send to the actors (the hash
    embedder of tests); a real model is loaded by each actor from the settings instead."""
    if embedder is None:
        return None
    try:
        size = len(pickle.dumps(embedder))
    except Exception:  # ONNX Runtime sessions and the like do not pickle
        return None
    return embedder if size < 1 << 20 else None


def _connect(address: str | None) -> tuple[Any, bool]:
    """Ray, connected to ``address`` or to a local cluster started here (``owned``)."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"  # no egress: Ray reports usage otherwise
    try:
        import ray
    except ImportError:
        raise ConfigError("--engine ray needs Ray: pip install 'enclave-rag[ray]'") from None
    import logging

    for name in ("ray", "ray.data"):  # stderr carries the run's progress lines
        logging.getLogger(name).setLevel(logging.WARNING)
    if ray.is_initialized():
        return ray, False
    env = {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    path = [str(_ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(path)
    try:
        if address:
            ray.init(address=address, log_to_driver=False, runtime_env={"env_vars": env})
        else:
            ray.init(include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env})
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot reach the Ray cluster at {address or 'local'}: {exc}") from None
    return ray, True


class ParseStage:
    """A Ray actor that parses, scores and cleans documents with a one-process parser pool
    and the local producer's own preparation (quality score, quarantine, redaction)."""

    def __init__(self, settings: Settings, admit: frozenset[str], admitted_by: str) -> None:
        from enclave.offline import enforce_offline
        from ingest.parser_pool import ParserPool

        enforce_offline()
        self.settings = settings
        self.pool = ParserPool(settings.ingest, workers=1)
        self.admit = admit
        self.admitted_by = admitted_by

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        pairs = [pickle.loads(b) for b in batch["doc"]]
        olds = {src.path: old for src, old in pairs}
        stages = {"clean_s": 0.0, "parse_s": 0.0}
        prepare = Producer(
            self.settings,
            [],
            cast(Readers, None),  # only used to decide, on the driver
            stages,
            admit=self.admit,
            admitted_by=self.admitted_by,
        )
        out = []
        t = time.perf_counter()
        for src, result in self.pool.imap(src for src, _ in pairs):
            item = prepare._prepare(src, olds[src.path], result)
            out.append(pickle.dumps(item))
        stages["parse_s"] = time.perf_counter() - t - stages["clean_s"]
        return {"doc": out, "stages": _spread(stages, len(out))}


def _spread(stages: dict[str, float], n: int) -> list[bytes]:
    """A batch's stage times on its first row (the others carry none)."""
    return [pickle.dumps(stages if i == 0 else {}) for i in range(n)]


class EmbedStage:
    """A Ray actor holding the embedder: chunks and embeds documents with the local
    engine's own loop (ingest/embed.py), each document whole."""

    def __init__(self, settings: Settings, model: Any) -> None:
        from enclave.offline import enforce_offline

        enforce_offline()
        if isinstance(model, Embedder) or hasattr(model, "embed"):
            self.embedder = model
        else:
            from models.loading import load_embedder

            self.embedder = load_embedder(model)
        self.settings = whole_run(settings)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from ingest.embed import Embedding

        items = [pickle.loads(b) for b in batch["doc"]]
        collected = _Collected()
        stages = {"chunk_s": 0.0, "embed_s": 0.0}
        embedding = Embedding(self.settings, _Given(self.embedder), collected, stages)  # type: ignore[arg-type]
        embedding.drain(_Items(items))  # type: ignore[arg-type]
        out = [pickle.dumps(i) for i in collected.items]
        extra = [pickle.loads(s) for s in batch["stages"]]
        merged: dict[str, float] = dict(stages)
        for part in extra:
            for key, seconds in part.items():
                merged[key] = merged.get(key, 0.0) + seconds
        return {"doc": out, "stages": _spread(merged, len(out))}


class _Given:
    """The embedder an actor holds, where the loop expects a LazyEmbedder."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder
        self.loaded = True

    def get(self) -> Embedder:
        return self._embedder


class _Items:
    """A batch of items, where the loop expects the producer's queue."""

    def __init__(self, items: list[Item]) -> None:
        self._queue: queue.Queue[Item | None] = queue.Queue()
        for item in items:
            self._queue.put(item)
        self._queue.put(None)

    def poll(self, wait_s: float) -> Item | None:
        return self._queue.get_nowait()

    def get_nowait(self) -> Item | None:
        return self._queue.get_nowait()

    def get(self) -> Item | None:
        return self._queue.get_nowait()

    def release(self, item: Item) -> None:
        item.held = 0


class _Collected:
    """What the loop hands to the writer, kept for the driver."""

    def __init__(self) -> None:
        self.items: list[Item] = []

    def add(self, item: Item) -> None:
        self.items.append(item)

    def add_slice(self, item: Item) -> None:  # never: documents are whole (whole_run)
        raise RuntimeError("a document was sliced in the Ray engine")

    def skip(self, item: Item) -> None:
        self.items.append(item)

    def poll(self) -> None:
        return None

    def flush(self) -> None:
        return None
