"""The models the server holds: their listing (``GET /v1/models``) and OpenAI-style embeddings
with the index's own embedder (``POST /v1/embeddings``)."""

from __future__ import annotations

import base64
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
from starlette.concurrency import run_in_threadpool

from server.errors import BadParameterError

if TYPE_CHECKING:
    from enclave.security.keys import Principal
    from models.embedder import Embedder
    from models.generator import Generator
    from server.middleware import AuditInfo
    from server.schemas import EmbeddingRequest
    from server.services.admission import Admission

#: the most inputs one request may embed
MAX_INPUTS = 2048


def served_models(generator: Generator, embedder: Embedder) -> dict[str, Any]:
    """The OpenAI model list: the chat model and the embedding model."""
    return {
        "object": "list",
        "data": [
            {
                "id": generator.name,
                "object": "model",
                "created": 0,
                "owned_by": "enclave",
                "kind": "chat",
                "context_size": generator.context_size,
            },
            {
                "id": embedder.name,
                "object": "model",
                "created": 0,
                "owned_by": "enclave",
                "kind": "embedding",
                "dimension": embedder.dimension,
                "max_tokens": embedder.max_tokens,
            },
        ],
    }


class EmbeddingService:
    def __init__(
        self,
        embedder: Embedder,
        admission: Admission,
        lock: threading.Lock | None = None,
    ) -> None:
        self.embedder = embedder
        self.admission = admission
        self._lock = lock or threading.Lock()

    async def create(
        self, body: EmbeddingRequest, principal: Principal, info: AuditInfo
    ) -> dict[str, Any]:
        """``POST /v1/embeddings``: validate and count first (400s cost nothing), then the
        key's limits, then the work."""
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        total = await run_in_threadpool(
            self.admission.embeddings,
            principal,
            info,
            len(texts),
            lambda: self.count(body.input, dimensions=body.dimensions),
        )
        result = await run_in_threadpool(
            self.embed, body.input, encoding_format=body.encoding_format, dimensions=body.dimensions
        )
        self.admission.embedded(principal, info, total)
        return result

    def count(self, inputs: str | list[str], *, dimensions: int | None = None) -> int:
        """Validate the inputs (BadParameterError) and count their tokens."""
        return self._check([inputs] if isinstance(inputs, str) else list(inputs), dimensions)

    def _check(self, texts: list[str], dimensions: int | None) -> int:
        """The request schema refuses empty inputs and lists; blank strings are embedded."""
        if not texts:
            raise BadParameterError("input must not be empty", param="input")
        if len(texts) > MAX_INPUTS:
            raise BadParameterError(f"at most {MAX_INPUTS} inputs per request", param="input")
        if dimensions is not None and dimensions != self.embedder.dimension:
            raise BadParameterError(
                f"this embedder produces {self.embedder.dimension} dimensions", param="dimensions"
            )
        limit = self.embedder.max_tokens
        total = 0
        for i, text in enumerate(texts):
            if not text:
                raise BadParameterError(f"input[{i}] is empty", param=f"input[{i}]")
            n = self.embedder.count_tokens(text)
            if n > limit:
                raise BadParameterError(
                    f"input[{i}] is {n} tokens; the embedding model accepts at most {limit}",
                    param=f"input[{i}]",
                )
            total += n
        return total

    def embed(
        self, inputs: str | list[str], *, encoding_format: str = "float", dimensions: int | None
    ) -> dict[str, Any]:
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        total = self._check(texts, dimensions)
        with self._lock:
            vectors = self.embedder.embed(texts)
        data: list[dict[str, Any]] = []
        for i, vec in enumerate(vectors):
            value: Any
            if encoding_format == "base64":
                value = base64.b64encode(np.asarray(vec, dtype="<f4").tobytes()).decode("ascii")
            else:
                value = [float(x) for x in vec]
            data.append({"object": "embedding", "index": i, "embedding": value})
        return {
            "object": "list",
            "data": data,
            "model": self.embedder.name,
            "usage": {"prompt_tokens": total, "total_tokens": total},
        }
