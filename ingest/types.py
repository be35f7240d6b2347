"""Records passed between the ingestion stages."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Source:
    """One file found by the walk."""

    path: str  # the document's key (store.records.normalise_path; valid UTF-8)
    doc_id: str
    size: int
    mtime: float
    sha256: str = ""  # filled when the file is hashed
    groups: list[str] = field(default_factory=list)
    #: the real path as the operating system spells it, to open the file (``path`` unless
    #: the name is not UTF-8: store.records.path_key)
    fs_path: str = ""

    def __post_init__(self) -> None:
        if not self.fs_path:
            self.fs_path = self.path


@dataclass
class Element:
    """A piece of a parsed document, in reading order."""

    text: str
    kind: str = "text"  # "title" for headings, "text", "table", "list", ...
    page: int | None = None  # 1-based page where the format has pages
    heading_path: list[str] = field(default_factory=list)  # enclosing headings, outermost first
    level: int | None = None  # heading depth when kind == "title"


@dataclass
class ParsedDocument:
    elements: list[Element]
    parser: str  # e.g. "lxml-html", "pdfium", "unstructured:docx"
    title: str = ""
    #: the text was cut at the document's character budget (ingest.parse.bound_document)
    truncated: bool = False
    #: pages (PDF pages, image frames) where the format has them, else None
    pages: int | None = None
    #: pages that yielded no text, with OCR where it ran (quality signals: ingest/quality.py)
    blank_pages: int = 0
    #: pages read by OCR (ingest/parsers/ocr.py)
    ocr_pages: int = 0
    #: pages without a text layer left unread because OCR was unavailable, off, or past
    #: ``ingest.ocr_max_pages``
    needs_ocr: int = 0


class ParseError(Exception):
    """A file that could not be parsed; the message is what the user sees."""
