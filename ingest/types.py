"""Records passed between the ingestion stages."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Source:
    """One file found by the walk."""

    path: str  # normalised absolute path (store.records.normalise_path)
    doc_id: str
    size: int
    mtime: float
    sha256: str = ""  # filled when the file is hashed
    groups: list[str] = field(default_factory=list)


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


class ParseError(Exception):
    """A file that could not be parsed; the message is what the user sees."""
