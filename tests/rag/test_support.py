"""The support rule (rag/support.py) against planted contradictions built here from passages this
test writes: a swapped identifier, a changed number, an added or removed negation, a sentence
moved under another term are never supported; every sentence copied from a passage is."""

from __future__ import annotations

import re

import pytest

from rag.attribution import attribute_sentences, statement_support
from rag.support import (
    answer_claims,
    check_claim,
    passage_units,
    quote_in_passage,
    supported_by,
    supports,
    tokenize,
)
from rag.units import split_units

SYSTEM_COLUMNS = """System columns

Every table has several system columns that are implicitly defined by the system.

tableoid

The OID of the table containing this row.

xmin

The identity (transaction ID) of the inserting transaction for this row version.

cmin

The command identifier (starting at zero) within the inserting transaction.

xmax

The identity (transaction ID) of the deleting transaction, or zero for an undeleted row version.

ctid

The physical location of the row version within its table. Note that although the ctid can \
be used to locate the row version very quickly, a row's ctid will change if it is updated or \
moved by VACUUM FULL. Therefore ctid is useless as a long-term row identifier."""

SETTINGS = """Resource consumption

shared_buffers (integer)

Sets the amount of memory the database server uses for shared memory buffers. The default is \
typically 128 megabytes (128MB), but might be less if your kernel settings will not support \
it. This setting must be at least 128 kilobytes.

checkpoint_timeout (integer)

Maximum time between automatic WAL checkpoints. The default is five minutes (5min). \
Increasing this parameter can increase the amount of time needed for crash recovery.

fsync (boolean)

If this parameter is on, the server will try to make sure that updates are physically \
written to disk. While turning off fsync is often a performance benefit, this can result in \
unrecoverable data corruption in the event of a power failure or system crash.

max_connections (integer)

Determines the maximum number of concurrent connections to the database server. The default \
is typically 100 connections. This parameter can only be set at server start."""

TOOLS = """pg_upgrade options

The --link option uses hard links instead of copying files to the new cluster. The --clone \
option uses efficient file cloning. Port 5432 is the default port of the old cluster; the new \
cluster uses port 5433 during the upgrade. The --check option does not change any data. \
Use the -j option to run several jobs in parallel."""

PASSAGES = [SYSTEM_COLUMNS, SETTINGS, TOOLS]

_IDENT = re.compile(r"--?[A-Za-z][\w-]*|\b[a-z]+_[a-z_]+\b|\b(?:ctid|cmin|xmin|xmax|tableoid)\b")
_NUMBER = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.]*\d)")
_AUX = re.compile(r"\b(is|are|can|will|does|must)\b")


def _sentences(passage: str) -> list[tuple[str, str]]:
    """(sentence, its term) for the passage's sentences of 5 to 45 words."""
    return [
        (u.text, u.context)
        for u in split_units(passage)
        if u.kind == "sentence" and 5 <= len(u.text.split()) <= 45
    ]


def planted(passage: str) -> list[tuple[str, str]]:
    """(kind, claim) contradictions planted in the passage's sentences."""
    idents = sorted(set(_IDENT.findall(passage)))
    terms = sorted({ctx for _, ctx in _sentences(passage) if ctx})
    out: list[tuple[str, str]] = []
    for sentence, context in _sentences(passage):
        for x in set(_IDENT.findall(sentence)):
            for y in idents:  # another name of the page, not the sentence's own term
                if y != x and y not in sentence and y not in context:
                    swapped = re.sub(r"(?<![\w-])" + re.escape(x) + r"(?![\w])", y, sentence)
                    if swapped != sentence:
                        out.append(("swap", swapped))
        for m in _NUMBER.finditer(sentence):
            value = int(float(m.group()))
            for new in {value + 1, value * 2 + 1}:
                out.append(("number", sentence[: m.start()] + str(new) + sentence[m.end() :]))
        if re.search(r"\bnot\b", sentence):
            out.append(("negation removed", re.sub(r"\bnot\s+", "", sentence, count=1)))
        elif _AUX.search(sentence) and not re.search(r"\b(never|no|without|n't)\b", sentence):
            out.append(("negation added", _AUX.sub(lambda m: m.group(1) + " not", sentence, 1)))
        for other in terms:
            if context and other != context:
                out.append(("moved", f"{other}: {sentence}"))
    return out


def test_planted_contradictions_are_never_supported() -> None:
    cases = [(kind, claim, p) for p in PASSAGES for kind, claim in planted(p)]
    kinds = {kind for kind, _, _ in cases}
    assert kinds == {"swap", "number", "negation removed", "negation added", "moved"}
    assert len(cases) >= 120
    false_support = [
        (kind, claim, supported_by(claim, p).unit)
        for kind, claim, p in cases
        if supported_by(claim, p).supported
    ]
    assert false_support == []


def test_sentences_copied_from_a_passage_are_supported() -> None:
    copied = [(s, ctx, p) for p in PASSAGES for s, ctx in _sentences(p)]
    assert len(copied) >= 15
    for sentence, context, passage in copied:
        assert supported_by(sentence, passage).supported, sentence
        if context:
            assert supported_by(f"{context}: {sentence}", passage).supported, sentence


def test_the_ctid_claim_is_not_supported_by_the_cmin_sentence() -> None:
    claim = "ctid contains the command identifier within the inserting transaction"
    verdict = supported_by(claim, SYSTEM_COLUMNS)
    assert not verdict.supported
    assert supported_by("cmin is the command identifier within the inserting transaction",
                        SYSTEM_COLUMNS).supported  # fmt: skip
    assert not supported_by("ctid is the command identifier within the inserting transaction",
                            SYSTEM_COLUMNS).supported  # fmt: skip
    assert supported_by("ctid is the physical location of the row version within its table",
                        SYSTEM_COLUMNS).supported  # fmt: skip
    # nor does attribution vouch for it, whatever the passages
    assert attribute_sentences(claim + ".", {1: SYSTEM_COLUMNS, 2: SETTINGS}) == []


def test_numbers_compare_canonically() -> None:
    assert supported_by("The default checkpoint_timeout is 5min.", SETTINGS).supported
    assert supported_by("The default of checkpoint_timeout is 5 minutes.", SETTINGS).supported
    assert not supported_by("The default of checkpoint_timeout is 6 minutes.", SETTINGS).supported
    assert [t.key for t in tokenize("five minutes 128MB 128 kilobytes")] == [
        "5|min",
        "128|MB",
        "128|kB",
    ]


def test_a_number_moved_to_another_subject_of_the_passage_is_caught() -> None:
    # both 5432 and 5433 are in the passage, each bound to its own cluster
    assert supported_by("Port 5432 is the default port of the old cluster.", TOOLS).supported
    assert not supported_by("Port 5433 is the default port of the old cluster.", TOOLS).supported


def test_a_paraphrase_far_from_the_source_is_not_supported() -> None:
    """The rule is strict on purpose: a loose paraphrase is unsupported, never vouched for."""
    assert not supported_by("Turning fsync off makes the server much faster.", SETTINGS).supported


def test_units_keep_their_term() -> None:
    units = {u.text: u for u in split_units(SYSTEM_COLUMNS)}
    assert units["The physical location of the row version within its table."].context == "ctid"
    assert "cmin: The command identifier (starting at zero) within the inserting transaction." in (
        passage_units(SYSTEM_COLUMNS)
    )
    assert not supports("", passage_units(SYSTEM_COLUMNS)).supported


def test_quotes_must_be_the_passage_words() -> None:
    assert quote_in_passage("The default is five minutes (5min).", SETTINGS)
    assert quote_in_passage(
        "Maximum time between automatic WAL checkpoints.  The default", SETTINGS
    )
    assert not quote_in_passage("The default is six minutes (6min).", SETTINGS)
    text = (
        "checkpoint_timeout (integer): “The default is five minutes (5min).” [2]\n"
        "“Port 5432 is the default port of the old cluster; the new cluster uses port 5433 "
        "during the upgrade.” [1]"
    )
    claims = answer_claims(text)
    assert [(c.quoted, c.context, c.markers) for c in claims] == [
        (True, "checkpoint_timeout (integer)", [2]),
        (True, "", [1]),
    ]
    assert check_claim(claims[0], SETTINGS).supported
    assert not check_claim(claims[0], TOOLS).supported
    support = statement_support(text, {1: TOOLS, 2: SETTINGS})
    assert [s.supported for s in support] == [True, True]
    support = statement_support(text, {1: SETTINGS, 2: TOOLS})  # citations swapped
    assert [s.supported for s in support] == [False, False]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("The default is 100 connections [1]. It is set at start [2].",
         [("The default is 100 connections.", [1]), ("It is set at start.", [2])]),
        ("Use --link. [1] Or --clone", [("Use --link.", [1]), ("Or --clone", [])]),
    ],
)  # fmt: skip
def test_answer_claims_of_prose(answer: str, expected: list[tuple[str, list[int]]]) -> None:
    assert [(c.text, c.markers) for c in answer_claims(answer)] == expected


def test_a_negation_opening_the_clause_and_number_words_count() -> None:
    unit = (
        "No attempt was made to contact the server, because the supplied parameters were "
        "obviously incorrect."
    )
    assert not supported_by("The server could be contacted.", unit).supported
    assert supported_by("No attempt was made to contact the server.", unit).supported
    keeper = "Martha Quill kept the Gull Rock lighthouse for forty years."
    assert not supported_by("Martha Quill kept the lighthouse for fifty years.", keeper).supported
    assert supported_by("Martha Quill kept the lighthouse for 40 years.", keeper).supported
