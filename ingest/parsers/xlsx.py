"""XLSX with openpyxl (read-only, cached values): one section per sheet.

Each sheet yields a title element (its name, ``page`` = sheet number) and table elements of up
to 20 rows, every cell written as ``column header: value`` so a row stays meaningful on its own
after chunking. Formulas give their last computed value; empty rows and columns are skipped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ingest.types import Element, ParsedDocument

ROWS_PER_ELEMENT = 20
MAX_COLUMNS = 500


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.isoformat(sep=" ").removesuffix(" 00:00:00")
    return " ".join(str(value).split())


def _sheet_elements(ws: Any, number: int, name: str) -> list[Element]:
    header: list[str] = []
    lines: list[str] = []
    out: list[Element] = []

    def flush() -> None:
        if lines:
            out.append(
                Element(text="\n".join(lines), kind="table", page=number, heading_path=[name])
            )
            lines.clear()

    for row in ws.iter_rows(values_only=True, max_col=MAX_COLUMNS):
        cells = [_cell(v) for v in row]
        if not any(cells):
            continue
        if not header:
            header = cells
            continue
        parts = []
        for i, value in enumerate(cells):
            if value:
                col = header[i] if i < len(header) and header[i] else f"column {i + 1}"
                parts.append(f"{col}: {value}")
        lines.append("; ".join(parts))
        if len(lines) >= ROWS_PER_ELEMENT:
            flush()
    if header and not out and not lines:
        lines.append(" | ".join(h for h in header if h))  # a sheet that is only a header row
    flush()
    return out


def parse_xlsx(path: str) -> ParsedDocument:
    from openpyxl import load_workbook

    wb = load_workbook(path, read_only=True, data_only=True)
    try:
        elements: list[Element] = []
        for number, ws in enumerate(wb.worksheets, start=1):
            name = " ".join(str(ws.title).split())
            body = _sheet_elements(ws, number, name)
            if body:
                elements.append(Element(text=name, kind="title", page=number, level=1))
                elements.extend(body)
        title = " ".join((wb.properties.title or "").split())
    finally:
        wb.close()
    return ParsedDocument(elements=elements, parser="openpyxl", title=title)
