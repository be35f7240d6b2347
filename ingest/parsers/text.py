"""Plain text, Markdown, CSV and TSV, with encoding detection.

Encodings: a BOM (UTF-8, UTF-16 LE/BE, UTF-32) wins; otherwise strict UTF-8, then cp1252, then
Latin-1. Bytes that look binary (NULs, many control characters) are refused, never indexed.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable

from ingest.file_checks import looks_binary
from ingest.types import Element, ParsedDocument, ParseError

_BOMS: list[tuple[bytes, str]] = [
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
]

ROWS_PER_TABLE_ELEMENT = 20


def decode_bytes(data: bytes) -> tuple[str, str]:
    """``(text, encoding)``; raises ParseError for binary content."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding), encoding
            except UnicodeDecodeError as exc:
                raise ParseError(f"invalid {encoding} text: {exc.reason}") from exc
    if looks_binary(data[:65536]):
        raise ParseError("binary content, not text (refused)")
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252"
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1"


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

    from ingest.parsers.html import extract_html

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
