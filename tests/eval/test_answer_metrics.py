"""Answer metrics: SQuAD normalisation, F1, sentence splitting, and faithfulness by the support
rule (rag/support.py)."""

from __future__ import annotations

import numpy as np
import pytest

from eval.answer_metrics import (
    answer_similarity,
    exact_match,
    faithfulness,
    groundedness,
    markers,
    normalize_answer,
    split_sentences,
    strip_markers,
    supported_share,
    token_f1,
)


def test_squad_normalisation_and_scores() -> None:
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert exact_match("the cat [1].", ["A cat"]) == 1.0
    assert exact_match("dog", ["cat", "bird"]) == 0.0
    # pred "cat sat on mat" vs ref "cat sat": p = 2/4, r = 1 -> f1 = 2/3
    assert token_f1("The cat sat on the mat", ["cat sat"]) == pytest.approx(2 / 3)
    assert token_f1("cat", ["dog", "cat"]) == 1.0  # max over references
    assert token_f1("", ["cat"]) == 0.0


def test_markers_and_sentences() -> None:
    text = "Martha kept the light. [1, 2] She climbed 112 steps [2].\nDone [Source 3]"
    assert markers(text) == [1, 2, 2, 3]
    assert split_sentences(text) == [
        "Martha kept the light. [1, 2]",
        "She climbed 112 steps [2].",
        "Done [Source 3]",
    ]
    assert strip_markers("She climbed [2].") == "She climbed."


LIGHTHOUSE = "Martha Quill kept the Gull Rock lighthouse for forty years."


def test_faithfulness_supported_and_unsupported() -> None:
    sources = {
        1: "Martha Quill kept the Gull Rock lighthouse for forty years.",
        2: "Bees make honey from nectar.",
    }
    support = faithfulness(
        "Martha Quill kept the Gull Rock lighthouse [1]. Penguins fly to Mars every winter [2].",
        sources,
    )
    assert [s.supported for s in support] == [True, False]
    assert support[0].reason == "ok" and support[1].reason == "unsupported"
    assert supported_share(support) == 0.5


def test_uncited_sentence_inherits_the_next_marker() -> None:
    sources = {1: "Bees make honey from nectar. Workers dance to show flowers."}
    support = faithfulness(
        "Bees make honey from nectar. Workers dance to show flowers [1].", sources
    )
    assert [s.cited for s in support] == [[1], [1]]
    assert all(s.supported for s in support)


def test_citing_nothing_or_a_missing_source_is_unsupported() -> None:
    sources = {1: "Bees make honey from nectar."}
    assert not faithfulness("Bees make honey from nectar.", sources)[0].supported
    assert not faithfulness("Bees make honey from nectar [4].", sources)[0].supported


def test_groundedness_accepts_any_passage() -> None:
    support = groundedness(
        "Bees make honey from nectar.",
        ["Coffee is roasted.", "Bees make honey from nectar."],
    )
    assert supported_share(support) == 1.0
    # a changed number is not supported, whatever passage it is checked against
    changed = groundedness("Martha Quill kept the lighthouse for fifty years.", [LIGHTHOUSE])
    assert supported_share(changed) == 0.0
    assert faithfulness("Yes.", {1: "x"}) == []  # no claim to check


def test_answer_similarity_with_real_embedder(bundled_embedder) -> None:
    close = answer_similarity("Martha Quill [1].", ["Martha Quill"], bundled_embedder.embed)
    far = answer_similarity("Honey bees dance.", ["Martha Quill"], bundled_embedder.embed)
    assert close is not None and far is not None
    assert close > 0.95 > far
    assert answer_similarity("", ["x"], bundled_embedder.embed) is None


def test_contains_key_rules() -> None:
    from eval.answer_metrics import contains_key

    # case-insensitive, white space collapsed, markers ignored
    assert contains_key("It uses  SCRAM-SHA-256\nby default [1].", ["scram-sha-256"])
    assert contains_key("shared_buffers is 128 MB", ["128MB", "128 mb"])
    # word boundaries at alphanumeric ends only
    assert not contains_key("port 54321", ["5432"])
    assert not contains_key("recovery_target_timeline", ["recovery_target_time"])
    assert contains_key("set it with --foo=bar", ["--foo="])
    assert not contains_key("anything", [])


def test_abstention_phrases() -> None:
    from eval.answer_metrics import is_abstention

    assert is_abstention("I don’t know: the documents don't cover it.")
    assert is_abstention("The indexed documents do not contain information about this.")
    assert not is_abstention("The default port is 5432.")


def test_fact_metrics_summary() -> None:
    from eval.answers import score_answers
    from eval.runner import AnswerSample

    def sample(qid: str, text: str, **kw) -> AnswerSample:
        return AnswerSample(query_id=qid, question="q", references=[], text=text, **kw)

    samples = [
        sample("a", "The default is 5432.", keys=["5432"], retrieved_texts=["port 5432"]),
        sample("b", "It is 128kB.", keys=["8kB"], retrieved_texts=["blocks of 8kB"]),
        sample("c", "No idea, maybe 3.", keys=["4MB"], retrieved_texts=["nothing"]),
        sample("d", "I don't know.", keys=["on"], follow_up=True, retrieved_texts=["on"]),
        sample("e", "It is on.", keys=["on"], follow_up=True, retrieved_texts=["on"]),
        sample("u", "x", unanswerable=True, abstained=True),
        sample("v", "Zorblax is 7.", unanswerable=True),
    ]
    summary, rows = score_answers(samples, lambda t: np.ones((len(t), 4), np.float32) / 2, {})
    assert summary["key_fact_accuracy"] == pytest.approx(1 / 3)
    assert summary["key_fact_ceiling"] == pytest.approx(2 / 3)
    assert summary["followup_key_fact_accuracy"] == 0.5
    assert summary["followup_key_fact_ceiling"] == 1.0
    assert summary["unanswerable_abstention"] == 0.5
    assert summary["answerable_abstention"] == pytest.approx(1 / 5)
    assert [r["key_fact"] for r in rows][:3] == [True, False, False]
