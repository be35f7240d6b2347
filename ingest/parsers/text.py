"""Plain text, Markdown, CSV and TSV, with encoding detection.

Encodings as :mod:`ingest.parsers.encoding` decodes them (a BOM wins; otherwise UTF-8, cp1252,
Latin-1); binary content is refused, never indexed. Line endings are normalised and a file with
nothing but whitespace is refused. Each parser reads at most ``max_chars`` characters of text
(the character budget of a document, :func:`ingest.parse.document_char_budget`) and says
whether it stopped short (``ParsedDocument.truncated``), so a huge file never becomes a huge
list of elements.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterator

from ingest.parsers.encoding import decode_bytes
from ingest.parsers.html import extract_html
from ingest.types import Element, ParsedDocument, ParseError

ROWS_PER_TABLE_ELEMENT = 20
#: paragraphs of a plain text file are packed into elements of up to this many characters
#: (a text file is one section, so this changes no chunk; it bounds the element count)
TEXT_ELEMENT_CHARS = 1 << 16


def read_text(path: str, max_chars: int | None = None) -> tuple[str, bool]:
    """The file's text with normalised line endings, and whether it was cut at
    ``max_chars`` characters. Raises ParseError for binary or whitespace-only content."""
    with open(path, "rb") as fh:
        data = fh.read()
    text, _ = decode_bytes(data)
    del data
    cut = max_chars is not None and len(text) > max_chars
    if cut:
        text = text[:max_chars]
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise ParseError("file contains only whitespace")
    return text, cut


_BLANK_LINES = re.compile(r"\n\s*\n")
_LINES = re.compile(r"[^\n]*\n|[^\n]+\Z")


def _paragraphs(text: str) -> Iterator[str]:
    pos = 0
    for m in _BLANK_LINES.finditer(text):
        para = text[pos : m.start()].strip()
        if para:
            yield para
        pos = m.end()
    para = text[pos:].strip()
    if para:
        yield para


def parse_text(path: str, max_chars: int | None = None) -> ParsedDocument:
    """Paragraphs (split at blank lines), packed into elements of up to
    :data:`TEXT_ELEMENT_CHARS` characters; at most ``max_chars`` characters are read."""
    text, cut = read_text(path, max_chars)
    elements: list[Element] = []
    pack: list[str] = []
    size = 0
    for para in _paragraphs(text):
        if pack and size + len(para) > TEXT_ELEMENT_CHARS:
            elements.append(Element(text="\n\n".join(pack)))
            pack, size = [], 0
        pack.append(para)
        size += len(para) + 2
    if pack:
        elements.append(Element(text="\n\n".join(pack)))
    return ParsedDocument(elements=elements, parser="text", title="", truncated=cut)


def parse_markdown(path: str, max_chars: int | None = None) -> ParsedDocument:
    import markdown

    text, cut = read_text(path, max_chars)
    html = markdown.markdown(text, extensions=["fenced_code", "tables", "sane_lists"])
    del text
    title, elements = extract_html(f"<html><body>{html}</body></html>", is_fragment=True)
    return ParsedDocument(elements=elements, parser="markdown", title=title, truncated=cut)


def _parse_delimited(
    path: str, delimiter: str, parser: str, max_chars: int | None
) -> ParsedDocument:
    """Rows read one at a time, written as ``column: value`` lines in elements of
    :data:`ROWS_PER_TABLE_ELEMENT` rows; reading stops after ``max_chars`` characters."""
    text, cut = read_text(path, max_chars)
    lines_in = (m.group(0) for m in _LINES.finditer(text))  # no 4-byte-per-character copy
    reader = (row for row in csv.reader(lines_in, delimiter=delimiter) if any(row))
    first = next(reader, None)
    if first is None:
        raise ParseError("file contains no rows")
    header = [h.strip() for h in first]
    elements: list[Element] = []
    lines: list[str] = []
    size = 0
    rows = 0
    for row in reader:
        rows += 1
        cells = []
        for i, cell in enumerate(row):
            cell = cell.strip()
            if not cell:
                continue
            name = header[i] if i < len(header) and header[i] else f"column {i + 1}"
            cells.append(f"{name}: {cell}")
        if cells:
            line = "; ".join(cells)
            lines.append(line)
            size += len(line) + 1
        if rows % ROWS_PER_TABLE_ELEMENT == 0 and lines:
            elements.append(Element(text="\n".join(lines), kind="table"))
            lines = []
        if max_chars is not None and size >= max_chars:
            cut = True
            break
    if lines:
        elements.append(Element(text="\n".join(lines), kind="table"))
    if rows == 0:
        elements.append(Element(text=" | ".join(header), kind="table"))
    return ParsedDocument(elements=elements, parser=parser, title="", truncated=cut)


def parse_csv(path: str, max_chars: int | None = None) -> ParsedDocument:
    return _parse_delimited(path, ",", "csv", max_chars)


def parse_tsv(path: str, max_chars: int | None = None) -> ParsedDocument:
    return _parse_delimited(path, "\t", "tsv", max_chars)


PARSERS: dict[str, Callable[..., ParsedDocument]] = {
    "text": parse_text,
    "markdown": parse_markdown,
    "csv": parse_csv,
    "tsv": parse_tsv,
}
