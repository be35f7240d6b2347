"""ODT (OpenDocument text) read straight from ``content.xml`` with lxml.

``text:h`` (with its outline level) drives ``heading_path``, under the document title: a
paragraph in the "Title" style (or an automatic style derived from it), as DOCX's "Title"
paragraphs do; paragraphs, list items and tables become elements in document order; sections
are descended into. Annotations and tracked deletions are left out. The archive has already
passed the zip-bomb checks.
"""

from __future__ import annotations

import zipfile
from typing import Any

from ingest.types import Element, ParsedDocument, ParseError

TEXT = "{urn:oasis:names:tc:opendocument:xmlns:text:1.0}"
TABLE = "{urn:oasis:names:tc:opendocument:xmlns:table:1.0}"
OFFICE = "{urn:oasis:names:tc:opendocument:xmlns:office:1.0}"
DC = "{http://purl.org/dc/elements/1.1/}"
STYLE = "{urn:oasis:names:tc:opendocument:xmlns:style:1.0}"

_SKIP = {f"{OFFICE}annotation", f"{TEXT}tracked-changes", f"{TEXT}note-citation"}


def _text(node: Any) -> str:
    """Text of a paragraph-like node, honouring text:s, text:tab and text:line-break."""
    parts: list[str] = []

    def walk(el: Any) -> None:
        if el.text:
            parts.append(el.text)
        for child in el:
            tag = child.tag
            if tag in _SKIP:
                pass
            elif tag == f"{TEXT}s":
                parts.append(" " * int(child.get(f"{TEXT}c", "1") or 1))
            elif tag == f"{TEXT}tab":
                parts.append("\t")
            elif tag == f"{TEXT}line-break":
                parts.append("\n")
            else:
                walk(child)
            if child.tail:
                parts.append(child.tail)

    walk(node)
    return "".join(parts).strip()


def _xml(zf: zipfile.ZipFile, name: str) -> Any:
    import lxml.etree

    parser = lxml.etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    return lxml.etree.fromstring(zf.read(name), parser=parser)


def parse_odt(path: str) -> ParsedDocument:
    try:
        with zipfile.ZipFile(path) as zf:
            content = _xml(zf, "content.xml")
            meta = _xml(zf, "meta.xml") if "meta.xml" in zf.namelist() else None
    except KeyError as exc:
        raise ParseError("not a valid ODT file (no content.xml)") from exc

    elements: list[Element] = []
    stack: list[tuple[int, str]] = []
    first_heading = ""
    parents = {
        st.get(f"{STYLE}name"): st.get(f"{STYLE}parent-style-name")
        for st in content.iter(f"{STYLE}style")
    }

    def is_title_style(name: str | None) -> bool:
        for _ in range(8):  # automatic styles derive from named ones: P1 -> Title
            if not name:
                return False
            if name.lower() == "title":
                return True
            name = parents.get(name)
        return False

    def path_now() -> list[str]:
        return [t for _, t in stack]

    def heading(text: str, level: int) -> None:
        """A heading at ``level`` (0: the document title, as DOCX's "Title" paragraphs)."""
        nonlocal first_heading
        while stack and stack[-1][0] >= level:
            stack.pop()
        elements.append(
            Element(text=text, kind="title", heading_path=path_now(), level=max(1, level))
        )
        if stack and stack[-1][1] == text:
            stack[-1] = (level, text)  # a heading repeating the title: one level, not two
        else:
            stack.append((level, text))
        first_heading = first_heading or text

    def visit(node: Any, kind: str) -> None:
        for child in node:
            tag = child.tag
            if tag == f"{TEXT}h":
                text = " ".join(_text(child).split())
                if not text:
                    continue
                try:
                    level = int(child.get(f"{TEXT}outline-level", "1"))
                except ValueError:
                    level = 1
                heading(text, max(1, level))
            elif tag == f"{TEXT}p":
                text = _text(child)
                if text and is_title_style(child.get(f"{TEXT}style-name")):
                    heading(" ".join(text.split()), 0)
                elif text:
                    elements.append(Element(text=text, kind=kind, heading_path=path_now()))
            elif tag in (f"{TEXT}list", f"{TEXT}list-item", f"{TEXT}list-header"):
                visit(child, "list")
            elif tag == f"{TABLE}table":
                rows = []
                for row in child.iter(f"{TABLE}table-row"):
                    cells = [_text(c) for c in row if c.tag == f"{TABLE}table-cell"]
                    cells = [" ".join(c.split()) for c in cells if c.strip()]
                    if cells:
                        rows.append(" | ".join(cells))
                if rows:
                    elements.append(
                        Element(text="\n".join(rows), kind="table", heading_path=path_now())
                    )
            elif tag in _SKIP:
                continue
            elif isinstance(tag, str):
                visit(child, kind)  # text:section, office:text, table-of-content bodies, ...

    body = content.find(f"{OFFICE}body")
    if body is None:
        raise ParseError("not a valid ODT file (no document body)")
    visit(body, "text")

    title = ""
    if meta is not None:
        node = next(meta.iter(f"{DC}title"), None)
        if node is not None:
            title = " ".join((node.text or "").split())
    return ParsedDocument(elements=elements, parser="odf-xml", title=title or first_heading)
