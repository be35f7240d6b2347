"""Hostile sizes: one huge file must neither blow the ingesting process's memory nor hold the
small files behind it; a document written in slices is never visible as complete before it
is. Real files generated at test time, the real pipeline and LanceDB, the hash embedder (the
behaviour does not depend on the model)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from enclave.offline import offline_env
from enclave.settings import Settings
from ingest.pipeline import ingest_paths
from ingest.write import INCOMPLETE
from models.embedder import HashEmbedder
from store.db import Store
from store.records import doc_id_for_path
from tests.ingest.helpers import WORDS, assert_consistent, settings_for

REPO = Path(__file__).resolve().parents[2]
GIB = 1 << 30


def _hash_settings(data: Path, **ingest: Any) -> Settings:
    settings = settings_for(data, **ingest)
    settings.embedder.model = "hash"
    return settings


def _one_line_file(path: Path, size: int) -> None:
    """``size`` bytes of words on a single line (no line break anywhere)."""
    rng = random.Random(0)
    block = " ".join(rng.choice(WORDS) for _ in range(100_000)) + " "
    with path.open("w", encoding="ascii") as fh:
        written = 0
        while written < size:
            part = block[: size - written]
            fh.write(part)
            written += len(part)


def _table(path: Path, rows: int) -> None:
    rng = random.Random(1)
    with path.open("w", encoding="utf-8") as fh:
        fh.write("id,name,region,notes\n")
        for i in range(rows):
            notes = " ".join(rng.choice(WORDS) for _ in range(8))
            fh.write(f"{i},{rng.choice(WORDS)} {rng.choice(WORDS)},{rng.choice(WORDS)},{notes}\n")


def _small_files(folder: Path) -> list[Path]:
    paths = []
    for k in range(3):
        p = folder / f"b-small{k}.txt"  # after the big file in walk order
        p.write_text(f"Small file {k} about the falcon river, smallmarker{k}.\n")
        paths.append(p)
    return paths


MEASURE = """
import json, resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr[-3000:],
                  "peak": peak}))
"""


@pytest.mark.slow
def test_a_200_mib_one_line_file_stays_under_2_gib(tmp_path: Path) -> None:
    """``enclave ingest`` (and its parser workers) peak below 2 GiB on a 200 MiB single-line
    text file; the document is indexed up to ``ingest.max_chunks_per_document`` and says so."""
    docs = tmp_path / "docs"
    docs.mkdir()
    big = docs / "one-line.txt"
    _one_line_file(big, 200 * 1024 * 1024)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env.update(offline_env())
    env.update(PYTHONPATH=str(REPO), ENCLAVE_EMBEDDER__MODEL="hash", ENCLAVE_INGEST__WORKERS="1")
    cmd = [sys.executable, "-m", "ingest.cli", "ingest", str(docs), "-d", str(tmp_path / "d"),
           "--json"]  # fmt: skip
    run = subprocess.run(
        [sys.executable, "-c", MEASURE, *cmd], env=env, capture_output=True, text=True, check=True
    )
    out = json.loads(run.stdout)
    assert out["rc"] == 0, out["stderr"]
    summary = json.loads(out["stdout"])
    assert out["peak"] <= 2 * GIB, f"peak RSS {out['peak'] / GIB:.2f} GiB"
    assert (summary["ingested"], summary["chunks_added"]) == (1, 20_000)
    [truncated] = summary["truncated"]
    assert truncated["reason"].startswith("truncated: only the first 20,000 chunks were indexed")
    row = Store(tmp_path / "d" / "lancedb").get_document(doc_id_for_path(big))
    assert row is not None and row.status == "ok" and row.error == truncated["reason"]
    assert row.chunk_count == 20_000


def test_a_long_table_is_cut_at_the_chunk_cap_with_a_reason(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    _table(docs / "rows.csv", 5_000)
    settings = _hash_settings(tmp_path / "data", max_chunks_per_document=50)
    summary = ingest_paths(settings, [docs], embedder=HashEmbedder())
    assert (summary.ingested, summary.chunks_added, summary.failed) == (1, 50, [])
    assert summary.truncated[0]["reason"].startswith("truncated: only the first 50 chunks")
    # a cap on characters: a text parser stops reading at the document's character budget
    # (max_chunks_per_document x chunk_tokens x 10); the reason says which cap bit
    (docs / "rows.csv").unlink()
    (docs / "long.txt").write_text("lantern " * 20_000)  # 160,000 characters, few chunks
    small = _hash_settings(tmp_path / "data2", max_chunks_per_document=2, chunk_tokens=16)
    cut = ingest_paths(small, [docs], embedder=HashEmbedder())
    assert cut.truncated and cut.truncated[0]["reason"].startswith("truncated: only the first 2 ")


def test_small_files_are_committed_before_a_big_one_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind a table of thousands of chunks (first in walk order, parsed first), three small
    files are committed while the table is still being written in slices, and the table is
    never visible as complete before its last slice."""
    docs = tmp_path / "docs"
    docs.mkdir()
    table = docs / "a-table.csv"
    _table(table, 12_000)
    smalls = _small_files(docs)
    settings = _hash_settings(tmp_path / "data", workers=1, write_batch_chunks=500)
    big_id = doc_id_for_path(table)
    small_ids = {doc_id_for_path(p) for p in smalls}
    events: list[tuple[str, str, str]] = []  # (doc_id, status, error) after each row write
    originals = {name: getattr(Store, name) for name in ("replace_documents", "append_chunks",
                                                         "upsert_document_rows")}  # fmt: skip

    def record(name: str) -> Any:
        def wrapper(self: Store, *args: Any, **kwargs: Any) -> Any:
            result = originals[name](self, *args, **kwargs)
            big = self.get_document(big_id)
            if big is not None:
                events.append((big_id, big.status, big.error))
            for sid in small_ids:
                small = self.get_document(sid)
                if small is not None and small.status == "ok":
                    events.append((sid, small.status, ""))
            return result

        return wrapper

    for name in originals:
        monkeypatch.setattr(Store, name, record(name))
    summary = ingest_paths(settings, [docs], embedder=HashEmbedder())
    assert (summary.ingested, summary.failed) == (4, [])
    assert summary.chunks_added > 2_000  # several slices of 500
    big_done = next(i for i, e in enumerate(events) if e[0] == big_id and e[1] == "ok")
    smalls_done = max(next(i for i, e in enumerate(events) if e[0] == sid) for sid in small_ids)
    assert smalls_done < big_done, "the small files waited for the big one"
    while_writing = [e for e in events[:big_done] if e[0] == big_id]
    assert while_writing and all(e[1:] == ("failed", INCOMPLETE) for e in while_writing)
    chunks = assert_consistent(Store(settings.lance_dir))
    assert len([c for c in chunks if c["doc_id"] == big_id]) == summary.chunks_added - 3


def test_a_run_stopped_between_slices_is_redone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    table = docs / "a-table.csv"
    _table(table, 6_000)
    settings = _hash_settings(tmp_path / "data", workers=1, write_batch_chunks=300)
    calls = {"n": 0}
    original = Store.append_chunks

    def failing(self: Store, chunks: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        original(self, chunks)

    monkeypatch.setattr(Store, "append_chunks", failing)
    with pytest.raises(OSError, match="disk full"):
        ingest_paths(settings, [docs], embedder=HashEmbedder())
    store = Store(settings.lance_dir)
    row = store.get_document(doc_id_for_path(table))
    assert row is not None and (row.status, row.error, row.sha256) == ("failed", INCOMPLETE, "")
    # two slices in (each at least write_batch_chunks), the document not shown as complete
    assert 600 <= store.count_chunks() < 2 * (300 + 4 * HashEmbedder().batch_size)
    monkeypatch.setattr(Store, "append_chunks", original)
    again = ingest_paths(settings, [docs], embedder=HashEmbedder())
    assert (again.updated, again.failed) == (1, [])
    row = store.get_document(doc_id_for_path(table))
    assert row is not None and row.status == "ok" and row.error == ""
    assert len(assert_consistent(store)) == row.chunk_count == again.chunks_added
