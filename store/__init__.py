"""The LanceDB layer: schema, upserts and deletes, vector and full-text search returning typed
:class:`Candidate` rows. The only code that talks to LanceDB; ingestion, retrieval (``rag/``)
and the evaluation harness all go through :class:`Store`.

``import store`` (or ``store.records``) does not import LanceDB: ``import lancedb`` costs about
2 s of CPU, which an unchanged ingest re-run skips (ingest/snapshot.py).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from store.db import Store
    from store.records import (
        Candidate,
        ChunkRecord,
        DocumentRecord,
        SearchFilters,
        SearchHit,
        doc_id_for_path,
    )

__all__ = [
    "Candidate",
    "ChunkRecord",
    "DocumentRecord",
    "SearchFilters",
    "SearchHit",
    "Store",
    "doc_id_for_path",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'store' has no attribute {name!r}")
    home = "store.db" if name == "Store" else "store.records"
    return getattr(importlib.import_module(home), name)
