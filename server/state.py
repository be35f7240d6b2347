"""What one app holds: settings, the heavy resources (loaded once), the services over them.

The index is read through a :class:`store.live.LiveIndex`: the live release's pinned view,
followed as promotions and rollbacks move the pointer; no service ever reads the writer's
head. ``create_app(store=...)`` still takes a :class:`store.db.Store`: the server follows the
live release of that store's index.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from enclave.errors import EmbedderMismatchError, EnclaveError
from rag.prompt import SYSTEM_PROMPT
from rag.retrieval import Retriever
from rag.service import RagService
from server.generation_queue import GenerationQueue
from server.prometheus import Metrics
from server.services.admission import Admission
from server.services.chat import ChatService
from server.services.documents import DocumentService
from server.services.embeddings import EmbeddingService
from server.services.lineage import LineageService
from server.services.search import SearchService
from store.live import LiveIndex

if TYPE_CHECKING:
    from enclave.security.services import SecurityServices
    from enclave.settings import Settings
    from models.embedder import Embedder
    from models.generator import Generator
    from store.ann import AnnTuning
    from store.db import Store
    from store.view import IndexView

log = logging.getLogger("enclave.server")


class Embedders:
    """The embedders a server holds, by name: the configured one, and the one of each table
    set (store/sets.py) a promotion made live, loaded from the settings the set recorded
    (``enclave-index.json`` ``build.embedder``). A release of another set is served once its
    embedder is loaded (in the background: the current release is served meanwhile), so a
    question is always embedded by the model its release's vectors came from."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._by_name: dict[str, Embedder] = {}
        self._loading: set[str] = set()
        self._failed: dict[str, str] = {}
        self._lock = threading.Lock()

    def add(self, embedder: Embedder) -> None:
        with self._lock:
            self._by_name.setdefault(embedder.name, embedder)

    def get(self, name: str | None) -> Embedder | None:
        return None if name is None else self._by_name.get(name)

    def ready_for(self, view: IndexView, *, wait: bool = False) -> bool:
        """Whether the embedder of ``view``'s tables is loaded; starts loading it when not
        (``wait``: loads it now)."""
        name = view.embedder_name
        if name is None or name in self._by_name:
            return True
        build = (view.meta.get("build") or {}).get("embedder")
        if not isinstance(build, dict):
            if name not in self._failed:
                self._failed[name] = "its table set does not record how to load it"
                log.error("cannot serve %s: embedder %s unknown", view.release_id, name)
            return False
        with self._lock:
            if name in self._loading or name in self._failed:
                return False
            self._loading.add(name)
        if wait:
            self._load(name, build)
            return name in self._by_name
        threading.Thread(
            target=self._load, args=(name, build), name="enclave-embedder", daemon=True
        ).start()
        return False

    def _load(self, name: str, build: dict[str, object]) -> None:
        from enclave.settings import EmbedderSettings
        from models.loading import load_embedder
        from models.variants import for_index

        own = self.settings.embedder
        try:
            spec = EmbedderSettings.model_validate(
                {
                    **build,
                    "device": own.device,
                    "threads": own.threads,
                    "cache_dir": own.cache_dir,
                }
            )
            # the variant the set's embedder name records wins over the recorded setting (an
            # older set recorded ``auto``): the vectors and the questions must share a variant
            embedder = load_embedder(for_index(spec, name))
            if embedder.name != name:
                raise EmbedderMismatchError(
                    f"{spec.model} loads as {embedder.name}, but the tables were built with {name}"
                )
            self.add(embedder)
            log.info("embedder %s loaded for a release of another table set", name)
        except Exception as exc:  # reported, the current release stays served
            self._failed[name] = str(exc)
            log.error("cannot load embedder %s: %s", name, exc)
        finally:
            with self._lock:
                self._loading.discard(name)


@dataclass
class Services:
    index: LiveIndex
    embedder: Embedder
    generator: Generator
    retriever: Retriever
    rag: RagService
    admission: Admission
    chat: ChatService
    search: SearchService
    documents: DocumentService
    embeddings: EmbeddingService
    lineage: LineageService
    queue: GenerationQueue


class AppState:
    """Resources given to ``create_app`` are used as they are; the rest load in the background
    at startup, so ``/healthz`` answers at once and ``/readyz`` says 503 until all is loaded."""

    def __init__(
        self,
        settings: Settings,
        security: SecurityServices,
        *,
        generator: Generator | None = None,
        embedder: Embedder | None = None,
        store: Store | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = Metrics()
        from server.prometheus import SyncCollector

        self.metrics.registry.register(SyncCollector(settings.data_dir))
        self.security = security
        self._generator = generator
        self._embedder = embedder
        self.embedders = Embedders(settings)
        self._index: LiveIndex | None = (
            None if store is None else (LiveIndex(store.root, tuning=_tuning(settings)))
        )
        # where the index lives is checked before anything binds: a bad store.uri, missing
        # credentials or an unreachable bucket stop start-up with a clear message
        self._location = settings.index if store is None else store.root
        self._location.check()
        self._owned: list[Generator] = []
        self.services: Services | None = None
        self.error: str | None = None
        self.loading = False
        self._thread: threading.Thread | None = None
        self.loaded_in_s: float | None = None
        if generator is not None and embedder is not None and store is not None:
            self._build()

    @property
    def ready(self) -> bool:
        return self.services is not None

    def estimates(self) -> dict[str, float] | None:
        """Admission's current estimates (for ``/metrics``), once the models are loaded."""
        return self.services.chat.estimates() if self.services is not None else None

    def embedding_dimension(self) -> int | None:
        """The loaded embedder's dimension (for the OpenAPI schema), None while loading."""
        return self.services.embedder.dimension if self.services is not None else None

    def start_loading(self) -> None:
        if self.services is not None or self._thread is not None:
            return
        self.loading = True
        self._thread = threading.Thread(target=self._load, name="enclave-load", daemon=True)
        self._thread.start()

    def wait_loaded(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
        return self.ready

    def _load(self) -> None:
        started = time.monotonic()
        try:
            if self._index is None:
                self._index = LiveIndex(self._location, tuning=_tuning(self.settings))
            if self._embedder is None:
                from models.loading import load_embedder
                from models.variants import for_index

                # under variant "auto" the index's recorded variant: queries are embedded
                # the way its chunks were
                self._index.reader()  # the live release's table set decides
                bound = self._index.embedder_name
                self._embedder = load_embedder(for_index(self.settings.embedder, bound))
            if self._generator is None:
                from models.loading import load_generator

                self._generator = load_generator(self.settings.generator)
                self._owned.append(self._generator)
                self._generator.warmup(SYSTEM_PROMPT)
            self._build()
            self.loaded_in_s = time.monotonic() - started
            log.info("models loaded and index open in %.1f s", self.loaded_in_s)
            info = self._generator.describe() if self._generator else {}
            if "layers_on_gpu" in info:
                log.info("generator %s: %s layers on the GPU", info["name"], info["layers_on_gpu"])
        except EnclaveError as exc:
            self.error = exc.message
            log.error("cannot start: %s", exc.message)
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("cannot start")
        finally:
            self.loading = False

    def _build(self) -> None:
        index, embedder, generator = self._index, self._embedder, self._generator
        assert index is not None and embedder is not None and generator is not None
        from store.view import IndexView

        self.embedders.add(embedder)
        view = index.reader()
        bound = index.embedder_name
        from models.variants import mismatch_message, other_variant

        # an explicit other variant of the index's model is a request to refuse, not to serve
        # the index with the model its set recorded
        if (
            bound is not None
            and bound != embedder.name
            and other_variant(bound, self.settings.embedder)
        ):
            raise EmbedderMismatchError(
                mismatch_message(bound, embedder.name, where=str(index.location))
            )
        if isinstance(view, IndexView):
            self.embedders.ready_for(view, wait=True)  # a re-indexed release's own embedder
        index.accept = self.embedders.ready_for  # later releases: their embedder first
        if bound is not None and self.embedders.get(bound) is None:
            message = mismatch_message(bound, embedder.name, where=str(index.location))
            if index.dimension != embedder.dimension:
                message += f" (dimensions: index {index.dimension}, embedder {embedder.dimension})"
            raise EmbedderMismatchError(message)
        from server.prometheus import ReleaseCollector

        self.metrics.registry.register(ReleaseCollector(index))
        retriever = Retriever(self.settings, index, embedder, embedders=self.embedders.get)
        rag = RagService(self.settings, index, embedder, generator, retriever=retriever)
        queue = GenerationQueue(
            self.settings.server.queue_size,
            on_change=self.metrics.queue_depth.set,
            context_size=generator.context_size,
        )
        admission = Admission(self.security, generator)
        chat = ChatService(
            rag,
            queue,
            self.metrics,
            admission,
            request_timeout_s=self.settings.server.request_timeout_s,
            model_name=generator.name,
        )
        self.services = Services(
            index=index,
            embedder=embedder,
            generator=generator,
            retriever=retriever,
            rag=rag,
            admission=admission,
            chat=chat,
            search=SearchService(retriever, admission, self.metrics),
            documents=DocumentService(self.settings, index),
            embeddings=EmbeddingService(embedder, admission, lock=retriever.embed_lock),
            lineage=LineageService(self.settings, index),
            queue=queue,
        )

    def close(self) -> None:
        for generator in self._owned:
            try:
                generator.close()
            except Exception:  # pragma: no cover - shutdown best effort
                log.exception("closing the generator")
        self._owned.clear()


def _tuning(settings: Settings) -> AnnTuning:
    from store.ann import AnnTuning

    return AnnTuning.from_settings(settings.vector_index)
