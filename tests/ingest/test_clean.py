"""Cleaning: whitespace, control characters, empty and garbage documents."""

from __future__ import annotations

import pytest

from ingest.clean import ELEMENT_SEPARATOR, UnreadableDocument, clean_document, clean_text
from ingest.types import Element, ParsedDocument


def test_whitespace_collapses_but_paragraphs_stay() -> None:
    raw = "  Hello\t\t world  \r\n\r\n\r\n\n Second   para\x00graph\u200b.\x0c Third\u00a0line "
    assert clean_text(raw) == "Hello world\n\nSecond paragraph.\nThird line"


def test_controls_and_invisibles_are_removed() -> None:
    assert clean_text("a\x07b\x1bc\ufeffd\u00ade") == "abcde"
    assert clean_text("e\u0301") == "\u00e9"  # NFC


def test_document_full_text_and_spans() -> None:
    doc = ParsedDocument(
        elements=[
            Element("Title  here", kind="title"),
            Element("   "),
            Element("Body\n\n\n\ntext", heading_path=["Title  here"]),
        ],
        parser="t",
        title=" My\n Title ",
    )
    clean = clean_document(doc)
    assert clean.text == "Title here" + ELEMENT_SEPARATOR + "Body\n\ntext"
    assert [clean.text[a:b] for a, b in clean.spans] == ["Title here", "Body\n\ntext"]
    assert clean.elements[1].heading_path == ["Title here"]
    assert clean.title == "My Title"


def test_empty_document_has_a_reason() -> None:
    doc = ParsedDocument(elements=[Element(" \n\t "), Element("\x00\x01")], parser="t")
    with pytest.raises(UnreadableDocument, match="no extractable text"):
        clean_document(doc)


def test_garbage_document_has_a_reason() -> None:
    text = "\ufffd\ufffd\ufffdab\ufffd\ufffd \ufffd\ufffd\ufffd" * 50
    with pytest.raises(UnreadableDocument, match="replacement or control characters"):
        clean_document(ParsedDocument(elements=[Element(text)], parser="t"))
    symbols = "#$%^&*()_+=<>/\\|~`" * 40
    with pytest.raises(UnreadableDocument, match="almost no letters"):
        clean_document(ParsedDocument(elements=[Element(symbols)], parser="t"))


def test_cjk_and_numbers_are_readable() -> None:
    clean = clean_document(
        ParsedDocument(elements=[Element("日本語のテキスト"), Element("12 34 56")], parser="t")
    )
    assert clean.text.startswith("日本語")


def test_cleaning_in_blocks_equals_cleaning_in_one_piece(monkeypatch: pytest.MonkeyPatch) -> None:
    """Long texts are cleaned block by block, cut where no cleaning step reaches across."""
    import random

    from ingest import clean

    alphabet = [*"ab Z9 \t\n\r", "я", "ά", "α\u0301", "\u00a0", "\u200b", "\x07", "e\u0301",
                "\u0301", "日", "ア", "\u3099", "한", "\u1161", "\u2028", "  ", "\n\n\n",
                "\r\n"]  # fmt: skip
    rng = random.Random(7)
    monkeypatch.setattr(clean, "CLEAN_BLOCK_CHARS", 5)
    for _ in range(500):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        assert clean_text(text) == clean._clean_block(text).strip(), repr(text)
