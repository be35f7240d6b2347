"""OCR with the Tesseract binary (Debian's ``tesseract-ocr``), called directly: no Python
binding, no model download, nothing leaves the machine.

:func:`ocr_image` hands one page image to ``tesseract stdin stdout`` as PNG bytes and returns
its text; :func:`parse_image` reads PNG, JPEG and TIFF files (every frame of a multi-page TIFF
is a page). Scanned PDF pages are rendered by pypdfium2 and read here too
(ingest/parsers/pdf.py). Where Tesseract is missing, or ``ingest.ocr = "off"``, nothing is read
and the document says how many pages needed OCR (``ParsedDocument.needs_ocr``): the quality
check quarantines it as "needs OCR" (ingest/quality.py), and ``enclave quarantine retry``
reads it once Tesseract is installed.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ingest.types import Element, ParsedDocument, ParseError

if TYPE_CHECKING:
    from enclave.settings import IngestSettings

#: what users are told when a document needs OCR and none is available
INSTALL_HINT = "install tesseract-ocr (make install does), then `enclave quarantine retry`"
#: one page's OCR may take this long before it is given up
PAGE_TIMEOUT_S = 60.0
#: images are read at most this many pixels a side (a bigger scan is scaled down first)
MAX_SIDE = 6000


@dataclass(frozen=True)
class OcrOptions:
    """What the parsers need to know about OCR (picklable, built from ``IngestSettings``)."""

    enabled: bool = True
    languages: str = "eng"
    dpi: int = 200
    max_pages: int = 50

    @classmethod
    def from_settings(cls, settings: IngestSettings) -> OcrOptions:
        return cls(
            enabled=settings.ocr != "off",
            languages=settings.ocr_languages,
            dpi=settings.ocr_dpi,
            max_pages=settings.ocr_max_pages,
        )

    @property
    def available(self) -> bool:
        return self.enabled and tesseract_path() is not None


def tesseract_path() -> str | None:
    """The ``tesseract`` binary on PATH, or None."""
    return shutil.which("tesseract")


def ocr_image(image: Any, languages: str = "eng") -> str:
    """The text Tesseract reads in a PIL image. Raises :class:`ParseError` when Tesseract
    fails or runs past :data:`PAGE_TIMEOUT_S`."""
    binary = tesseract_path()
    if binary is None:
        raise ParseError(f"needs OCR: tesseract is not installed ({INSTALL_HINT})")
    if image.mode not in ("1", "L", "RGB"):
        image = image.convert("RGB")
    if max(image.size) > MAX_SIDE:
        image = image.copy()
        image.thumbnail((MAX_SIDE, MAX_SIDE))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    # one thread per page: the parser pool already runs one worker per core
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    try:
        proc = subprocess.run(
            [binary, "stdin", "stdout", "-l", languages, "--psm", "3"],
            input=buf.getvalue(),
            capture_output=True,
            timeout=PAGE_TIMEOUT_S,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ParseError(f"OCR timed out after {PAGE_TIMEOUT_S:.0f} s on one page") from exc
    except OSError as exc:
        raise ParseError(f"could not run tesseract: {exc.strerror or exc}") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise ParseError(
            f"OCR failed: {(err[-1] if err else 'tesseract exit ' + str(proc.returncode))[:200]}"
        )
    return proc.stdout.decode("utf-8", "replace")


def page_elements(text: str, page: int) -> list[Element]:
    """OCR text of one page as paragraph elements (split at blank lines)."""
    out: list[Element] = []
    for para in text.replace("\r", "").split("\n\n"):
        para = "\n".join(line.rstrip() for line in para.strip().split("\n"))
        if para.strip():
            out.append(Element(text=para, kind="text", page=page))
    return out


def parse_image(path: str, ocr: OcrOptions | None = None) -> ParsedDocument:
    """A PNG, JPEG or TIFF file read by OCR, one page per frame (1-based ``page``)."""
    from PIL import Image, UnidentifiedImageError

    ocr = ocr or OcrOptions()
    try:
        img = Image.open(path)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ParseError("not a valid image file (corrupt or truncated)") from exc
    except Image.DecompressionBombError as exc:
        raise ParseError("image is too large to read (decompression bomb?)") from exc
    with img:
        n_frames = int(getattr(img, "n_frames", 1) or 1)
        doc = ParsedDocument(elements=[], parser="tesseract", pages=n_frames)
        if not ocr.available:
            doc.needs_ocr = n_frames
            return doc
        for index in range(n_frames):
            if index >= ocr.max_pages:
                doc.needs_ocr = n_frames - index
                break
            try:
                img.seek(index)
                frame = img.copy()
            except (OSError, ValueError, EOFError) as exc:
                raise ParseError("not a valid image file (corrupt or truncated)") from exc
            text = ocr_image(frame, ocr.languages)
            doc.ocr_pages += 1
            elements = page_elements(text, index + 1)
            if not elements:
                doc.blank_pages += 1
            doc.elements.extend(elements)
    return doc
