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
    from store.db import Store

log = logging.getLogger("enclave.server")


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
        self.security = security
        self._generator = generator
        self._embedder = embedder
        self._index: LiveIndex | None = None if store is None else LiveIndex(store.location)
        # where the index lives is checked before anything binds: a bad store.uri, missing
        # credentials or an unreachable bucket stop start-up with a clear message
        self._location = settings.index if store is None else store.location
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
                self._index = LiveIndex(self._location)
            if self._embedder is None:
                from models.embedder import load_embedder
                from models.variants import for_index

                # under variant "auto" the index's recorded variant: queries are embedded
                # the way its chunks were
                bound = self._index.embedder_name
                self._embedder = load_embedder(for_index(self.settings.embedder, bound))
            if self._generator is None:
                from models.generator import load_generator

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
        bound = index.embedder_name
        if bound is not None and (bound != embedder.name or index.dimension != embedder.dimension):
            from models.variants import mismatch_message

            message = mismatch_message(bound, embedder.name, where=str(index.path))
            if index.dimension != embedder.dimension:
                message += f" (dimensions: index {index.dimension}, embedder {embedder.dimension})"
            raise EmbedderMismatchError(message)
        from server.prometheus import ReleaseCollector

        self.metrics.registry.register(ReleaseCollector(index))
        retriever = Retriever(self.settings, index, embedder)
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
