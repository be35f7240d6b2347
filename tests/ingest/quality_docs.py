"""Generated documents for the parse-quality and OCR tests: bad cases and scans of known
text."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

#: the words drawn on the scans; OCR must find them
SCAN_LINES = [
    "Quarterly maintenance report for the north warehouse",
    "The conveyor belt was inspected on Monday morning",
    "Replacement bearings were ordered from the supplier",
]
HEADER = "ACME CORPORATION CONFIDENTIAL INTERNAL USE ONLY"
GOOD_TEXT = (
    "The harbor office opens at eight and closes at five on weekdays. Visitors sign in at "
    "the front desk and wear a badge while inside the building.\n\n"
    "Deliveries arrive through the east gate, where the guard checks every vehicle against "
    "the daily schedule before it may enter the yard."
)


def needs_tesseract() -> None:
    """Skip where Tesseract is truly absent, except in Enclave's CI (``CI`` set), where
    ``make install`` installs it: there its absence is a failure."""
    if shutil.which("tesseract") is None:
        if os.environ.get("CI"):
            pytest.fail("tesseract is not installed (make install installs tesseract-ocr)")
        pytest.skip("tesseract is not installed (make install installs tesseract-ocr)")


def scan_image(lines: list[str] = SCAN_LINES, repeat: int = 2) -> object:
    """A white A4 page at 150 DPI with ``lines`` drawn in black (no text layer anywhere)."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("L", (1240, 1754), 255)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=30)
    for i, line in enumerate(lines * repeat):
        draw.text((100, 120 + i * 64), line, fill=0, font=font)
    return img


def make_scanned_pdf(path: Path, pages: int = 2) -> Path:
    """A PDF of ``pages`` scanned pages (images only, no text layer); page N says
    ``Page N marker``."""
    images = [scan_image([*SCAN_LINES, f"Page {n + 1} marker"], repeat=1) for n in range(pages)]
    first, *rest = images
    first.save(path, format="PDF", resolution=150, save_all=True, append_images=rest)  # type: ignore[attr-defined]
    return path


def make_png(path: Path) -> Path:
    scan_image().save(path, format="PNG")  # type: ignore[attr-defined]
    return path


def make_mojibake_txt(path: Path) -> Path:
    """French and German prose encoded as UTF-8 and read back as cp1252 (``rÃ©sumÃ©``), saved
    as UTF-8: a file converted twice."""
    prose = (
        "Le résumé de la réunion précédente a été approuvé. Les équipes générées "
        "à partir des données élémentaires doivent être vérifiées avant le déploiement. "
        "Über die Größe der Lösung wird später entschieden; für die Prüfung müssen alle "
        "Schlüssel übergeben werden, später und gemäß der Vorgänge. "
    ) * 8
    path.write_text(prose.encode("utf-8").decode("cp1252", "replace"), encoding="utf-8")
    return path


def make_header_only_pdf(path: Path, pages: int = 20) -> Path:
    """A PDF with a text layer whose only text, on every page, is one running header."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    c = canvas.Canvas(str(path), pagesize=A4)
    for _ in range(pages):
        c.setFont("Helvetica", 10)
        c.drawString(72, 800, HEADER)
        c.showPage()
    c.save()
    return path


def make_good_txt(path: Path) -> Path:
    path.write_text(GOOD_TEXT + "\n", encoding="utf-8")
    return path
