"""Chunking: the embedder-token bound (property-based, real tokenizer), sections, spans."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.chunk import Chunker, ChunkStream, chunk_document, chunk_id, sections
from ingest.clean import clean_document
from ingest.types import Element, ParsedDocument

WORDS = [
    "the",
    "index",
    "Enclave",
    "retrieval",
    "Überprüfung",
    "naïve",
    "日本語",
    "テキスト",
    "中文文本",
    "🙂",
    "x" * 150,  # one unknown token in the embedder's vocabulary
    "supercalifragilisticexpialidocious" * 4,
    "3.14159",
    "a.b.c.d.e.f",
    "—",
]


def _words() -> st.SearchStrategy[str]:
    long_run = st.text(alphabet=st.characters(codec="utf-8"), min_size=1).map(lambda s: s * 40)
    return st.one_of(st.sampled_from(WORDS), st.text(min_size=1, max_size=30), long_run)


def _element_text() -> st.SearchStrategy[str]:
    seps = st.sampled_from([" ", " ", " ", "\n", "\n\n", ". ", "", "。"])
    return st.lists(st.tuples(_words(), seps), min_size=1, max_size=120).map(
        lambda parts: "".join(w + s for w, s in parts)
    )


_element = st.builds(
    Element,
    text=_element_text(),
    kind=st.sampled_from(["text", "text", "title", "table", "list"]),
    page=st.one_of(st.none(), st.integers(1, 50)),
    heading_path=st.lists(st.sampled_from(["Intro", "Setup", "API 日本", "x" * 300]), max_size=3),
)


def _check(doc_text: str, chunks: list[Any], embedder: Any) -> None:
    covered = [False] * len(doc_text)
    for i, c in enumerate(chunks):
        assert c.ordinal == i
        assert c.chunk_id == chunk_id(c.doc_id, i)
        # the bound, counted by the embedder's own tokenizer on the embedded text
        real = embedder.count_tokens(c.embed_text)
        assert real <= embedder.max_tokens, (real, c.embed_text[:200])
        assert real <= c.embed_tokens
        # spans point into the cleaned full text
        assert doc_text[c.char_start : c.char_end] == c.text
        assert c.embed_text.endswith(c.text)
        assert c.text.strip()
        for k in range(c.char_start, c.char_end):
            covered[k] = True
    # every visible character is in some chunk: nothing truncated
    missing = [k for k, ch in enumerate(doc_text) if not ch.isspace() and not covered[k]]
    assert not missing, missing[:10]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    elements=st.lists(_element, min_size=1, max_size=12),
    target=st.sampled_from([16, 64, 200, 254, 1000]),
    overlap=st.sampled_from([0, 10, 30, 500]),
    title=st.sampled_from(["", "Handbook", "x" * 500]),
)
def test_chunks_never_exceed_the_embedder_bound(
    bundled_embedder: Any, elements: list[Element], target: int, overlap: int, title: str
) -> None:
    try:
        doc = clean_document(ParsedDocument(elements=elements, parser="t", title=title))
    except Exception:
        return  # empty or garbage: refused before chunking (tested in test_clean)
    chunker = Chunker(bundled_embedder, target, overlap)
    chunks = chunker.chunk(doc, "d0c")
    assert chunks
    _check(doc.text, chunks, bundled_embedder)


def test_one_long_word_and_cjk_are_split_not_truncated(bundled_embedder: Any) -> None:
    text = "y" * 20000 + " " + "漢字かな交じり文" * 300 + " " + "Pneumonoultramicroscopic" * 200
    doc = clean_document(ParsedDocument(elements=[Element(text)], parser="t"))
    chunks = Chunker(bundled_embedder, 200, 30).chunk(doc, "d0c")
    assert len(chunks) > 5
    _check(doc.text, chunks, bundled_embedder)


def test_sections_start_new_chunks_and_small_siblings_pack(bundled_embedder: Any) -> None:
    els = [
        Element("Install", kind="title", heading_path=[]),
        Element("Step one is short.", heading_path=["Install"]),
        Element("Step two is short too.", heading_path=["Install"]),
        Element("Configure", kind="title", heading_path=[]),
        Element("Set the data directory.", heading_path=["Configure"]),
    ]
    assert sections(els) == [[0, 1, 2], [3, 4]]
    doc = clean_document(ParsedDocument(elements=els, parser="t", title="Guide"))
    chunks = chunk_document(doc, "abc", Chunker(bundled_embedder, 200, 30))
    assert [c.text for c in chunks] == [
        "Install\n\nStep one is short.\n\nStep two is short too.",
        "Configure\n\nSet the data directory.",
    ]
    assert chunks[0].heading_path == ["Install"]
    assert chunks[0].embed_text.startswith("Guide > Install\n\n")
    assert chunks[1].embed_text.startswith("Guide > Configure\n\n")
    assert all(c.tokens > 0 for c in chunks)  # tiktoken counts for context budgeting


def test_long_section_splits_at_sentences_with_overlap(bundled_embedder: Any) -> None:
    sentences = [
        f"Sentence number {i} talks about topic {i % 7} in some detail." for i in range(60)
    ]
    doc = clean_document(
        ParsedDocument(elements=[Element(" ".join(sentences), page=3)], parser="t")
    )
    chunks = Chunker(bundled_embedder, 64, 16).chunk(doc, "abc")
    assert len(chunks) > 3
    for prev, nxt in itertools.pairwise(chunks):
        assert prev.text.endswith(".")  # cut at a sentence end
        assert nxt.char_start < prev.char_end  # consecutive chunks overlap
    assert {c.page for c in chunks} == {3}
    for c in chunks:
        assert bundled_embedder.count_tokens(c.embed_text) <= 64 + 8


def test_pages_follow_the_chunk_start(bundled_embedder: Any) -> None:
    els = [Element(f"Page {p} text. " * 30, page=p) for p in (1, 2, 3)]
    doc = clean_document(ParsedDocument(elements=els, parser="t"))
    chunks = Chunker(bundled_embedder, 40, 0).chunk(doc, "abc")
    for c in chunks:
        assert c.text.startswith(f"Page {c.page} text") or f"Page {c.page}" in c.text


@pytest.mark.parametrize("target", [16, 300])
def test_target_is_clamped(bundled_embedder: Any, target: int) -> None:
    chunker = Chunker(bundled_embedder, target, 1000)
    assert chunker.target <= bundled_embedder.max_tokens
    assert chunker.overlap <= chunker.target // 2


def test_a_huge_section_is_tokenized_in_blocks_with_the_same_chunks(
    bundled_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A section far longer than a tokenizer block gives the chunks of a one-piece
    tokenization, while the tokenizer never sees more than a block; a stream stops at its
    cap and says where."""
    from ingest import chunk as chunk_module

    words = ["harbor", "ledger.", "naïve", "日本語", "x" * 40, "3.14", "\n\n", "🙂"]
    text = " ".join(words[(i * 7) % len(words)] for i in range(30_000))
    doc = clean_document(ParsedDocument(elements=[Element(text)], parser="t"))
    seen: list[int] = []
    real = bundled_embedder.token_spans

    def spans(part: str) -> list[tuple[int, int]]:
        seen.append(len(part))
        result: list[tuple[int, int]] = real(part)
        return result

    monkeypatch.setattr(bundled_embedder, "token_spans", spans)
    streamed = Chunker(bundled_embedder, 200, 30).chunk(doc, "d0c")
    assert len(doc.text) > 2 * chunk_module.TOKENIZE_BLOCK_CHARS
    assert max(seen) <= chunk_module.TOKENIZE_BLOCK_CHARS
    monkeypatch.setattr(chunk_module, "TOKENIZE_BLOCK_CHARS", 10**9)
    whole = Chunker(bundled_embedder, 200, 30).chunk(doc, "d0c")
    assert [(c.char_start, c.char_end, c.embed_tokens) for c in streamed] == [
        (c.char_start, c.char_end, c.embed_tokens) for c in whole
    ]
    _check(doc.text, streamed, bundled_embedder)
    stream = ChunkStream(doc, "d0c", Chunker(bundled_embedder, 200, 30), limit=10)
    assert len(list(stream)) == stream.given == 10
    assert stream.cut_at == whole[9].char_end
