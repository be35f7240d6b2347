"""Shared helpers of the pipeline tests: settings, generated corpora, index invariants."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

from enclave.settings import Settings, load_settings
from store.db import Store

WORDS = [
    *("ledger", "vault", "quorum", "lattice", "harbor", "signal", "beacon", "cipher", "orbit"),
    *("meadow", "canyon", "prism", "tundra", "summit", "lantern", "compass", "anchor"),
    *("willow", "ember", "falcon", "river", "cobalt", "granite"),
]


def settings_for(data_dir: Path, **ingest: Any) -> Settings:
    return load_settings(overrides={"data_dir": str(data_dir), "ingest": {"workers": 2, **ingest}})


def write_text_corpus(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """``count`` text files of varied length (1 to ~8 chunks), each with a unique marker."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        paras = []
        for p in range(rng.randint(1, 12)):
            words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 90)))
            paras.append(f"{words} docmarker{i}x{p}.")
        path = folder / f"doc{i:03d}.txt"
        path.write_text("\n\n".join(paras) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def all_chunks(store: Store) -> list[dict[str, Any]]:
    table = store.chunks_table()
    if table is None:
        return []
    rows: list[dict[str, Any]] = (
        table.search()
        .select(["chunk_id", "doc_id", "ordinal", "text", "char_start", "char_end", "groups"])
        .limit(None)
        .to_arrow()
        .to_pylist()
    )
    return rows


def assert_consistent(store: Store) -> list[dict[str, Any]]:
    """No duplicate chunk ids or texts per document, no orphans, counts match the rows."""
    chunks = all_chunks(store)
    ids = Counter(c["chunk_id"] for c in chunks)
    assert not [k for k, n in ids.items() if n > 1], "duplicate chunk ids"
    per_doc = Counter((c["doc_id"], c["text"], c["char_start"]) for c in chunks)
    assert not [k for k, n in per_doc.items() if n > 1], "duplicate chunks in a document"
    docs = {d.doc_id: d for d in store.list_documents()}
    orphans = {c["doc_id"] for c in chunks} - set(docs)
    assert not orphans, f"orphan chunks of {sorted(orphans)[:3]}"
    counts = Counter(c["doc_id"] for c in chunks)
    for doc_id, d in docs.items():
        assert counts.get(doc_id, 0) == d.chunk_count, d.path
        ordinals = sorted(c["ordinal"] for c in chunks if c["doc_id"] == doc_id)
        assert ordinals == list(range(d.chunk_count)), d.path
    return chunks
