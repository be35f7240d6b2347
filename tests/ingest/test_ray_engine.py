"""``enclave ingest --engine ray`` against a real local Ray cluster (127.0.0.1, 2 CPUs).

The same folder (text, Markdown, HTML, an empty file and broken files) ingested by the local
engine and by the Ray engine gives the same index: the same documents with the same status
and reason, the same chunk ids, texts and vectors (within 1e-5), and the same summary; the
Ray run makes one candidate release like the local one. A second run sends only the new and
changed files to the cluster. The hash embedder: what is under test is the engine."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from enclave.settings import Settings
from ingest.pipeline import ingest_paths
from models.embedder import HashEmbedder
from store.db import Store
from tests.fixtures.make_docs import make_html, make_md
from tests.ingest.helpers import write_text_corpus

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

EMB = HashEmbedder()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster() -> Iterator[None]:
    """A local Ray cluster of 2 CPUs on 127.0.0.1, for the module."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    env = {"PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
        runtime_env={"env_vars": env},
    )
    try:
        yield
    finally:
        ray.shutdown()


def settings_for(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, embedder={"model": "hash"}, ingest={"workers": 1})


def corpus(folder: Path) -> None:
    """Text files of 1 to ~8 chunks, Markdown, HTML, and files that fail or are empty."""
    write_text_corpus(folder, 6)
    make_md(folder / "guide.md")
    make_html(folder / "page.html")
    rng = random.Random(3)
    (folder / "garbage.docx").write_bytes(rng.randbytes(4096))
    (folder / "fake.pdf").write_text("this is not a PDF at all\n", encoding="utf-8")
    (folder / "binary.txt").write_bytes(rng.randbytes(8192))
    (folder / "empty.txt").write_bytes(b"")


def index_of(data_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    store = Store(data_dir / "lancedb")
    keep = ("doc_id", "path", "sha256", "size", "status", "error", "chunk_count", "parser")
    docs = sorted(
        ({k: row[k] for k in keep} for row in store.documents_table().to_arrow().to_pylist()),
        key=lambda d: d["doc_id"],
    )
    table = store.chunks_table()
    assert table is not None
    chunks = sorted(table.to_arrow().to_pylist(), key=lambda c: c["chunk_id"])
    return docs, chunks


def same_index(a: Path, b: Path) -> None:
    docs_a, chunks_a = index_of(a)
    docs_b, chunks_b = index_of(b)
    assert docs_a == docs_b
    assert [c["chunk_id"] for c in chunks_a] == [c["chunk_id"] for c in chunks_b]
    for x, y in zip(chunks_a, chunks_b, strict=True):
        vx, vy = np.asarray(x.pop("vector")), np.asarray(y.pop("vector"))
        assert np.max(np.abs(vx - vy)) <= 1e-5, x["chunk_id"]
        assert x == y


def core(summary: Any) -> dict[str, Any]:
    d = summary.to_dict()
    keep = ("files_seen", "ingested", "unchanged", "updated", "deleted", "chunks_added")
    return {**{k: d[k] for k in keep}, "failed": sorted(f["path"] for f in d["failed"])}


def test_the_ray_engine_builds_the_local_engines_index(tmp_path: Path, cluster: None) -> None:
    docs = tmp_path / "docs"
    corpus(docs)
    local = ingest_paths(settings_for(tmp_path / "local"), [docs], embedder=EMB)
    on_ray = ingest_paths(settings_for(tmp_path / "ray"), [docs], embedder=EMB, engine="ray")
    assert core(on_ray) == core(local)
    assert on_ray.failed and on_ray.release["promoted"] and on_ray.release["id"] == "r-000001"
    assert on_ray.engine["name"] == "ray"
    assert on_ray.engine["documents_sent"] == on_ray.files_seen == 12
    same_index(tmp_path / "local", tmp_path / "ray")

    # incremental: one file changed, one added; only those go to the cluster
    (docs / "doc003.txt").write_text("A changed text about the harbor beacon.\n", "utf-8")
    (docs / "new.txt").write_text("A new text about the cobalt lantern.\n", "utf-8")
    local = ingest_paths(settings_for(tmp_path / "local"), [docs], embedder=EMB)
    on_ray = ingest_paths(settings_for(tmp_path / "ray"), [docs], embedder=EMB, engine="ray")
    assert on_ray.engine["documents_sent"] == 2
    assert (on_ray.ingested, on_ray.updated) == (1, 1)
    assert core(on_ray) == core(local)
    assert on_ray.release["id"] == "r-000002" and on_ray.release["promoted"]
    same_index(tmp_path / "local", tmp_path / "ray")
