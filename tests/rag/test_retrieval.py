"""Retrieval: fusion keeps every distinct passage; only true copies are collapsed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from enclave.settings import SecuritySettings, Settings
from models.generator import FakeGenerator
from rag.retrieval import Search, duplicate_key, fuse, repeated_searches
from store.records import Candidate
from tests.server.conftest import live_server, write_docs

MEMO = (
    "Monthly compliance memo for the Northwind account. The quarterly review found no open "
    "findings. The access code for this month's archive is {code}. Keep this memo on file "
    "with the other compliance records."
)
CODES = [f"ZX-{n:04d}" for n in (1103, 2207, 3311, 4415, 5519, 6623, 7727, 8831, 9935, 1049,
                                  2153, 3257)]  # fmt: skip


def test_fuse_ranks_by_reciprocal_rank_and_collapses_only_copies() -> None:
    v = np.ones(4, dtype=np.float32) / 2
    w = np.array([1, 0, 0, 0], dtype=np.float32)
    dense = [
        Candidate("a", "d", text="The code is ZX-1103.", vector=v),
        Candidate("b", "d", text="  the CODE is\nZX-1103. ", vector=v),  # a copy of a
        Candidate("e", "d", text="The code is ZX-2207.", vector=v),  # same vector, new code
    ]
    sparse = [Candidate("c", "d", text="Other text.", vector=w), dense[0]]
    hits = fuse(dense, sparse, top_k=5)
    # a is in both lists and ranks first; b is a's text again and is collapsed; e differs in
    # its code and is kept although its vector is the same
    assert [h.chunk_id for h in hits] == ["a", "c", "e"]
    assert hits[0].score == pytest.approx(1 / 61 + 1 / 62, abs=1e-6)
    every = fuse(dense, sparse, top_k=5, collapse_duplicates=False)
    assert [h.chunk_id for h in every] == ["a", "c", "b", "e"]


def test_a_repeated_search_runs_once() -> None:
    plan = [
        Search("vector", "vector", "ERR_42 in pg_hba.conf?"),
        Search("text", "text", "ERR_42 in pg_hba.conf?"),
        Search("terms", "text", "ERR_42 in pg_hba conf"),  # the same words for the index
        Search("turn_vector", "vector", "pg_hba.conf"),
        Search("turn_text", "text", "pg_hba.conf"),
    ]
    assert repeated_searches(plan) == {2: 1}


def test_duplicate_key_normalises_case_space_and_unicode_forms() -> None:
    assert duplicate_key("Ｃode  ZX-1103") == duplicate_key("code zx-1103")
    assert duplicate_key("code ZX-1103") != duplicate_key("code ZX-1104")


def test_search_returns_every_templated_memo(tmp_path: Path, bundled_embedder: Any) -> None:
    """Twelve memos of one template that differ only in a code word: a search with top_k 20
    returns all twelve through the real server."""
    from ingest.pipeline import ingest_paths
    from server.app import create_app
    from store.db import Store

    docs = tmp_path / "memos"
    write_docs(docs, {f"memo-{i:02d}.txt": MEMO.format(code=c) for i, c in enumerate(CODES)})
    settings = Settings(data_dir=tmp_path / "data", security=SecuritySettings(auth=False))
    summary = ingest_paths(settings, [docs], embedder=bundled_embedder)
    assert summary.ingested == len(CODES)
    app = create_app(
        settings,
        generator=FakeGenerator(),
        embedder=bundled_embedder,
        store=Store(settings.lance_dir),
    )
    with live_server(app, settings) as live:
        body = {"query": "Northwind compliance memo access code", "top_k": 20}
        results = httpx.post(live.v1 + "/search", json=body, timeout=60).json()["results"]
    found = {code for code in CODES for r in results if code in r["text"]}
    assert found == set(CODES)
    assert len(results) == len(CODES)
