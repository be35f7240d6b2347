"""Re-indexing without downtime: ``enclave reindex`` builds a complete new index (another
chunk size, another embedder) in a new table set while a running server keeps serving the
live release; promotion switches the server to it at once (with its own embedder) and a
rollback returns. Real uvicorn and LanceDB; hash embedders of two dimensions."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from enclave.errors import EmbedderMismatchError
from enclave.settings import Settings
from ingest.pipeline import ingest_paths
from ingest.reindex import reindex
from store.db import Store
from store.lock import WriterLock
from store.releases import Releases
from store.sets import set_dir, side_sets
from tests.server.test_releases_live import ingest, serving

# made-up words that read as words (letters, vowels): the parse-quality check admits them
SYLLABLES = [
    a + b
    for a in ("ka", "lo", "mi", "nu", "pe", "ro", "su", "ta")
    for b in ("ban", "dor", "fin", "gul", "lem")
]
WORDS = " ".join(f"{SYLLABLES[i % 40]}{SYLLABLES[i // 40]}" for i in range(400))


def tag(i: int) -> str:
    """A marker word for file ``i`` (``tailc`` for 2)."""
    return "abcdefghij"[i]


def corpus(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(4):
        (folder / f"f{i}.txt").write_text(
            f"file{tag(i)} {WORDS}\n\n{WORDS} tail{tag(i)}\n", "utf-8"
        )


def settings_for(root: Path, **over: Any) -> Settings:
    return Settings(
        data_dir=root / "data",
        embedder={"model": over.pop("model", "hash")},
        ingest={"chunk_tokens": over.pop("chunk_tokens", 120)},
        security={"auth": False},
        retrieval={"top_k": 50, "candidates": 50, "min_similarity": 0.0},
        release=over,
    )


def served(base: str) -> tuple[str, int, int]:
    """(release, chunks of the live release, dimension of a search's question)"""
    ready = httpx.get(base + "/readyz", timeout=10).json()["index"]
    body = httpx.post(base + "/v1/search", json={"query": "tailc", "top_k": 5}, timeout=30)
    assert body.status_code == 200, body.text
    hits = body.json()["results"]
    assert hits and "tailc" in " ".join(h["text"] for h in hits)
    return ready["release"], ready["chunks"], len(hits)


def switch(base: str, settings: Settings, rid: str | None) -> float:
    """Promote ``rid`` (None: roll back); seconds until the server serves it."""
    with WriterLock(settings.lance_dir, "test"):
        rels = Releases(Store(settings.lance_dir))
        if rid is None:
            rid = rels.rollback(by="test")[1].id
        else:
            rels.promote(rels.registry.get(rid), by="test")
    started = time.monotonic()
    while served(base)[0] != rid:
        assert time.monotonic() - started < 5, f"the server never served {rid}"
        time.sleep(0.05)
    return time.monotonic() - started


def test_chunk_size_and_embedder_reindex_while_serving(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    corpus(docs)
    settings = settings_for(tmp_path)
    assert ingest(settings, docs)["promoted"]
    with serving(settings) as live:
        base = live.base_url
        old = served(base)
        assert old[0] == "r-000001"
        # 1. another chunk size, built while r-000001 is served, promoted by hand
        out = reindex(settings_for(tmp_path, chunk_tokens=40, auto_promote=False), [docs])
        rid, tables = out["release"]["id"], out["reindex"]["tables"]
        assert (rid, tables, out["release"]["state"]) == ("r-000002", "t-000002", "candidate")
        assert out["reindex"]["to"]["build"]["chunk_tokens"] == 40
        time.sleep(0.6)
        assert served(base) == old  # the candidate is not served
        assert switch(base, settings, rid) < 2.0
        small = served(base)
        assert small[1] > old[1] * 2  # smaller chunks, more of them
        assert switch(base, settings, None) < 2.0  # rollback returns
        assert served(base) == old
        assert switch(base, settings, rid) < 2.0
        # 2. another embedder (32 dimensions), promoted at the end of its run
        out = reindex(settings_for(tmp_path, model="hash-32"), [docs])
        assert out["release"]["promoted"] and out["reindex"]["to"]["embedder"] == "hash-32"
        rid3 = out["release"]["id"]
        wait = time.monotonic()
        while served(base)[0] != rid3:  # the server loads hash-32 first, then serves it
            assert time.monotonic() - wait < 5
            time.sleep(0.05)
        assert Store(settings.lance_dir, tables=out["reindex"]["tables"]).dimension == 32
        assert switch(base, settings, None) < 2.0
        assert served(base) == small  # the 64-dimension tables, questions embedded by hash
        assert switch(base, settings, rid3) < 2.0
        ready = httpx.get(base + "/readyz", timeout=10).json()
        assert ready["status"] == "ready"
    # writers now write to the live set; an ingest with the old embedder is refused clearly
    assert set(side_sets(settings.lance_dir)) == {"t-000002", "t-000003"}
    (docs / "f9.txt").write_text("filej brings new text, tailj\n", "utf-8")
    with pytest.raises(EmbedderMismatchError, match="enclave reindex"):
        ingest(settings, docs)  # hash-64: the live tables hold hash-32 vectors
    summary = ingest_paths(settings_for(tmp_path, model="hash-32"), [docs], prune=True)
    assert summary.release["promoted"] and summary.ingested == 1
    live = Releases(Store(settings.lance_dir)).registry.live()
    assert live is not None and live.tables == "t-000003"
    assert set_dir(settings.lance_dir, "t-000003").is_dir()
    # a purge reaches every table set: the file leaves every retained release
    from ingest.purge import purge
    from store.registry import EXPIRED, SUPERSEDED
    from store.releases import open_release

    purge(settings_for(tmp_path, model="hash-32"), str(docs / "f1.txt"), hooks=None)
    registry = Releases(Store(settings.lance_dir)).registry
    kept = [r for r in registry.records() if r.state not in (EXPIRED, SUPERSEDED)]
    assert {r.tables for r in kept} >= {None, "t-000002", "t-000003"}
    for rec in kept:
        names = {
            d.path.rsplit("/", 1)[-1]
            for d in open_release(settings.lance_dir, rec.id).list_documents()
        }
        assert "f1.txt" not in names and "f0.txt" in names, rec.id
