"""Sentence support and attribution (rag/attribution.py): which source backs each sentence an
answer left without a citation marker."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from enclave.settings import Settings
from models.embedder import HashEmbedder
from models.generator import FakeGenerator
from rag.attribution import attribute_sentences, split_sentences
from rag.service import RagService
from tests.server.conftest import hash_store

SOURCES = {
    1: "Project Falcon is the codename of the new billing platform. The Falcon launch date is "
    "14 March 2027 and its budget is 3.2 million euros.",
    2: "Every employee receives 27 days of paid annual leave. Parental leave is 16 weeks at "
    "full pay.",
}


def _hash(texts: Sequence[str]) -> npt.NDArray[np.float32]:
    return HashEmbedder(dimension=256).embed(list(texts))


def test_copied_sentences_go_to_their_source_and_others_to_none() -> None:
    answer = (
        "Every employee receives 27 days of paid annual leave. "
        "The Falcon launch date is 14 March 2027. "
        "Penguins cannot fly over volcanoes."
    )
    found = attribute_sentences(answer, SOURCES, _hash)
    assert [(a.sentence, a.source) for a in found] == [
        ("Every employee receives 27 days of paid annual leave.", 2),
        ("The Falcon launch date is 14 March 2027.", 1),
    ]
    assert all(a.overlap == 1.0 for a in found)


def test_sentences_the_model_cited_are_left_alone() -> None:
    answer = "Falcon launches on 14 March 2027 [1]. Parental leave is 16 weeks at full pay [9]."
    found = attribute_sentences(answer, SOURCES, _hash)
    # [1] is a real citation; [9] points at nothing, so that sentence is attributed
    assert [(a.sentence, a.source) for a in found] == [
        ("Parental leave is 16 weeks at full pay.", 2)
    ]


def test_short_or_empty_answers_attribute_nothing() -> None:
    assert attribute_sentences("Yes.", SOURCES, _hash) == []
    assert attribute_sentences("", SOURCES, _hash) == []
    assert attribute_sentences("The launch is in March 2027.", {}, _hash) == []


def test_a_paraphrase_is_matched_by_the_real_embedder(bundled_embedder: Any) -> None:
    answer = "Staff get twenty-seven paid vacation days every year."
    found = attribute_sentences(answer, SOURCES, bundled_embedder.embed)
    assert len(found) == 1 and found[0].source == 2
    assert found[0].overlap < 0.6 <= found[0].cosine  # settled by the embedding, not words
    unrelated = attribute_sentences(
        "The cafeteria serves soup on Tuesdays.", SOURCES, bundled_embedder.embed
    )
    assert unrelated == []


def test_split_sentences_keeps_markers_with_their_sentence() -> None:
    assert split_sentences("A is one [1]. B is two.\nC three") == [
        "A is one [1].",
        "B is two.",
        "C three",
    ]


def _rag(tmp_path: Path, reply: str, **server: object) -> RagService:
    docs = {"falcon.md": SOURCES[1], "leave.txt": SOURCES[2]}
    settings = Settings(data_dir=tmp_path / "d", retrieval={"top_k": 2}, server=server)
    store, emb = hash_store(tmp_path / "d", docs)
    return RagService(settings, store, emb, FakeGenerator(reply=reply))


def test_answer_lists_attributed_sources_apart_from_citations(tmp_path: Path) -> None:
    reply = "Every employee receives 27 days of paid annual leave."
    rag = _rag(tmp_path, reply)
    answer = rag.answer([{"role": "user", "content": "How many days of annual leave?"}])
    assert answer.text == reply  # the text is never rewritten
    assert answer.citations == [] and answer.verified == []
    leave = next(s for s in answer.sources if s["source"].endswith("leave.txt"))
    assert answer.attributed == [
        {"sentence": reply, "index": leave["index"], "overlap": 1.0, "cosine": 0.0}
    ]
    assert leave["attributed"] is True and leave["verified"] is False
    assert [s["attributed"] for s in answer.sources].count(True) == 1
    assert answer.timings["attribute_s"] >= 0


def test_attribution_can_be_turned_off(tmp_path: Path) -> None:
    rag = _rag(tmp_path, "Every employee receives 27 days of paid annual leave.",
               attribute_sentences=False)  # fmt: skip
    answer = rag.answer([{"role": "user", "content": "How many days of annual leave?"}])
    assert answer.attributed == []
    assert not any(s["attributed"] for s in answer.sources)
