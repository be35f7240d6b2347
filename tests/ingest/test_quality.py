"""Parse-quality scores: generated bad documents score below the threshold with a reason that
names the problem; good documents in every fast format pass. OCR reads scans of known text."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from enclave.settings import IngestSettings, QualitySettings
from ingest.parse import parse_file
from ingest.quality import assess, wordlike
from tests.fixtures.make_docs import make
from tests.ingest.quality_docs import (
    make_good_txt,
    make_header_only_pdf,
    make_mojibake_txt,
    make_png,
    make_scanned_pdf,
    needs_tesseract,
)

NO_OCR = IngestSettings(ocr="off")


def verdict(path: Path, ingest: IngestSettings = NO_OCR) -> object:
    doc = parse_file(str(path), ingest)
    return assess(doc, os.path.getsize(path), QualitySettings())


def test_scanned_pdf_without_ocr_needs_ocr(tmp_path: Path) -> None:
    q = verdict(make_scanned_pdf(tmp_path / "scan.pdf"))
    assert q is not None and q.quarantined
    assert q.score == 0.0
    assert q.reason.startswith("needs OCR: 2 of 2 pages have no text layer"), q.reason
    assert q.signals["needs_ocr"] == 2
    assert q.failed[0] == "text_page_share"


def test_mojibake_text_is_quarantined(tmp_path: Path) -> None:
    q = verdict(make_mojibake_txt(tmp_path / "notes.txt"))
    assert q is not None and q.quarantined, q
    assert "mojibake_share" in q.failed
    assert "mis-decoded" in q.reason
    assert float(q.signals["mojibake_share"]) > 0.2


def test_pdf_of_one_repeated_header_is_quarantined(tmp_path: Path) -> None:
    q = verdict(make_header_only_pdf(tmp_path / "header.pdf"))
    assert q is not None and q.quarantined, q
    assert "repeated_line_share" in q.failed
    assert "repeat other lines" in q.reason


@pytest.mark.parametrize(
    "fmt", ["pdf", "html", "md", "docx", "pptx", "xlsx", "odt", "eml", "txt", "csv"]
)
def test_good_documents_pass(tmp_path: Path, fmt: str) -> None:
    q = verdict(make(fmt, tmp_path))
    assert q is not None
    assert not q.quarantined, (fmt, q.reason, q.signals)
    assert q.score >= 0.5


def test_good_text_scores_high(tmp_path: Path) -> None:
    q = verdict(make_good_txt(tmp_path / "good.txt"))
    assert q is not None and q.score > 0.9, q


def test_wordlike() -> None:
    assert all(wordlike(w) for w in ["harbor", "Harbor", "NATO", "by", "déjà", "naïve", "Größe"])
    assert not any(wordlike(w) for w in ["xqzt", "getElementById", "a1b2", "x_y", "rÃ©sumÃ"])


def test_thresholds_come_from_settings(tmp_path: Path) -> None:
    path = make_mojibake_txt(tmp_path / "notes.txt")
    doc = parse_file(str(path), NO_OCR)
    lenient = QualitySettings(max_mojibake_share=0.9, min_word_share=0.0)
    q = assess(doc, os.path.getsize(path), lenient)
    assert q is not None and not q.quarantined, q.reason


# ---------------------------------------------------------------------------------- OCR
def test_ocr_reads_a_scanned_pdf_with_page_numbers(tmp_path: Path) -> None:
    needs_tesseract()
    path = make_scanned_pdf(tmp_path / "scan.pdf", pages=2)
    doc = parse_file(str(path), IngestSettings())
    assert doc.ocr_pages == 2 and doc.needs_ocr == 0
    text = " ".join(e.text for e in doc.elements).lower()
    for word in ("quarterly", "maintenance", "warehouse", "conveyor", "bearings", "supplier"):
        assert word in text, text[:300]
    pages = {e.page for e in doc.elements if "marker" in e.text.lower()}
    assert pages == {1, 2}
    q = assess(doc, os.path.getsize(path), QualitySettings())
    assert q is not None and not q.quarantined, q.reason


def test_ocr_reads_a_png(tmp_path: Path) -> None:
    needs_tesseract()
    path = make_png(tmp_path / "scan.png")
    doc = parse_file(str(path), IngestSettings())
    assert doc.parser == "tesseract" and doc.pages == 1
    text = " ".join(e.text for e in doc.elements).lower()
    assert "warehouse" in text and "bearings" in text, text[:300]
    assert {e.page for e in doc.elements} == {1}


def test_image_without_ocr_needs_ocr(tmp_path: Path) -> None:
    q = verdict(make_png(tmp_path / "scan.png"))
    assert q is not None and q.quarantined and q.reason.startswith("needs OCR")


def test_corrupt_image_fails_cleanly(tmp_path: Path) -> None:
    from ingest.types import ParseError

    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(ParseError, match="not a valid image file"):
        parse_file(str(path), IngestSettings())
