"""The models behind small interfaces: embedders and generators, with their bundled defaults.

Heavy dependencies (torch, llama.cpp) are imported inside the adapters, never here, and the
package itself imports nothing: ``import models`` (every CLI does, to register its commands)
must not load NumPy, which has to come after llama.cpp in processes that generate
(see enclave/native.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from models.embedder import Embedder, HashEmbedder
    from models.loading import load_embedder
    from models.tokens import count_budget_tokens

__all__ = ["Embedder", "HashEmbedder", "count_budget_tokens", "load_embedder"]

_HOMES = {
    "Embedder": "models.embedder",
    "HashEmbedder": "models.embedder",
    "load_embedder": "models.loading",
    "count_budget_tokens": "models.tokens",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
