"""PPTX with python-pptx: one page per slide, the slide title as its heading.

Every slide yields its title (``kind="title"``, ``page`` = slide number), then the text of its
other shapes in reading order (text frames, tables, grouped shapes), then its speaker notes.
"""

from __future__ import annotations

from typing import Any

from ingest.types import Element, ParsedDocument

MAX_GROUP_DEPTH = 20


MAX_SUBHEADING_CHARS = 100


def _paragraphs(frame: Any) -> list[tuple[str, str]]:
    """``(kind, text)`` per paragraph: a short, all-bold, one-line paragraph is a sub-heading
    (``"title"``), an indented one a list item, the rest text."""
    out: list[tuple[str, str]] = []
    for para in frame.paragraphs:
        text = para.text.replace("\x0b", "\n").strip()
        if not text:
            continue
        runs = [r for r in para.runs if r.text.strip()]
        bold = bool(runs) and all(r.font.bold for r in runs)
        if bold and "\n" not in text and len(text) <= MAX_SUBHEADING_CHARS:
            out.append(("title", " ".join(text.split())))
        else:
            out.append(("list" if para.level > 0 else "text", text))
    return out


def _table_text(table: Any) -> str:
    rows = []
    for row in table.rows:
        cells = [" ".join(cell.text.split()) for cell in row.cells]
        cells = [c for c in cells if c]
        if cells:
            rows.append(" | ".join(cells))
    return "\n".join(rows)


def _shapes(shapes: Any, depth: int = 0) -> list[tuple[str, str]]:
    """``(kind, text)`` of the shapes' paragraphs, top-to-bottom then left-to-right; groups
    are flattened."""
    from pptx.enum.shapes import MSO_SHAPE_TYPE

    out: list[tuple[str, str]] = []

    def position(shape: Any) -> tuple[int, int]:
        return (shape.top or 0, shape.left or 0)

    for shape in sorted(shapes, key=position):
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP and depth < MAX_GROUP_DEPTH:
            out.extend(_shapes(shape.shapes, depth + 1))
        elif getattr(shape, "has_table", False) and shape.has_table:
            text = _table_text(shape.table)
            if text:
                out.append(("table", text))
        elif getattr(shape, "has_text_frame", False) and shape.has_text_frame:
            out.extend(_paragraphs(shape.text_frame))
    return out


def parse_pptx(path: str) -> ParsedDocument:
    from pptx import Presentation

    prs = Presentation(path)
    elements: list[Element] = []
    first_title = ""
    section = ""
    for number, slide in enumerate(prs.slides, start=1):
        title_shape = slide.shapes.title
        heading = ""
        if title_shape is not None and title_shape.has_text_frame:
            heading = " ".join(title_shape.text_frame.text.split())
        if heading:
            elements.append(Element(text=heading, kind="title", page=number, level=1))
            first_title = first_title or heading
            section = heading
        # a slide without a title continues the section of the last titled slide
        path_now = [section] if section else []
        others = [
            s for s in slide.shapes if title_shape is None or s.shape_id != title_shape.shape_id
        ]
        for kind, text in _shapes(others):
            if kind == "title":
                if text == section:
                    continue
                base = [section] if section else []
                elements.append(
                    Element(text=text, kind="title", page=number, heading_path=base, level=2)
                )
                path_now = [*base, text]
                continue
            elements.append(Element(text=text, kind=kind, page=number, heading_path=path_now))
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame
            text = notes.text.strip() if notes is not None else ""
            if text:
                elements.append(
                    Element(text=f"Speaker notes: {text}", page=number, heading_path=path_now)
                )
    title = " ".join((prs.core_properties.title or "").split()) or first_title
    return ParsedDocument(elements=elements, parser="python-pptx", title=title)
