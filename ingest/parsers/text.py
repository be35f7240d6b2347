"""Plain text, Markdown, CSV and TSV, with encoding detection.

Encodings as :mod:`ingest.parsers.encoding` decodes them (a BOM wins; otherwise UTF-8, cp1252,
Latin-1); binary content is refused, never indexed. Line endings are normalised and a file with
nothing but whitespace is refused.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable

from ingest.parsers.encoding import decode_bytes
from ingest.parsers.html import extract_html
from ingest.types import Element, ParsedDocument, ParseError

ROWS_PER_TABLE_ELEMENT = 20


def read_text(path: str) -> str:
    with open(path, "rb") as fh:
        data = fh.read()
    text, _ = decode_bytes(data)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise ParseError("file contains only whitespace")
    return text


_BLANK_LINES = re.compile(r"\n\s*\n")


def parse_text(path: str) -> ParsedDocument:
    text = read_text(path)
    elements = [Element(text=p.strip()) for p in _BLANK_LINES.split(text) if p.strip()]
    return ParsedDocument(elements=elements, parser="text", title="")


def parse_markdown(path: str) -> ParsedDocument:
    import markdown

    text = read_text(path)
    html = markdown.markdown(text, extensions=["fenced_code", "tables", "sane_lists"])
    title, elements = extract_html(f"<html><body>{html}</body></html>", is_fragment=True)
    return ParsedDocument(elements=elements, parser="markdown", title=title)


def _parse_delimited(path: str, delimiter: str, parser: str) -> ParsedDocument:
    text = read_text(path)
    rows = [row for row in csv.reader(io.StringIO(text), delimiter=delimiter) if any(row)]
    if not rows:
        raise ParseError("file contains no rows")
    header = [h.strip() for h in rows[0]]
    body = rows[1:]
    elements: list[Element] = []
    if not body:
        elements.append(Element(text=" | ".join(header), kind="table"))
    for start in range(0, len(body), ROWS_PER_TABLE_ELEMENT):
        lines = []
        for row in body[start : start + ROWS_PER_TABLE_ELEMENT]:
            cells = []
            for i, cell in enumerate(row):
                cell = cell.strip()
                if not cell:
                    continue
                name = header[i] if i < len(header) and header[i] else f"column {i + 1}"
                cells.append(f"{name}: {cell}")
            if cells:
                lines.append("; ".join(cells))
        if lines:
            elements.append(Element(text="\n".join(lines), kind="table"))
    return ParsedDocument(elements=elements, parser=parser, title="")


def parse_csv(path: str) -> ParsedDocument:
    return _parse_delimited(path, ",", "csv")


def parse_tsv(path: str) -> ParsedDocument:
    return _parse_delimited(path, "\t", "tsv")


PARSERS: dict[str, Callable[[str], ParsedDocument]] = {
    "text": parse_text,
    "markdown": parse_markdown,
    "csv": parse_csv,
    "tsv": parse_tsv,
}
