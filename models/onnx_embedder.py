"""The int8 embedder: a sentence-transformers model exported to ONNX, run by ONNX Runtime.

A built model folder (made once by :mod:`models.int8`) holds ``model-int8.onnx`` (the whole
sentence-transformers pipeline: transformer, pooling, normalisation; int8 weights),
``tokenizer.json`` (the model's own fast tokenizer, saved as sentence-transformers loads it)
and ``manifest.json`` (what the build measured and everything the runtime needs: input names,
maximum sequence length, padding). Loading it imports neither torch nor transformers.

Behaviour matches :class:`models.embedder.SentenceTransformerEmbedder` on the same model:
the same tokenizer, truncation (``max_seq_length`` tokens with special tokens) and padding, so
``count_tokens``, ``token_spans`` and ``max_tokens`` are identical, and the same pooling and
normalisation (they are part of the exported graph). Only the vectors differ, by the int8
rounding: cosine >= 0.98 to the fp32 vectors, checked when the model is built.

Each text is a model run of its own, and ``threads`` runs go on at once (one core each). Two
reasons. Dynamic quantisation scales a run's activations by their range over the whole input
tensor, padding included: texts embedded together would move each other's vectors (a one-word
text batched with 256-token ones lost 0.02 of cosine to fp32), so the server's vector of a
question would differ from the evaluation's. One text per run makes every vector a function of
its text alone, and wastes nothing on padding. And runs in parallel threads never wait for
each other, where one run split across cores waits at every operator: on the shared 2-core
build machine that made the difference between 10 and 18 chunks/s (docs/models.md).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from enclave.errors import ConfigError
from models.embedder import Embedder, Vectors
from models.variants import INT8_RECIPE

MODEL_FILE = "model-int8.onnx"
TOKENIZER_FILE = "tokenizer.json"
MANIFEST_FILE = "manifest.json"
#: the fp32 vectors of the check texts, kept with the build to check it on the machine it runs on
CHECK_FILE = "check-fp32.npy"


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The build's manifest, or None when the folder holds no complete build of this recipe."""
    try:
        manifest: dict[str, Any] = json.loads((folder / MANIFEST_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if manifest.get("recipe") != INT8_RECIPE:
        return None
    if not all((folder / f).is_file() for f in (MODEL_FILE, TOKENIZER_FILE, CHECK_FILE)):
        return None
    return manifest


class OnnxEmbedder(Embedder):
    """A built int8 model folder, run on ONNX Runtime's CPU execution provider."""

    variant = "int8"

    def __init__(
        self, folder: str | Path, *, name: str, batch_size: int = 32, threads: int = 0
    ) -> None:
        """Load the build in ``folder``; ``name`` is the identity recorded in the index
        (the model's fp32 identity plus the int8 suffix); ``threads`` is how many texts run at
        once, one core each (0 = one per core)."""
        import onnxruntime as ort
        from tokenizers import Tokenizer

        root = Path(folder)
        manifest = read_manifest(root)
        if manifest is None:
            raise ConfigError(f"{root} holds no complete int8 embedder build")
        self.manifest = manifest
        self.folder = root
        self.name = name
        self.batch_size = batch_size
        self.dimension = int(manifest["dimension"])
        self._inputs: list[str] = list(manifest["inputs"])
        self._lower = bool(manifest.get("do_lower_case", False))
        max_seq = int(manifest["max_seq_length"])
        tok_file = str(root / TOKENIZER_FILE)
        self._plain = Tokenizer.from_file(tok_file)  # content tokens: no specials, no limit
        self._plain.no_truncation()
        self._plain.no_padding()
        self._single = Tokenizer.from_file(tok_file)  # one model input, as sentence-transformers
        self._single.no_padding()
        self._single.enable_truncation(
            max_length=max_seq, strategy="longest_first", direction=manifest["truncation_side"]
        )
        self._padded = Tokenizer.from_file(tok_file)  # a padded batch (the build's check)
        self._padded.enable_truncation(
            max_length=max_seq, strategy="longest_first", direction=manifest["truncation_side"]
        )
        self._padded.enable_padding(
            direction=manifest["padding_side"],
            pad_id=int(manifest["pad_token_id"]),
            pad_type_id=int(manifest["pad_token_type_id"]),
            pad_token=str(manifest["pad_token"]),
        )
        specials = len(self._single.encode("", add_special_tokens=True).ids)
        self.max_tokens = max_seq - specials

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # parallel across texts, not inside one
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(root / MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )
        self._output = self._session.get_outputs()[0].name
        self.threads = threads if threads > 0 else (os.cpu_count() or 1)
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def _text(self, text: str) -> str:
        return text.lower() if self._lower else text

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        enc = self._plain.encode(self._text(text), add_special_tokens=False)
        return [(int(a), int(b)) for a, b in enc.offsets]

    def count_tokens(self, text: str) -> int:
        return len(self._plain.encode(self._text(text), add_special_tokens=False).ids)

    def features(self, texts: Sequence[str]) -> dict[str, npt.NDArray[np.int64]]:
        """The model inputs of a padded batch (token ids, attention mask, token type ids),
        exactly as sentence-transformers makes them: how the build checks the tokenizer."""
        encs = self._padded.encode_batch([self._text(t) for t in texts], add_special_tokens=True)
        return self._arrays(encs)

    def _arrays(self, encs: Sequence[Any]) -> dict[str, npt.NDArray[np.int64]]:
        arrays = {
            "input_ids": [e.ids for e in encs],
            "attention_mask": [e.attention_mask for e in encs],
            "token_type_ids": [e.type_ids for e in encs],
        }
        return {k: np.asarray(arrays[k], dtype=np.int64) for k in self._inputs}

    def _run(self, enc: Any) -> npt.NDArray[np.float32]:
        out = self._session.run([self._output], self._arrays([enc]))[0]
        return np.asarray(out[0], dtype=np.float32)

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="enclave-embed")
            return self._pool

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        """One model run per text, ``threads`` at a time; rows in the order given."""
        encs = self._single.encode_batch([self._text(t) for t in texts], add_special_tokens=True)
        if self.threads == 1 or len(encs) == 1:
            rows = [self._run(e) for e in encs]
        else:
            rows = list(self._executor().map(self._run, encs))
        vecs = np.vstack(rows)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        unit: Vectors = (vecs / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
        return unit

    def close(self) -> None:
        """Stop the worker threads (they also stop when the process exits)."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "variant": "int8",
            "path": str(self.folder),
            "threads": self.threads,
        }
