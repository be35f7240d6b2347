"""What a question asks (rag/question.py): its answer type and how well a unit matches it. The
examples are made up; none is from an evaluation set."""

from __future__ import annotations

import pytest

from rag.question import answer_type, asks_limit, counted_nouns, type_match
from rag.units import Unit


def _unit(text: str, context: str = "") -> Unit:
    return Unit(text, context, "sentence", 0, 0)


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Which option turns on verbose logging?", "name"),
        ("Which log rotation setting controls the file size?", "name"),
        ("What is the name of the lock file?", "name"),
        ("Which of the following functions returns a random UUID?", "name"),
        ("What kind of lock does a rebuild take?", "name"),
        # the noun after the verb is the subject, not what is asked for
        ("What does a foreign table need before it can be analyzed?", "other"),
        ("What does that warning mean?", "other"),
        # "the maximum number of <noun>" asks for a number, not a name
        ("What is the maximum number of arguments a function can take?", "quantity"),
        ("How many worker threads does the scheduler start?", "quantity"),
        ("Where does the installer put the default configuration?", "place"),
        ("Where is the crash log written?", "place"),
        ("How do I rotate the log files?", "howto"),
    ],
)
def test_answer_type(question: str, kind: str) -> None:
    assert answer_type(question) == kind


def test_a_place_question_prefers_a_unit_naming_a_file_or_path() -> None:
    q = "Where does the scheduler keep its state?"
    kind = answer_type(q)
    assert type_match(kind, _unit("The scheduler writes its state to scheduler.json."), q) == 1.0
    assert type_match(kind, _unit("State is kept in /var/lib/sched between runs."), q) == 1.0
    assert type_match(kind, _unit("The scheduler keeps its state between runs."), q) == 0.0


def test_a_bound_question_prefers_a_unit_stating_a_bound() -> None:
    q = "What is the largest message size the queue accepts?"
    assert asks_limit(q) and not asks_limit("What is the message size?")
    kind = answer_type(q)
    bound = _unit("A message cannot exceed 256 kilobytes.")
    plain = _unit("A typical message is 2 kilobytes.")
    assert type_match(kind, bound, q) > type_match(kind, plain, q)


def test_a_count_question_prefers_the_number_of_the_thing_counted() -> None:
    q = "How many retries does the client make?"
    assert len(counted_nouns(q)) == 1
    kind = answer_type(q)
    counted = _unit("The client makes three retries before it gives up.")
    other = _unit("Each retry waits 2 seconds.")
    assert type_match(kind, counted, q) == 1.5
    assert type_match(kind, other, q) == 1.0


def test_a_question_word_in_capitals_is_no_new_name() -> None:
    q = "Which flag makes the upload resumable?"
    kind = answer_type(q)
    assert type_match(kind, _unit("UPLOAD a file as RESUMABLE to continue it later."), q) == 0.0
    assert type_match(kind, _unit("Pass --resume to the upload command."), q) == 1.0
