"""Embedders: a small interface (batch embed, dimension, max input tokens, the tokenizer that
counts them) and its adapters. Batching lives once in the base class.
"""

from __future__ import annotations

import hashlib
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from enclave.settings import EmbedderSettings

Vectors = npt.NDArray[np.float32]

log = logging.getLogger(__name__)


class Embedder(ABC):
    """Turns texts into unit-length float32 vectors."""

    #: stable identity recorded in the index; a different value means different vectors
    name: str
    dimension: int
    #: the most content tokens one input may have (special tokens excluded)
    max_tokens: int
    batch_size: int = 32

    @abstractmethod
    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        """Embed one batch; rows are L2-normalised."""

    @abstractmethod
    def token_spans(self, text: str) -> list[tuple[int, int]]:
        """Character span of each content token of ``text``, in the embedder's own tokenizer."""

    def count_tokens(self, text: str) -> int:
        return len(self.token_spans(text))

    def embed(self, texts: Sequence[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        parts = [
            self.embed_batch(texts[i : i + self.batch_size])
            for i in range(0, len(texts), self.batch_size)
        ]
        return np.vstack(parts).astype(np.float32, copy=False)

    def embed_query(self, text: str) -> Vectors:
        vec: Vectors = self.embed([text])[0]
        return vec

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "dimension": self.dimension, "max_tokens": self.max_tokens}


class SentenceTransformerEmbedder(Embedder):
    """Any sentence-transformers model folder, loaded offline: the fp32 variant."""

    variant = "fp32"

    def __init__(
        self,
        path: str,
        *,
        device: str = "cpu",
        batch_size: int = 32,
        threads: int = 0,
        display_name: str | None = None,
    ) -> None:
        from enclave.offline import enforce_offline

        enforce_offline()
        import torch
        from sentence_transformers import SentenceTransformer

        if threads > 0:
            torch.set_num_threads(threads)
        self._model = SentenceTransformer(path, device=device, local_files_only=True)
        self._tokenizer = self._model.tokenizer
        get_dim = (
            getattr(self._model, "get_embedding_dimension", None)
            or self._model.get_sentence_embedding_dimension
        )
        dim = get_dim()
        if dim is None:
            raise ValueError(f"cannot tell the embedding dimension of {path}")
        self.dimension = int(dim)
        seq = int(self._model.max_seq_length or 512)
        specials = len(self._tokenizer("", add_special_tokens=True)["input_ids"])
        self.max_tokens = seq - specials
        self.batch_size = batch_size
        self.name = _model_identity(path, display_name)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        enc = self._tokenizer(
            text, add_special_tokens=False, return_offsets_mapping=True, truncation=False
        )
        return [(int(a), int(b)) for a, b in enc["offset_mapping"]]

    def count_tokens(self, text: str) -> int:
        ids = self._tokenizer(text, add_special_tokens=False, truncation=False)["input_ids"]
        return len(ids)

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        import torch

        with torch.inference_mode():
            vecs = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vecs, dtype=np.float32)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "variant": "fp32"}


def _model_identity(path: str, display_name: str | None = None) -> str:
    """A name for the model that survives reinstalls: folder name plus a hash of its config
    and weights' sizes (cheap, yet it changes when the weights change)."""

    root = Path(path)
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if f.is_file() and f.suffix in {".json", ".safetensors", ".bin", ".txt", ".onnx"}:
            h.update(str(f.relative_to(root)).encode())
            h.update(str(f.stat().st_size).encode())
            if f.suffix == ".json":
                h.update(f.read_bytes())
    base = display_name or root.name
    return f"{base}@{h.hexdigest()[:12]}"


_WORD = re.compile(r"\w+|[^\w\s]", re.UNICODE)


class HashEmbedder(Embedder):
    """Deterministic bag-of-words embedder for unit tests of pure logic (no model file)."""

    def __init__(self, dimension: int = 64, max_tokens: int = 128, batch_size: int = 32) -> None:
        self.dimension = dimension
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.name = f"hash-{dimension}"

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _WORD.finditer(text)]

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
                out[row, int.from_bytes(digest, "little") % self.dimension] += 1.0
            norm = float(np.linalg.norm(out[row]))
            if norm > 0:
                out[row] /= norm
            else:
                out[row, 0] = 1.0
        return out


_HASH_MODEL = re.compile(r"^hash(?:-([1-9][0-9]{0,4}))?$")


def is_hash_model(model: str) -> bool:
    """Whether ``embedder.model`` names the hash embedder: ``hash`` (64 dimensions) or
    ``hash-N``."""
    return _HASH_MODEL.match(model) is not None


def hash_dimension(model: str) -> int:
    m = _HASH_MODEL.match(model)
    return int(m.group(1)) if m and m.group(1) else 64


def model_source(settings: EmbedderSettings) -> tuple[Path, str, str]:
    """(model folder, label, fp32 identity) of a model setting other than 'hash': the label is
    the bundled model's name or the folder's name."""
    from models.bundled import BUNDLED_EMBEDDER_NAME, resolve_embedder

    path = resolve_embedder(settings.model)
    label = BUNDLED_EMBEDDER_NAME if settings.model == "bundled" else path.name
    return path, label, _model_identity(str(path), label)
