"""The LanceDB layer: schema, upserts and deletes, hybrid search. The only code that talks to
LanceDB; ingestion, the server and the evaluation harness all go through :class:`Store`.
"""

from store.db import Store
from store.records import ChunkRecord, DocumentRecord, SearchFilters, SearchHit, doc_id_for_path

__all__ = [
    "ChunkRecord",
    "DocumentRecord",
    "SearchFilters",
    "SearchHit",
    "Store",
    "doc_id_for_path",
]
