"""What one app holds: settings, the heavy resources (loaded once), the services over them."""

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
from server.services.search import SearchService

if TYPE_CHECKING:
    from enclave.security.services import SecurityServices
    from enclave.settings import Settings
    from models.embedder import Embedder
    from models.generator import Generator
    from store.db import Store

log = logging.getLogger("enclave.server")


@dataclass
class Services:
    store: Store
    embedder: Embedder
    generator: Generator
    retriever: Retriever
    rag: RagService
    admission: Admission
    chat: ChatService
    search: SearchService
    documents: DocumentService
    embeddings: EmbeddingService
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
        self._store = store
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
            if self._store is None:
                from store.db import Store

                self._store = Store(self.settings.lance_dir)
            if self._embedder is None:
                from models.embedder import load_embedder
                from models.variants import for_index

                # under variant "auto" the index's recorded variant: queries are embedded
                # the way its chunks were
                bound = self._store.embedder_name
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
        store, embedder, generator = self._store, self._embedder, self._generator
        assert store is not None and embedder is not None and generator is not None
        bound = store.embedder_name
        if bound is not None and (bound != embedder.name or store.dimension != embedder.dimension):
            from models.variants import mismatch_message

            message = mismatch_message(bound, embedder.name, where=str(store.path))
            if store.dimension != embedder.dimension:
                message += f" (dimensions: index {store.dimension}, embedder {embedder.dimension})"
            raise EmbedderMismatchError(message)
        retriever = Retriever(self.settings, store, embedder)
        rag = RagService(self.settings, store, embedder, generator, retriever=retriever)
        queue = GenerationQueue(
            self.settings.server.queue_size, on_change=self.metrics.queue_depth.set
        )
        admission = Admission(self.security, store, generator)
        chat = ChatService(
            rag,
            queue,
            self.metrics,
            admission,
            request_timeout_s=self.settings.server.request_timeout_s,
            model_name=generator.name,
        )
        self.services = Services(
            store=store,
            embedder=embedder,
            generator=generator,
            retriever=retriever,
            rag=rag,
            admission=admission,
            chat=chat,
            search=SearchService(retriever, admission, self.metrics),
            documents=DocumentService(store),
            embeddings=EmbeddingService(embedder, admission, lock=retriever.embed_lock),
            queue=queue,
        )

    def close(self) -> None:
        for generator in self._owned:
            try:
                generator.close()
            except Exception:  # pragma: no cover - shutdown best effort
                log.exception("closing the generator")
        self._owned.clear()
