"""Bad input: every broken or hostile file is refused with a clear reason, in-process."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from enclave.settings import IngestSettings
from ingest import file_checks
from ingest.parse import parse_file
from ingest.parsers.encoding import decode_bytes
from ingest.types import ParseError
from tests.fixtures.make_docs import make_bad, make_docx, write_random


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_bad(tmp_path_factory.mktemp("bad"))


REASONS = {
    "truncated_pdf": "not a valid PDF file (corrupt or truncated)",
    "not_pdf": "not a valid PDF file (no %PDF header)",
    "garbage_docx": "not a valid DOCX file (corrupt or not a zip archive)",
    "garbage_pptx": "not a valid PPTX file (corrupt or not a zip archive)",
    "encrypted_pdf": "PDF is password-protected (encrypted)",
    "encrypted_docx": "DOCX file is password-protected (encrypted)",
    "empty_txt": "empty file (0 bytes)",
    "unsupported": "unsupported file type .xyz",
    "binary_txt": "binary content, not text (refused)",
}


@pytest.mark.parametrize("kind", sorted(REASONS))
def test_bad_file_reason(kind: str, bad: dict[str, Path]) -> None:
    with pytest.raises(ParseError) as info:
        parse_file(str(bad[kind]), IngestSettings())
    assert str(info.value) == REASONS[kind]


def test_zip_bomb_refused_from_central_directory(bad: dict[str, Path]) -> None:
    with pytest.raises(ParseError, match=r"expands \d+x \(limit 200x\); refused as a possible zip"):
        parse_file(str(bad["zip_bomb_docx"]), IngestSettings())


def test_zip_total_size_cap() -> None:
    infos = []
    for i in range(3):
        info = zipfile.ZipInfo(f"part{i}.xml")
        info.file_size = 400 * 1024 * 1024
        info.compress_size = 100 * 1024 * 1024  # ratio 4: only the total trips
        infos.append(info)
    with pytest.raises(ParseError, match=r"expands to 1200 MB \(limit 1024 MB\)"):
        file_checks.check_zip_infos(infos, "XLSX")
    file_checks.check_zip_infos(infos[:2], "XLSX")  # 800 MB passes


def test_zip_member_count_cap() -> None:
    infos = [zipfile.ZipInfo(f"m{i}") for i in range(file_checks.MAX_ZIP_MEMBERS + 1)]
    with pytest.raises(ParseError, match="possible zip bomb"):
        file_checks.check_zip_infos(infos, "DOCX")


def test_oversized_file_refused_before_reading(tmp_path: Path) -> None:
    big = write_random(tmp_path / "big.txt", 2 * 1024 * 1024)
    settings = IngestSettings(max_file_mb=1)
    with pytest.raises(ParseError, match=r"file too large: 2\.0 MB exceeds the 1 MB limit"):
        parse_file(str(big), settings)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ParseError, match="file not found"):
        parse_file(str(tmp_path / "nope.pdf"), IngestSettings())
    d = tmp_path / "folder.txt"
    d.mkdir()
    with pytest.raises(ParseError, match="not a regular file"):
        parse_file(str(d), IngestSettings())


def test_no_extension_is_unsupported(tmp_path: Path) -> None:
    p = tmp_path / "Makefile"
    p.write_text("all:\n", encoding="utf-8")
    with pytest.raises(ParseError, match=r"unsupported file type \(no extension\)"):
        parse_file(str(p), IngestSettings())


def test_whitespace_only_text(tmp_path: Path) -> None:
    p = tmp_path / "blank.md"
    p.write_text("  \n\n\t\n", encoding="utf-8")
    with pytest.raises(ParseError, match="only whitespace"):
        parse_file(str(p), IngestSettings())


def test_docx_renamed_pdf_is_refused(tmp_path: Path) -> None:
    src = make_docx(tmp_path / "real.docx")
    fake = tmp_path / "report.pdf"
    fake.write_bytes(src.read_bytes())
    with pytest.raises(ParseError, match="not a valid PDF file"):
        parse_file(str(fake), IngestSettings())


def test_html_with_binary_garbage(tmp_path: Path) -> None:
    p = write_random(tmp_path / "page.html", 4096, seed=3)
    with pytest.raises(ParseError, match="binary content"):
        parse_file(str(p), IngestSettings())


def test_broken_csv_quotes_still_parse(tmp_path: Path) -> None:
    p = tmp_path / "odd.csv"
    p.write_text('a,b\n"unterminated,quote\n1,2\n', encoding="utf-8")
    doc = parse_file(str(p), IngestSettings())
    assert doc.elements and "unterminated" in doc.elements[0].text


# -- encodings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        ("naïve café – ok".encode(), "utf-8"),
        ("\ufeffnaïve café".encode(), "utf-8-sig"),
        ("naïve café".encode("utf-16"), "utf-16"),
        ("naïve café “quoted”".encode("cp1252"), "cp1252"),
        (b"caf\xe9 \x81 odd", "latin-1"),
    ],
)
def test_decode_bytes(data: bytes, encoding: str) -> None:
    text, used = decode_bytes(data)
    assert used == encoding
    assert text.lstrip("\ufeff").startswith(("naïve", "caf"))


def test_utf16_text_file_parses(tmp_path: Path) -> None:
    p = tmp_path / "notes.txt"
    p.write_bytes("Première ligne\n\nSeconde partie".encode("utf-16"))
    doc = parse_file(str(p), IngestSettings())
    # paragraphs of a text file are packed into elements (one section: the chunks are the same)
    assert "\n\n".join(e.text for e in doc.elements) == "Première ligne\n\nSeconde partie"


def test_cp1252_markdown(tmp_path: Path) -> None:
    p = tmp_path / "legacy.md"
    p.write_bytes("# Résumé\n\nSmart “quotes” here.\n".encode("cp1252"))
    doc = parse_file(str(p), IngestSettings())
    assert doc.title == "Résumé"
    assert doc.elements[-1].text == "Smart “quotes” here."
    assert doc.elements[-1].heading_path == ["Résumé"]


def test_html_charset_from_meta(tmp_path: Path) -> None:
    p = tmp_path / "latin.html"
    p.write_bytes(
        b"<html><head><meta charset='iso-8859-1'><title>Caf\xe9</title></head>"
        b"<body><p>cr\xe8me br\xfbl\xe9e</p></body></html>"
    )
    doc = parse_file(str(p), IngestSettings())
    assert doc.title == "Café"
    assert doc.elements[0].text == "crème brûlée"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("<html><body><p>café – “q”</p></body></html>".encode(), "café – “q”"),
        ("<p>naïve</p>".encode("cp1252"), "naïve"),
        ("\ufeff<p>bom café</p>".encode(), "bom café"),
        ("<p>utf16 café</p>".encode("utf-16"), "utf16 café"),
        (
            b"<?xml version='1.0' encoding='iso-8859-1'?><html><body>"
            b"<p>xml caf\xe9</p></body></html>",
            "xml café",
        ),
    ],
)
def test_html_encodings(tmp_path: Path, data: bytes, expected: str) -> None:
    p = tmp_path / "page.html"
    p.write_bytes(data)
    doc = parse_file(str(p), IngestSettings())
    assert doc.elements[0].text == expected


def test_html_nested_too_deeply_is_refused_not_emptied(tmp_path: Path) -> None:
    """libxml2 keeps nothing of a document past its depth limit: that is said, not passed
    off as a file without text."""
    n = 100_000
    path = tmp_path / "deep.html"
    path.write_text("<html><body>" + "<div>" * n + "deep text" + "</div>" * n + "</body></html>")
    with pytest.raises(ParseError, match=r"^document is nested too deeply to parse"):
        parse_file(str(path), IngestSettings())


def test_html_deep_within_the_parser_limit_and_huge_text_nodes_parse(tmp_path: Path) -> None:
    n = 1_500  # past Python's default recursion limit for the extractor, within libxml2's
    deep = tmp_path / "deep.html"
    deep.write_text("<html><body>" + "<div>" * n + "deep text" + "</div>" * n + "<p>after</p>")
    assert [e.text for e in parse_file(str(deep), IngestSettings()).elements] == [
        "deep text",
        "after",
    ]
    big = tmp_path / "big.html"  # one text node over libxml2's 10 MB default buffer limit
    big.write_text("<html><body><p>" + "lantern " * 1_500_000 + "</p><p>after</p></body></html>")
    elements = parse_file(str(big), IngestSettings()).elements
    assert len(elements[0].text) == len("lantern " * 1_500_000) - 1
    assert elements[1].text == "after"
