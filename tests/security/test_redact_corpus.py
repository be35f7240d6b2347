"""Recall and precision of PII redaction on a labelled corpus of 760 sentences
(``fixtures/pii_corpus.jsonl``, made by ``pii_corpus.py``): international phone numbers from
14 countries, IBANs from 20, card numbers of 9 issuers, e-mail addresses, US SSNs, five
national IDs, and 368 look-alike numbers that are not PII.

The floors hold for Enclave's redactor and fail for the regex redactor it replaced
(``legacy_redact.py``), which missed national phone formats and national IDs and redacted
look-alikes (one in ten random long numbers, every IMEI) as card numbers.

    .venv/bin/pytest tests/security/test_redact_corpus.py -q -s    # prints the tables
"""

from __future__ import annotations

import pytest

from enclave.security.redact import KINDS, redact
from tests.security import legacy_redact
from tests.security.pii_corpus import FIXTURE, build_corpus, dumps, load_corpus
from tests.security.pii_metrics import Report, evaluate, lookalike_table, table

RECALL_FLOOR = 0.95  # per kind
PRECISION_FLOOR = 0.95  # per kind
LOOKALIKE_CEILING = 3  # look-alikes redacted, of 368 (under 1 %)


def failures(report: Report) -> list[str]:
    out = []
    for kind in KINDS:
        score = report.kinds.get(kind)
        if score is None or score.positives == 0:
            out.append(f"{kind}: no values in the corpus")
            continue
        if score.recall < RECALL_FLOOR:
            out.append(f"{kind}: recall {score.recall:.3f} < {RECALL_FLOOR}")
        if score.precision < PRECISION_FLOOR:
            out.append(f"{kind}: precision {score.precision:.3f} < {PRECISION_FLOOR}")
    if report.lookalike_fp_total > LOOKALIKE_CEILING:
        out.append(f"{report.lookalike_fp_total} look-alikes redacted > {LOOKALIKE_CEILING}")
    return out


@pytest.fixture(scope="module")
def corpus() -> list[dict[str, str]]:
    return load_corpus()


def test_the_fixture_is_what_the_generator_makes(corpus: list[dict[str, str]]) -> None:
    assert FIXTURE.read_text(encoding="utf-8") == dumps(build_corpus())
    kinds = {item["kind"] for item in corpus}
    assert kinds == {*KINDS, "NONE"}
    assert sum(item["kind"] == "NONE" for item in corpus) == 368
    assert all(item["value"] in item["text"] for item in corpus)


def test_enclave_meets_the_floors_and_the_old_regexes_do_not(
    corpus: list[dict[str, str]],
) -> None:
    new = evaluate(redact, corpus)
    old = evaluate(legacy_redact.redact, corpus)
    print()
    print(table({"regex": old, "Enclave": new}, KINDS))
    print()
    print(lookalike_table({"regex": old, "Enclave": new}))
    assert failures(new) == [], [(m["kind"], m["text"]) for m in new.missed]
    old_failures = failures(old)
    assert any(f.startswith("PHONE: recall") for f in old_failures)
    assert any(f.startswith("NATIONAL_ID: recall") for f in old_failures)
    assert any(f.startswith("CARD: precision") for f in old_failures)
    assert any("look-alikes redacted" in f for f in old_failures)


def test_the_floors_hold_on_fresh_digits() -> None:
    """Same formats, other random digits: the figures do not hang on lucky numbers."""
    for seed in (1, 2):
        report = evaluate(redact, build_corpus(seed))
        assert failures(report) == [], (seed, [(m["kind"], m["text"]) for m in report.missed])


def test_no_value_survives_in_the_counts(corpus: list[dict[str, str]]) -> None:
    for item in corpus[:300]:
        _, counts = redact(item["text"])
        assert item["value"] not in repr(counts)
        assert all(isinstance(v, int) for v in counts.values())
