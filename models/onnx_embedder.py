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
rounding: cosine >= 0.98 to the fp32 vectors, checked when the model is built. Activations are
quantised per batch, so a text's vector also moves slightly (far less than that) with the
batch it is embedded in.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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
        (the model's fp32 identity plus the int8 suffix); ``threads`` is ONNX Runtime's
        intra-op thread count (0 = its default, one per physical core)."""
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
        self._batch = Tokenizer.from_file(tok_file)  # model inputs, as sentence-transformers
        self._batch.enable_truncation(
            max_length=max_seq, strategy="longest_first", direction=manifest["truncation_side"]
        )
        self._batch.enable_padding(
            direction=manifest["padding_side"],
            pad_id=int(manifest["pad_token_id"]),
            pad_type_id=int(manifest["pad_token_type_id"]),
            pad_token=str(manifest["pad_token"]),
        )
        specials = len(self._batch.encode("", add_special_tokens=True).ids)
        self.max_tokens = max_seq - specials

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(0, threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(root / MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )
        self._output = self._session.get_outputs()[0].name

    def _text(self, text: str) -> str:
        return text.lower() if self._lower else text

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        enc = self._plain.encode(self._text(text), add_special_tokens=False)
        return [(int(a), int(b)) for a, b in enc.offsets]

    def count_tokens(self, text: str) -> int:
        return len(self._plain.encode(self._text(text), add_special_tokens=False).ids)

    def features(self, texts: Sequence[str]) -> dict[str, npt.NDArray[np.int64]]:
        """The model inputs for one batch: token ids, attention mask (and token type ids),
        truncated and padded to the batch's longest text, as sentence-transformers makes them."""
        encs = self._batch.encode_batch([self._text(t) for t in texts], add_special_tokens=True)
        arrays = {
            "input_ids": [e.ids for e in encs],
            "attention_mask": [e.attention_mask for e in encs],
            "token_type_ids": [e.type_ids for e in encs],
        }
        return {k: np.asarray(arrays[k], dtype=np.int64) for k in self._inputs}

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        out = self._session.run([self._output], self.features(texts))[0]
        vecs = np.asarray(out, dtype=np.float32)
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        unit: Vectors = (vecs / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
        return unit

    def embed(self, texts: Sequence[str]) -> Vectors:
        """Embed in batches of ``batch_size`` texts of similar length (less padding), rows
        in the order given."""
        if len(texts) <= self.batch_size:
            return super().embed(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vecs = super().embed([texts[i] for i in order])
        out = np.empty_like(vecs)
        out[np.asarray(order)] = vecs
        return out

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "variant": "int8", "path": str(self.folder)}
