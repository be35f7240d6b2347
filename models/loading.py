"""Loading the models the settings name: :func:`load_embedder` (the hash embedder, the int8
variant through ONNX Runtime, or the fp32 model on sentence-transformers) and
:func:`load_generator` (the fake generator or a GGUF through llama.cpp). The interfaces live in
``models/embedder.py`` and ``models/generator.py``; the heavy adapters are imported only when
a model is loaded."""

from __future__ import annotations

import logging

from enclave.settings import EmbedderSettings, GeneratorSettings
from models.embedder import (
    Embedder,
    HashEmbedder,
    SentenceTransformerEmbedder,
    hash_dimension,
    is_hash_model,
    model_source,
)
from models.generator import FakeGenerator, Generator

log = logging.getLogger("models.embedder")


def load_embedder(settings: EmbedderSettings) -> Embedder:
    """The embedder the settings name: 'bundled', 'hash' (tests) or a model folder, in the
    settings' variant (``auto`` without an index: the default for a new index; pass the
    settings through :func:`models.variants.for_index` to follow an existing index).

    The int8 variant is built on first use when ``enclave models build-int8`` has not built it
    (models/int8.py); the fp32 variant is the model on sentence-transformers."""
    if is_hash_model(settings.model):
        return HashEmbedder(
            dimension=hash_dimension(settings.model), batch_size=settings.batch_size
        )
    from models.variants import resolve_variant, variant_name

    path, label, identity = model_source(settings)
    if resolve_variant(settings) == "int8":
        from enclave.errors import ConfigError
        from models.int8 import load_int8_embedder

        try:
            return load_int8_embedder(
                path,
                label=label,
                identity=identity,
                name=variant_name(identity, "int8"),
                cache_dir=settings.cache_dir,
                batch_size=settings.batch_size,
                threads=settings.threads,
            )
        except ConfigError as exc:
            if settings.variant != "auto":
                raise
            # the default for a new index, not a request: fall back to the model as published
            log.warning("using the fp32 embedder: %s", exc.message)
    return SentenceTransformerEmbedder(
        str(path),
        device=settings.device,
        batch_size=settings.batch_size,
        threads=settings.threads,
        display_name=label,
    )


def load_generator(settings: GeneratorSettings) -> Generator:
    """The generator the settings name: 'bundled', 'fake' (tests) or a GGUF path."""
    if settings.model == "fake":
        return FakeGenerator(context_size=settings.n_ctx)
    from models.llama_cpp import LlamaCppGenerator, resolve_generator_path

    path = resolve_generator_path(settings.model)
    return LlamaCppGenerator(
        path,
        n_ctx=settings.n_ctx,
        n_threads=settings.n_threads,
        n_gpu_layers=settings.n_gpu_layers,
        n_batch=settings.n_batch,
        seed=settings.seed,
        weight_repack=settings.weight_repack,
    )
