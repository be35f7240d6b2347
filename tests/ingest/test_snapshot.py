"""The snapshot that lets an unchanged re-run skip LanceDB (ingest/snapshot.py): used only
when it provably matches the index and the files, and the full path otherwise."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from enclave.errors import EmbedderMismatchError
from ingest.pipeline import ingest_paths
from ingest.snapshot import SNAPSHOT_FILE, index_signature, load_snapshot
from ingest.summary import IngestSummary
from models.embedder import HashEmbedder
from store.db import Store
from store.records import normalise_path
from tests.ingest.helpers import assert_consistent, settings_for, write_text_corpus


def _run(data: Path, docs: Path, **kwargs: object) -> IngestSummary:
    settings = settings_for(data, workers=1)
    return ingest_paths(settings, [docs], embedder=HashEmbedder(), **kwargs)  # type: ignore[arg-type]


def _same_counts(a: IngestSummary, b: IngestSummary) -> None:
    keys = ("files_seen", "ingested", "unchanged", "updated", "deleted", "failed",
            "chunks_added", "chunks_deleted", "previously_failed", "skipped_unsupported",
            "embedder")  # fmt: skip
    assert {k: a.to_dict()[k] for k in keys} == {k: b.to_dict()[k] for k in keys}


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, Path]:
    docs = tmp_path / "docs"
    write_text_corpus(docs, 6, seed=3)
    (docs / "empty.txt").write_text("   \n", encoding="utf-8")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7 not really")
    (docs / "notes.xyz").write_text("unsupported", encoding="utf-8")
    first = _run(tmp_path / "data", docs)
    assert first.ingested == 6 and len(first.failed) == 2 and not first.from_snapshot
    return tmp_path / "data", docs


def test_unchanged_rerun_is_decided_from_the_snapshot(corpus: tuple[Path, Path]) -> None:
    data, docs = corpus
    quick = _run(data, docs)
    assert quick.from_snapshot and quick.unchanged == 8 and quick.previously_failed == 2
    assert quick.skipped_unsupported == 1
    # the full path (no snapshot) says exactly the same
    (data / SNAPSHOT_FILE).unlink()
    full = _run(data, docs)
    assert not full.from_snapshot
    _same_counts(quick, full)
    assert json.loads((data / "last-ingest.json").read_text())["summary"]["unchanged"] == 8


def test_a_changed_file_takes_the_full_path(corpus: tuple[Path, Path]) -> None:
    data, docs = corpus
    target = docs / "doc002.txt"
    target.write_text("a new text about a cobalt lantern in the harbor\n", encoding="utf-8")
    run = _run(data, docs)
    assert not run.from_snapshot and run.updated == 1 and run.unchanged == 7
    assert _run(data, docs).from_snapshot  # the new snapshot holds the new state
    os.utime(target, (1_000_000_000, 1_000_000_000))  # same bytes, new mtime: hashed, touched
    touched = _run(data, docs)
    assert not touched.from_snapshot and touched.unchanged == 8 and touched.updated == 0
    assert _run(data, docs).from_snapshot


def test_any_change_to_the_index_voids_the_snapshot(corpus: tuple[Path, Path]) -> None:
    data, docs = corpus
    store = Store(data / "lancedb")
    before = index_signature(store.path)
    assert load_snapshot(data, store.path) is not None
    # a delete from outside the pipeline (the documents API does this)
    store.delete_documents([store.documents_state()[normalise_path(docs / "doc001.txt")].doc_id])
    assert index_signature(store.path) != before
    assert load_snapshot(data, store.path) is None
    run = _run(data, docs)
    assert not run.from_snapshot and run.ingested == 1 and run.unchanged == 7
    assert_consistent(store)


def test_prune_new_files_and_a_damaged_snapshot(corpus: tuple[Path, Path]) -> None:
    data, docs = corpus
    (docs / "doc004.txt").unlink()
    kept = _run(data, docs)  # without --prune a vanished file is left alone ...
    assert kept.from_snapshot and kept.deleted == 0 and kept.unchanged == 7
    pruned = _run(data, docs, prune=True)  # ... with it, the full path deletes it
    assert not pruned.from_snapshot and pruned.deleted == 1
    write_text_corpus(docs / "more", 1, seed=9)
    added = _run(data, docs)
    assert not added.from_snapshot and added.ingested == 1
    (data / SNAPSHOT_FILE).write_text('{"format": 1, "signature": ', encoding="utf-8")
    damaged = _run(data, docs)
    assert not damaged.from_snapshot and damaged.unchanged == 8
    assert _run(data, docs).from_snapshot


def test_options_that_need_the_index_skip_the_snapshot(corpus: tuple[Path, Path]) -> None:
    data, docs = corpus
    regrouped = _run(data, docs, groups=["finance"])
    assert not regrouped.from_snapshot
    settings = settings_for(data, workers=1, rehash=True)
    assert not ingest_paths(settings, [docs], embedder=HashEmbedder()).from_snapshot
    # another embedder is refused with the usual message, snapshot or not
    with pytest.raises(EmbedderMismatchError, match="built with embedder"):
        ingest_paths(settings_for(data), [docs], embedder=HashEmbedder(dimension=96))
