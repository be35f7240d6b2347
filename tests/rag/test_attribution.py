"""Attribution (rag/attribution.py): which source backs each statement of an answer, decided by
the support rule alone: word overlap or embedding closeness never vouch for a sentence."""

from __future__ import annotations

from rag.attribution import attribute_sentences, statement_support

SOURCES = {
    1: "Project Falcon is the codename of the new billing platform. The Falcon launch date is "
    "14 March 2027 and its budget is 3.2 million euros.",
    2: "Every employee receives 27 days of paid annual leave. Parental leave is 16 weeks at "
    "full pay.",
}


def test_copied_sentences_go_to_their_source_and_others_to_none() -> None:
    answer = (
        "Every employee receives 27 days of paid annual leave. "
        "The Falcon launch date is 14 March 2027. "
        "Penguins cannot fly over volcanoes."
    )
    found = attribute_sentences(answer, SOURCES)
    assert [(a.sentence, a.source) for a in found] == [
        ("Every employee receives 27 days of paid annual leave.", 2),
        ("The Falcon launch date is 14 March 2027.", 1),
    ]
    assert "14 March 2027" in found[1].unit


def test_close_but_false_sentences_are_attributed_to_nothing() -> None:
    answer = (
        "Every employee receives 28 days of paid annual leave. "  # a changed number
        "Parental leave is not 16 weeks at full pay. "  # a negation added
        "The Falcon launch date is 14 March 2028."
    )
    assert attribute_sentences(answer, SOURCES) == []


def test_sentences_the_model_cited_are_left_alone() -> None:
    answer = "Falcon launches on 14 March 2027 [1]. Parental leave is 16 weeks at full pay [9]."
    found = attribute_sentences(answer, SOURCES)
    # [1] is a real citation; [9] points at nothing, so that sentence is attributed
    assert [(a.sentence, a.source) for a in found] == [
        ("Parental leave is 16 weeks at full pay.", 2)
    ]


def test_short_or_empty_answers_attribute_nothing() -> None:
    assert attribute_sentences("Yes.", SOURCES) == []
    assert attribute_sentences("", SOURCES) == []
    assert attribute_sentences("The launch is in March 2027.", {}) == []


def test_statement_support_checks_each_statement_against_what_it_cites() -> None:
    answer = (
        "Parental leave is 16 weeks at full pay [2]. "
        "The Falcon budget is 3.2 million euros [2].\n"  # true, but not in what it cites
        "“The Falcon launch date is 14 March 2027 and its budget is 3.2 million euros.” [1]"
    )
    checked = statement_support(answer, SOURCES)
    assert [(c.supported, c.reason) for c in checked] == [
        (True, "ok"),
        (False, "unsupported"),
        (True, "ok"),
    ]
    anywhere = statement_support(answer, SOURCES, cite_all=True)
    assert all(c.supported for c in anywhere)
