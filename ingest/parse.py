"""Parse files into :class:`~ingest.types.ParsedDocument`: fast paths plus unstructured.

``parse_file`` runs in the calling process; ``ingest.parser_pool.ParserPool`` runs it in worker
processes, so a parser that hangs, crashes or eats memory costs one file, never the batch.

Fast paths handle the common formats: lxml for HTML and Markdown, pypdfium2 for PDF,
python-docx / python-pptx / openpyxl / lxml for DOCX, PPTX, XLSX and ODT, and plain readers for
text, CSV/TSV and e-mail; Tesseract reads images and scanned PDF pages (ingest/parsers/ocr.py).
unstructured (strategy "fast", no OCR, loaded lazily and offline)
handles EPUB, RTF, reStructuredText, Org and XML. Importing this module loads neither
unstructured nor torch.

A parsed document keeps at most its character budget (:func:`document_char_budget`) and
:data:`MAX_ELEMENTS` elements (:func:`bound_document`, applied in the parser process): what a
huge file holds beyond it never reaches the ingesting process.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path

from enclave.settings import IngestSettings
from ingest.file_checks import check_office_container, check_size
from ingest.types import Element, ParsedDocument, ParseError

log = logging.getLogger(__name__)

__all__ = [
    "FORMATS",
    "SUPPORTED_EXTENSIONS",
    "ParseError",
    "ParsedDocument",
    "parse_file",
]

# extension -> format name (the key of the parser table below and of the docs' format table)
FORMATS: dict[str, str] = {
    ".pdf": "pdf",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".log": "text",
    ".csv": "csv",
    ".tsv": "tsv",
    ".eml": "eml",
    ".docx": "docx",
    ".pptx": "pptx",
    ".xlsx": "xlsx",
    ".odt": "odt",
    ".epub": "epub",
    ".rtf": "rtf",
    ".rst": "rst",
    ".org": "org",
    ".xml": "xml",
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".tif": "image",
    ".tiff": "image",
}

SUPPORTED_EXTENSIONS: frozenset[str] = frozenset(FORMATS)

DEFAULT_PARSE_TARGET = "ingest.parse:parse_file"


def _format_of(path: str) -> str:
    ext = Path(path).suffix.lower()
    fmt = FORMATS.get(ext)
    if fmt is None:
        shown = ext if ext else "(no extension)"
        raise ParseError(f"unsupported file type {shown}")
    return fmt


def precheck(path: str, settings: IngestSettings) -> str:
    """Refusals that need no parser: unsupported type, missing, too large or empty file.

    Returns the format name; raises :class:`ParseError`.
    """
    fmt = _format_of(path)
    size = check_size(path, settings.max_file_mb)
    if size == 0:
        raise ParseError("empty file (0 bytes)")
    return fmt


def parse_file(path: str, settings: IngestSettings) -> ParsedDocument:
    """Parse one file in this process. Raises :class:`ParseError` with a user-facing reason."""
    fmt = precheck(path, settings)
    try:
        doc = _dispatch(path, fmt, settings)
    except ParseError:
        raise
    except MemoryError:
        raise
    except RecursionError as exc:
        raise ParseError("document is nested too deeply to parse") from exc
    except Exception as exc:  # a parser library failing on a malformed file
        log.debug("parser failure on %s", path, exc_info=True)
        raise ParseError(f"could not parse {fmt.upper()} file: {short_error(exc)}") from exc
    doc.elements = [e for e in doc.elements if e.text.strip()]
    bound_document(doc, document_char_budget(settings))
    return doc


#: characters of parsed text allowed per chunk of ``ingest.max_chunks_per_document`` per
#: token of ``ingest.chunk_tokens`` (a 200-token chunk of English is about 1,000 characters)
CHARS_PER_CHUNK_TOKEN = 10
#: a document keeps at most this many elements; beyond it, neighbours of one section are
#: joined, then the rest is cut
MAX_ELEMENTS = 100_000
_JOINED_ELEMENT_CHARS = 1 << 16


def document_char_budget(settings: IngestSettings) -> int:
    """The most characters of text a parsed document keeps: ``max_chunks_per_document x
    chunk_tokens x`` :data:`CHARS_PER_CHUNK_TOKEN` (40,000,000 with the defaults). More text
    than that could not fit in the chunks a document may have anyway; cutting it in the parser
    keeps the ingesting process's memory bounded whatever one file holds."""
    return settings.max_chunks_per_document * settings.chunk_tokens * CHARS_PER_CHUNK_TOKEN


def bound_document(doc: ParsedDocument, max_chars: int) -> None:
    """Keep at most ``max_chars`` characters and :data:`MAX_ELEMENTS` elements of ``doc``,
    in reading order; ``doc.truncated`` says whether anything was cut."""
    total = 0
    for i, el in enumerate(doc.elements):
        if total + len(el.text) > max_chars:
            el.text = el.text[: max_chars - total]
            doc.elements = [e for e in doc.elements[: i + 1] if e.text.strip()]
            doc.truncated = True
            break
        total += len(el.text)
    if len(doc.elements) > MAX_ELEMENTS:
        doc.elements = _join_neighbours(doc.elements)
    if len(doc.elements) > MAX_ELEMENTS:
        del doc.elements[MAX_ELEMENTS:]
        doc.truncated = True


def _join_neighbours(elements: list[Element]) -> list[Element]:
    """Join consecutive non-heading elements of one section and page (blank line between,
    up to 64 KiB each): the chunks stay the same, the element count drops."""
    out: list[Element] = []
    for el in elements:
        last = out[-1] if out else None
        if (
            last is not None
            and el.kind != "title"
            and last.kind != "title"
            and last.heading_path == el.heading_path
            and last.page == el.page
            and len(last.text) + len(el.text) < _JOINED_ELEMENT_CHARS
        ):
            last.text = f"{last.text}\n\n{el.text}"
            continue
        out.append(el)
    return out


def short_error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


# format -> (module, function) of the fast path; other formats go to unstructured
FAST_PATHS: dict[str, tuple[str, str]] = {
    "pdf": ("ingest.parsers.pdf", "parse_pdf"),
    "html": ("ingest.parsers.html", "parse_html_file"),
    "markdown": ("ingest.parsers.text", "parse_markdown"),
    "text": ("ingest.parsers.text", "parse_text"),
    "csv": ("ingest.parsers.text", "parse_csv"),
    "tsv": ("ingest.parsers.text", "parse_tsv"),
    "eml": ("ingest.parsers.eml", "parse_eml"),
    "docx": ("ingest.parsers.docx", "parse_docx"),
    "pptx": ("ingest.parsers.pptx", "parse_pptx"),
    "xlsx": ("ingest.parsers.xlsx", "parse_xlsx"),
    "odt": ("ingest.parsers.odt", "parse_odt"),
    "image": ("ingest.parsers.ocr", "parse_image"),
}
# formats whose parser reads at most the document's character budget (ingest/parsers/text.py)
BUDGETED_FORMATS = frozenset({"text", "markdown", "csv", "tsv"})
# zip-based formats: the container is checked (encryption, zip bomb) before any parser opens it
ZIP_FORMATS = frozenset({"docx", "pptx", "xlsx", "odt", "epub"})
# formats whose parser reads scanned pages with OCR (ingest/parsers/ocr.py)
OCR_FORMATS = frozenset({"pdf", "image"})


def _dispatch(path: str, fmt: str, settings: IngestSettings) -> ParsedDocument:
    if fmt in ZIP_FORMATS:
        check_office_container(path, fmt.upper())
    target = FAST_PATHS.get(fmt)
    if target is not None:
        module = importlib.import_module(target[0])
        parse: Callable[..., ParsedDocument] = getattr(module, target[1])
        if fmt in BUDGETED_FORMATS:
            return parse(path, max_chars=document_char_budget(settings))
        if fmt in OCR_FORMATS:
            from ingest.parsers.ocr import OcrOptions

            return parse(path, OcrOptions.from_settings(settings))
        return parse(path)
    from ingest.parsers.office import parse_with_unstructured

    return parse_with_unstructured(path, fmt)


# --------------------------------------------------------------------------------------------
# Worker processes
# --------------------------------------------------------------------------------------------
