"""The models behind small interfaces: embedders and generators, with their bundled defaults.

Heavy dependencies (torch, llama.cpp) are imported inside the adapters, never here.
"""

from models.embedder import Embedder, HashEmbedder, load_embedder
from models.tokens import count_budget_tokens

__all__ = ["Embedder", "HashEmbedder", "count_budget_tokens", "load_embedder"]
