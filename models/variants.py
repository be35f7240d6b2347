"""Embedder variants: one model run two ways, told apart by the name an index records.

* ``fp32``: the sentence-transformers model on torch, as published.
* ``int8``: the same graph exported to ONNX with int8 weights (dynamic quantisation,
  per-channel weights) and run by ONNX Runtime: about twice as fast on a CPU, with vectors close
  to the fp32 ones (cosine >= 0.98) but not equal.

Vectors of two variants must never meet in one index, so the int8 variant's identity is the
fp32 identity with :data:`INT8_SUFFIX` appended (``all-MiniLM-L6-v2@<fingerprint>+int8-onnx-v1``):
the index binds to it (``bind_embedder``) and the fingerprint comparison of
:func:`ingest.changes.same_embedder` tells the two apart.

``embedder.variant = "auto"`` follows the index: an index built with one variant keeps being
read and extended with it, whatever the default is; a new index gets :func:`default_variant`.
An explicit variant that differs from the index's is refused with a message that says how to
proceed (:func:`mismatch_message`).

This module imports nothing heavy: the ingest pre-check and the server use it before any model
is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from enclave.settings import EmbedderSettings

Variant = Literal["int8", "fp32"]

#: version of the export recipe (export, graph fusion, quantisation): bump it whenever a change
#: would give different vectors, so that indexes built with the old recipe are told apart
INT8_RECIPE = 1
INT8_TAG = f"int8-onnx-v{INT8_RECIPE}"
INT8_SUFFIX = f"+{INT8_TAG}"
_INT8_MARK = "+int8-"


def variant_name(identity: str, variant: Variant) -> str:
    """The name an embedder of ``variant`` records, from the model's fp32 ``identity``."""
    return f"{identity}{INT8_SUFFIX}" if variant == "int8" else identity


def variant_of(name: str) -> Variant | None:
    """The variant an embedder name records; None for names without a model fingerprint
    (``label@fingerprint``), such as the test embedder's ``hash-64``. Any int8 recipe counts
    as int8 (a name from another recipe version is still refused by the name comparison)."""
    if "@" not in name:
        return None
    return "int8" if _INT8_MARK in name.rsplit("@", 1)[1] else "fp32"


def default_variant(settings: EmbedderSettings) -> Variant:
    """The variant a new index gets under ``variant = "auto"``: int8 for the bundled model on
    the CPU, where its quality was measured (docs/models.md); fp32 for any other model folder
    or device (int8 stays one setting away)."""
    return "int8" if settings.model == "bundled" and settings.device == "cpu" else "fp32"


def resolve_variant(settings: EmbedderSettings, bound: str | None = None) -> Variant:
    """The variant to load: the explicit setting; under ``auto`` the one the index's embedder
    name ``bound`` records, else :func:`default_variant`."""
    if settings.variant != "auto":
        return settings.variant
    recorded = variant_of(bound) if bound else None
    return recorded or default_variant(settings)


def for_index(settings: EmbedderSettings, bound: str | None) -> EmbedderSettings:
    """``settings`` for an index bound to ``bound`` (None: a new index): under ``auto``, the
    variant the index records is made explicit, so ``load_embedder`` of the result loads what
    the index needs and refuses to substitute another. Without a recorded variant ``auto``
    stays, and ``load_embedder`` picks :func:`default_variant`."""
    from models.embedder import is_hash_model

    if settings.variant != "auto" or is_hash_model(settings.model):
        return settings
    recorded = variant_of(bound) if bound else None
    return settings.model_copy(update={"variant": recorded}) if recorded else settings


def _fingerprint(name: str) -> str:
    """The model part of ``label@fingerprint[+variant]``."""
    return name.rsplit("@", 1)[-1].split("+", 1)[0]


def same_model(bound: str, settings: EmbedderSettings) -> bool:
    """Whether ``settings`` name the model (any variant) an index bound to ``bound`` was built
    with; False when the model is not installed (loading it says so)."""
    from models.embedder import is_hash_model, model_source

    if variant_of(bound) is None or is_hash_model(settings.model):
        return False
    try:
        _, _, identity = model_source(settings)
    except Exception:
        return False
    return _fingerprint(identity) == _fingerprint(bound)


def other_variant(bound: str, settings: EmbedderSettings) -> bool:
    """Whether ``settings`` explicitly ask for another variant of the model an index (or a
    table set) bound to ``bound`` was built with: a request to refuse, not to substitute."""
    have = variant_of(bound)
    if settings.variant == "auto" or have is None or have == settings.variant:
        return False
    return same_model(bound, settings)


def describe_variant(name: str) -> str:
    """``name`` followed by its variant in words, for messages."""
    variant = variant_of(name)
    return f"{name} ({variant} variant)" if variant else name


def mismatch_message(bound: str, wanted: str, *, where: str) -> str:
    """Why ``wanted`` may not touch an index bound to ``bound``, and what to do instead.

    ``where`` names the index (its path). When only the variant differs, the message says
    which variant the index has and how to keep using it (``embedder.variant`` back to that
    variant or ``auto``) or how to move to the other (a new data directory).
    """
    head = (
        f"the index at {where} was built with embedder {describe_variant(bound)}, not "
        f"{describe_variant(wanted)}. Mixing them would corrupt search."
    )
    have, want = variant_of(bound), variant_of(wanted)
    if have and want and have != want and _fingerprint(bound) == _fingerprint(wanted):
        return (
            f'{head} To keep using this index, set embedder.variant to "{have}" or "auto" '
            f"(ENCLAVE_EMBEDDER__VARIANT={have}; auto follows the index). To re-embed it with "
            f"the {want} variant while the server keeps serving, run `enclave reindex` with "
            "that variant (docs/sync.md; a local index), or ingest into a new data directory "
            "(--data-dir NEW) with that variant and point the server at it."
        )
    return (
        f"{head} To re-embed with the new model while the server keeps serving, run "
        "`enclave reindex` (docs/sync.md; a local index), or ingest into a new data directory "
        f"(--data-dir NEW) and point the server at it, or remove {where} and ingest again."
    )
