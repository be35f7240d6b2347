"""The int8 embedder against the fp32 one on the same bundled model: close vectors on a fixed
text sample, identical tokens, names that keep indexes apart, a build that is made once,
offline, and reused."""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from enclave.errors import ConfigError
from enclave.settings import EmbedderSettings
from ingest.changes import same_embedder
from models import int8 as int8_module
from models.bundled import bundled_embedder_path
from models.embedder import SentenceTransformerEmbedder, model_source
from models.int8 import CHECK_TEXTS, MIN_BUILD_COSINE, ensure_int8_model, load_int8_embedder
from models.loading import load_embedder
from models.onnx_embedder import MANIFEST_FILE, MODEL_FILE, OnnxEmbedder
from models.variants import (
    INT8_SUFFIX,
    default_variant,
    for_index,
    mismatch_message,
    resolve_variant,
    variant_of,
)

#: texts beyond the check sample: whitespace, markup, a long run-on text, repeated symbols
MORE_TEXTS = [
    "",
    "\n\n\t",
    "<p>HTML &amp; entities</p>",
    "word " * 400,
    "!!!???...",
    "naïve café",
]


@pytest.fixture(scope="module")
def int8(bundled_embedder: Any) -> OnnxEmbedder:
    assert isinstance(bundled_embedder, OnnxEmbedder), "the default should be int8"
    return bundled_embedder


def _cosines(a: Any, b: Any) -> Any:
    return (np.asarray(a, dtype=np.float64) * np.asarray(b, dtype=np.float64)).sum(axis=1)


def test_int8_vectors_stay_close_to_fp32(
    int8: OnnxEmbedder, fp32_embedder: SentenceTransformerEmbedder
) -> None:
    texts = list(CHECK_TEXTS)
    ref = fp32_embedder.embed(texts)
    batch = int8.embed(texts)
    assert batch.dtype == np.float32 and batch.shape == ref.shape == (len(texts), 384)
    assert np.allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    cos = _cosines(batch, ref)
    worst = int(cos.argmin())
    assert cos.min() >= 0.98, (texts[worst][:40], float(cos.min()))
    assert cos.mean() >= 0.99, float(cos.mean())
    # rows come back in the order given, whatever order the batches ran in
    again = int8.embed(texts[::-1] + texts)
    assert np.array_equal(again, np.vstack([batch[::-1], batch]))


def test_a_vector_depends_on_its_text_alone(int8: OnnxEmbedder) -> None:
    """Each text is a run of its own: what it is embedded with changes nothing, so the
    server's vector of a question is the evaluation's."""
    query = "reset password"
    alone = int8.embed_query(query)
    with_long = int8.embed([CHECK_TEXTS[-1], query, *CHECK_TEXTS[5:9]])[1]
    with_short = int8.embed(["x", query])[1]
    assert np.array_equal(alone, with_long) and np.array_equal(alone, with_short)


def test_same_tokens_and_limits_as_fp32(
    int8: OnnxEmbedder, fp32_embedder: SentenceTransformerEmbedder
) -> None:
    assert int8.max_tokens == fp32_embedder.max_tokens == 254
    assert int8.dimension == fp32_embedder.dimension
    for text in [*CHECK_TEXTS, *MORE_TEXTS]:
        assert int8.token_spans(text) == fp32_embedder.token_spans(text), text[:40]
        assert int8.count_tokens(text) == fp32_embedder.count_tokens(text), text[:40]


def test_names_keep_the_variants_apart(
    int8: OnnxEmbedder, fp32_embedder: SentenceTransformerEmbedder
) -> None:
    assert int8.name == fp32_embedder.name + INT8_SUFFIX
    assert int8.name.startswith("all-MiniLM-L6-v2@")
    assert variant_of(int8.name) == "int8" and variant_of(fp32_embedder.name) == "fp32"
    assert variant_of("hash-64") is None
    assert not same_embedder(fp32_embedder.name, int8.name)
    assert same_embedder(int8.name, "model@" + int8.name.split("@")[1])
    assert int8.describe()["variant"] == "int8" and fp32_embedder.describe()["variant"] == "fp32"


def test_variant_resolution() -> None:
    bundled = EmbedderSettings()
    assert bundled.variant == "auto" and default_variant(bundled) == "int8"
    assert default_variant(EmbedderSettings(model="/some/folder")) == "fp32"
    assert default_variant(EmbedderSettings(device="cuda")) == "fp32"
    fp32_name, int8_name = "m@abc", "m@abc" + INT8_SUFFIX
    # auto follows the index; an explicit setting is kept (and checked against the index)
    assert resolve_variant(bundled, fp32_name) == "fp32"
    assert resolve_variant(bundled, int8_name) == "int8"
    assert resolve_variant(bundled, None) == "int8"
    assert resolve_variant(EmbedderSettings(variant="fp32"), int8_name) == "fp32"
    assert for_index(bundled, fp32_name).variant == "fp32"
    assert for_index(bundled, None).variant == "auto"
    assert for_index(bundled, "hash-64").variant == "auto"
    assert for_index(EmbedderSettings(variant="int8"), fp32_name).variant == "int8"


def test_mismatch_message_says_how_to_proceed() -> None:
    msg = mismatch_message("m@abc", "m@abc" + INT8_SUFFIX, where="/data/lancedb")
    assert "built with embedder m@abc (fp32 variant)" in msg
    assert "ENCLAVE_EMBEDDER__VARIANT=fp32" in msg and '"auto"' in msg
    assert "--data-dir NEW" in msg
    other = mismatch_message("other@def", "m@abc" + INT8_SUFFIX, where="/data/lancedb")
    assert "VARIANT" not in other and "re-embed with the new model" in other


class _NoNetwork:
    """Every socket connection attempt fails (and is counted)."""

    def __init__(self) -> None:
        self.attempts: list[Any] = []

    def connect(self, sock: socket.socket, address: Any) -> None:
        self.attempts.append(address)
        raise OSError("network disabled by the test")


@pytest.fixture(scope="module")
def offline_build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[Any]]]:
    """A fresh build in a cache of its own, made with the hub switched off and every socket
    connection refused; yields (build folder, connection attempts)."""
    guard = _NoNetwork()
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    mp.setattr(socket.socket, "connect", guard.connect)
    cache = tmp_path_factory.mktemp("int8-cache")
    try:
        path, label, identity = model_source(EmbedderSettings())
        folder = ensure_int8_model(path, label=label, identity=identity, cache_dir=cache)
    finally:
        mp.undo()
    yield folder, guard.attempts


@pytest.mark.slow
def test_build_is_offline_and_complete(offline_build: tuple[Path, list[Any]]) -> None:
    folder, attempts = offline_build
    assert attempts == []
    manifest = json.loads((folder / MANIFEST_FILE).read_text("utf-8"))
    assert manifest["recipe"] == 1 and manifest["weights"] == "QInt8, per channel"
    assert manifest["fused"] is True and manifest["max_seq_length"] == 256
    assert manifest["check"]["cosine_min"] >= MIN_BUILD_COSINE
    assert manifest["check"]["export_cosine_min"] >= 0.9999
    # only the int8 graph is kept, a quarter of the fp32 weights
    assert sorted(p.name for p in folder.iterdir()) == [
        "check-fp32.npy",
        "manifest.json",
        "model-int8.onnx",
        "tokenizer.json",
    ]
    assert (folder / MODEL_FILE).stat().st_size < 30_000_000
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".tmp-")]


@pytest.mark.slow
def test_build_is_reused_not_redone(
    offline_build: tuple[Path, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _ = offline_build
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}

    def no_rebuild(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the build was redone")

    monkeypatch.setattr(int8_module, "build_int8_model", no_rebuild)
    settings = EmbedderSettings(variant="int8", cache_dir=folder.parent)
    emb = load_embedder(settings)
    assert isinstance(emb, OnnxEmbedder) and emb.folder == folder
    assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == before
    # a changed model (another key) would be built again: the key follows the files' contents
    copy = folder.parent / "copy"
    shutil.copytree(bundled_embedder_path(), copy, copy_function=os.symlink)
    assert int8_module.build_folder(copy, "all-MiniLM-L6-v2", folder.parent) == folder
    (copy / "config_sentence_transformers.json").unlink()
    (copy / "config_sentence_transformers.json").write_text("{}", "utf-8")
    assert int8_module.build_folder(copy, "all-MiniLM-L6-v2", folder.parent) != folder


def test_a_build_that_drifts_is_refused(
    int8: OnnxEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check on the machine that loads a build (int8 kernels differ between CPUs)."""
    monkeypatch.setattr(int8_module, "check_on_this_machine", lambda emb, count=8: 0.9)
    path, label, identity = model_source(EmbedderSettings())
    with pytest.raises(ConfigError, match="drifts from fp32 on this machine"):
        load_int8_embedder(path, label=label, identity=identity, name="n")
    # asked for explicitly (or by the index): refused; as the default for a new index: fp32
    with pytest.raises(ConfigError, match="drifts"):
        load_embedder(EmbedderSettings(variant="int8"))
    fallback = load_embedder(EmbedderSettings())
    assert isinstance(fallback, SentenceTransformerEmbedder)


def test_an_unwritable_cache_says_what_to_do(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x", "utf-8")
    path, label, identity = model_source(EmbedderSettings())
    with pytest.raises(ConfigError, match="ENCLAVE_EMBEDDER__CACHE_DIR"):
        ensure_int8_model(path, label=label, identity=identity, cache_dir=blocker / "cache")
