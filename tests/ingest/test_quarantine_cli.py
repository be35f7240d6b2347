"""Quarantine through the ``enclave`` command line, with the hash embedder: bad documents get a
row and no chunks, are listed by status and ``quarantine list``, never reach search; release
admits one through a new release (kept until the file changes); retry re-parses with OCR."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from store.db import Store
from store.records import STATUS_OK, STATUS_QUARANTINED
from tests.ingest.quality_docs import (
    make_good_txt,
    make_header_only_pdf,
    make_mojibake_txt,
    make_scanned_pdf,
    needs_tesseract,
)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> typer.Typer:
    from enclave import cli as root

    monkeypatch.setenv("ENCLAVE_EMBEDDER__MODEL", "hash")
    monkeypatch.setenv("ENCLAVE_INGEST__WORKERS", "1")
    root._register()
    return root.app


def run(cli: typer.Typer, *args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def as_json(result: Result) -> dict[str, Any]:
    lines = [ln for ln in result.stdout.splitlines() if ln.strip().startswith("{")]
    assert lines, result.output
    data: dict[str, Any] = json.loads(lines[-1])
    return data


def chunk_doc_ids(data_dir: Path) -> set[str]:
    table = Store(data_dir / "lancedb").chunks_table()
    assert table is not None
    return set(table.to_arrow().column("doc_id").to_pylist())


def test_quarantine_release_retry(
    cli: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    docs, data = tmp_path / "docs", tmp_path / "data"
    docs.mkdir()
    make_good_txt(docs / "good.txt")
    scan = make_scanned_pdf(docs / "scan.pdf", pages=1)
    moji = make_mojibake_txt(docs / "notes.txt")
    make_header_only_pdf(docs / "header.pdf")
    monkeypatch.setenv("ENCLAVE_INGEST__OCR", "off")

    r = run(cli, "ingest", str(docs), "-d", str(data), "--json")
    assert r.exit_code == 0, r.output  # a quarantine is a decision, not a failure
    summary = as_json(r)
    assert summary["release"]["promoted"] is True
    reasons = {Path(q["path"]).name: q["reason"] for q in summary["quarantined"]}
    assert set(reasons) == {"scan.pdf", "notes.txt", "header.pdf"}
    assert reasons["scan.pdf"].startswith("needs OCR")
    assert summary["ingested"] == 1

    # rows with reason, score and signals; no chunks at all
    store = Store(data / "lancedb")
    state = store.documents_state()
    bad = [d for d in state.values() if d.status == STATUS_QUARANTINED]
    assert len(bad) == 3 and all(d.chunk_count == 0 for d in bad)
    assert all(d.quality_score is not None and d.quality["signals"] for d in bad)
    assert chunk_doc_ids(data) == {d.doc_id for d in state.values() if d.status == STATUS_OK}

    status = as_json(run(cli, "status", "-d", str(data), "--json"))
    assert status["documents_by_status"]["quarantined"] == 3
    assert {Path(q["path"]).name for q in status["quarantined"]} == set(reasons)
    assert not status["failures"]

    listed = as_json(run(cli, "quarantine", "list", "-d", str(data), "--json"))
    assert len(listed["quarantined"]) == 3 and listed["release"] == summary["release"]["id"]
    check_served_views(data, docs)

    # release: admitted through a new live release, and kept while the file is unchanged
    r = run(cli, "quarantine", "release", str(moji), "-d", str(data), "--json")
    assert r.exit_code == 0, r.output
    out = as_json(r)["summary"]
    assert out["updated"] == 1 and out["release"]["promoted"] is True
    assert out["release"]["id"] != summary["release"]["id"]
    row = Store(data / "lancedb").documents_state()[str(moji.resolve())]
    assert row.status == STATUS_OK and row.chunk_count > 0
    assert row.quality["admitted"]["sha256"] == row.sha256
    assert row.quality["admitted"]["by"] == "enclave quarantine release"
    assert row.doc_id in chunk_doc_ids(data)

    r = run(cli, "ingest", str(docs), "-d", str(data), "--json", "--no-progress")
    again = as_json(r)
    assert again["quarantined"] == [] and again["unchanged"] == 4

    r = run(cli, "quarantine", "retry", "--all", "-d", str(data), "--json")
    assert r.exit_code == 1  # the two left are still quarantined
    assert {Path(q["path"]).name for q in as_json(r)["summary"]["quarantined"]} == {
        "scan.pdf",
        "header.pdf",
    }

    # a changed file is scored again
    moji.write_text(moji.read_text("utf-8") + " Ã©tÃ© ", encoding="utf-8")
    r = run(cli, "ingest", str(docs), "-d", str(data), "--json")
    assert [Path(q["path"]).name for q in as_json(r)["quarantined"]] == ["notes.txt"]

    # not quarantined / unknown: usage errors
    r = run(cli, "quarantine", "release", str(docs / "good.txt"), "-d", str(data))
    assert r.exit_code == 2 and "not quarantined" in r.output
    r = run(cli, "quarantine", "retry", "0" * 24, "-d", str(data))
    assert r.exit_code == 2

    # retry with OCR available: the scan is read and indexed
    needs_tesseract()
    monkeypatch.setenv("ENCLAVE_INGEST__OCR", "auto")
    r = run(cli, "quarantine", "retry", str(scan), "-d", str(data), "--json")
    assert r.exit_code == 0, r.output
    row = Store(data / "lancedb").documents_state()[str(scan.resolve())]
    assert row.status == STATUS_OK and row.chunk_count >= 1
    assert row.quality["signals"]["ocr_pages"] == 1
    listed = as_json(run(cli, "quarantine", "list", "-d", str(data), "--json"))
    assert {Path(q["path"]).name for q in listed["quarantined"]} == {"header.pdf", "notes.txt"}


def check_served_views(data: Path, docs: Path) -> None:
    """The documents API lists the quarantined file with its reason (signals for admins
    only), and no search finds its words."""
    from enclave.settings import load_settings
    from server.services.documents import DocumentService
    from store.live import LiveIndex

    service = DocumentService(
        load_settings(overrides={"data_dir": str(data)}), LiveIndex(data / "lancedb")
    )

    admin = service.list(limit=10, offset=0, status="quarantined", show_groups=True)
    assert admin["total"] == 3
    (doc,) = [d for d in admin["data"] if d["path"].endswith("notes.txt")]
    assert doc["status"] == "quarantined" and doc["chunk_count"] == 0
    assert "mis-decoded" in doc["error"] and doc["quality"]["reason"] == doc["error"]
    assert doc["quality"]["signals"]["mojibake_share"] > 0.2
    # a key that is no admin (and may read the document) sees the status, reason and score,
    # not the signals
    from server.services.documents import document_dict

    row = Store(data / "lancedb").get_document(doc["id"])
    assert row is not None
    shown = document_dict(row, show_groups=False)
    assert shown["status"] == "quarantined" and shown["error"] == doc["error"]
    assert "signals" not in shown["quality"] and "groups" not in shown
    assert shown["quality"]["score"] == doc["quality"]["score"]
    detail = service.get(doc["id"])
    assert detail["chunks"] == []
    # the words of the quarantined file are nowhere in search
    view = LiveIndex(data / "lancedb").reader()
    assert view.text_search("entschieden doivent", 10) == []
    assert {c.source for c in view.text_search("harbor deliveries", 10)} == {
        str((docs / "good.txt").resolve())
    }
