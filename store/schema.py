"""The tables' Arrow schemas and the SQL prefilter built from validated values only."""

from __future__ import annotations

import re

import pyarrow as pa

from enclave.errors import UsageError
from store.records import SearchFilters, valid_group

#: a document id (or any id Enclave writes): lower-case hex
HEX_ID = re.compile(r"^[0-9a-f]{8,64}$")


def documents_schema() -> pa.Schema:
    return pa.schema(
        [
            pa.field("doc_id", pa.string(), nullable=False),
            pa.field("path", pa.string(), nullable=False),
            pa.field("title", pa.string()),
            pa.field("sha256", pa.string()),
            pa.field("size", pa.int64()),
            pa.field("mtime", pa.float64()),
            pa.field("parser", pa.string()),
            pa.field("status", pa.string()),
            pa.field("error", pa.string()),
            pa.field("chunk_count", pa.int32()),
            pa.field("ingested_at", pa.string()),
            pa.field("embedder", pa.string()),
            pa.field("groups", pa.list_(pa.string())),
            # JSON: the parse-quality verdict (ingest/quality.py); added to older tables by
            # the writer before its first write (store.db.Store.documents_table)
            pa.field("quality", pa.string()),
        ]
    )


#: document columns added after the first release of the schema, with their SQL default
ADDED_DOCUMENT_COLUMNS = {"quality": "CAST(NULL AS STRING)"}


def chunks_schema(dimension: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("chunk_id", pa.string(), nullable=False),
            pa.field("doc_id", pa.string(), nullable=False),
            pa.field("ordinal", pa.int32()),
            pa.field("text", pa.string()),
            pa.field("vector", pa.list_(pa.float32(), dimension)),
            pa.field("source", pa.string()),
            pa.field("title", pa.string()),
            pa.field("page", pa.int32()),
            pa.field("heading_path", pa.list_(pa.string())),
            pa.field("char_start", pa.int64()),
            pa.field("char_end", pa.int64()),
            pa.field("tokens", pa.int32()),
            pa.field("groups", pa.list_(pa.string())),
            pa.field("flags", pa.list_(pa.string())),
        ]
    )


HIT_COLUMNS = [
    "chunk_id",
    "doc_id",
    "ordinal",
    "text",
    "vector",
    "source",
    "title",
    "page",
    "heading_path",
    "char_start",
    "char_end",
    "tokens",
    "flags",
]


def sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def build_filter(filters: SearchFilters | None) -> str | None:
    """SQL predicate for a prefilter. Every value is validated or quoted: no injection."""
    if filters is None:
        return None
    parts: list[str] = []
    if filters.path_prefix:
        if "\x00" in filters.path_prefix:
            raise UsageError("path_prefix must not contain NUL")
        parts.append(f"starts_with(source, {sql_str(filters.path_prefix)})")
    if filters.doc_ids is not None:
        ids = [d for d in filters.doc_ids]
        bad = [d for d in ids if not HEX_ID.match(d)]
        if bad:
            raise UsageError(f"invalid document id: {bad[0][:80]!r}")
        if not ids:
            parts.append("false")
        else:
            parts.append("doc_id IN (" + ", ".join(sql_str(d) for d in ids) + ")")
    if filters.groups is not None:
        groups = [g for g in filters.groups if valid_group(g)]
        if not groups:
            parts.append("false")
        else:
            parts.append(
                "array_has_any(groups, make_array(" + ", ".join(sql_str(g) for g in groups) + "))"
            )
    return " AND ".join(f"({p})" for p in parts) if parts else None
