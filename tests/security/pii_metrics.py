"""Recall and precision of a redactor on the labelled corpus (``pii_corpus.py``).

* **recall** of a kind: the share of its values that are gone from the output (redacted
  under any kind: what matters for privacy is that the value left);
* **precision** of a kind: of the ``[REDACTED:KIND]`` placeholders written, the share that
  replaced a value of that kind (a look-alike redacted, or a value redacted twice or as
  another kind, counts against it);
* **look-alike false positives**: items holding no PII that came out changed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tests.security.pii_corpus import Item

PLACEHOLDER = re.compile(r"\[REDACTED:([A-Z_]+)\]")
Redactor = Callable[[str], tuple[str, dict[str, int]]]


@dataclass
class KindScore:
    positives: int = 0
    found: int = 0
    true_marks: int = 0
    false_marks: int = 0

    @property
    def recall(self) -> float:
        return self.found / self.positives if self.positives else 1.0

    @property
    def precision(self) -> float:
        marks = self.true_marks + self.false_marks
        return self.true_marks / marks if marks else 1.0


@dataclass
class Report:
    kinds: dict[str, KindScore] = field(default_factory=dict)
    lookalikes: Counter[str] = field(default_factory=Counter)  # category -> items
    lookalike_fp: Counter[str] = field(default_factory=Counter)  # category -> changed items
    missed: list[Item] = field(default_factory=list)
    false_positives: list[tuple[Item, str]] = field(default_factory=list)

    def score(self, kind: str) -> KindScore:
        return self.kinds.setdefault(kind, KindScore())

    @property
    def lookalike_fp_total(self) -> int:
        return sum(self.lookalike_fp.values())


def evaluate(redact: Redactor, corpus: Iterable[Item]) -> Report:
    report = Report()
    for item in corpus:
        out, _ = redact(item["text"])
        marks = PLACEHOLDER.findall(out)
        kind = item["kind"]
        if kind == "NONE":
            report.lookalikes[item["sub"]] += 1
            if out != item["text"]:
                report.lookalike_fp[item["sub"]] += 1
                report.false_positives.append((item, out))
            for m in marks:
                report.score(m).false_marks += 1
            continue
        score = report.score(kind)
        score.positives += 1
        if item["value"] not in out and marks:
            score.found += 1
        else:
            report.missed.append(item)
        credited = False
        for m in marks:
            if m == kind and not credited:
                score.true_marks += 1
                credited = True
            else:
                report.score(m).false_marks += 1
    return report


def table(reports: dict[str, Report], kinds: Iterable[str]) -> str:
    """A markdown table: per kind, each report's recall and precision."""
    names = list(reports)
    head = ["kind", "values"]
    for n in names:
        head += [f"recall ({n})", f"precision ({n})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for kind in kinds:
        first = reports[names[0]].kinds.get(kind, KindScore())
        row = [kind, str(first.positives)]
        for n in names:
            s = reports[n].kinds.get(kind, KindScore())
            row += [f"{s.recall:.3f}", f"{s.precision:.3f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def lookalike_table(reports: dict[str, Report]) -> str:
    names = list(reports)
    first = reports[names[0]]
    head = ["look-alike", "items", *(f"redacted ({n})" for n in names)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for cat, n_items in first.lookalikes.items():
        lines.append(
            "| "
            + " | ".join([cat, str(n_items), *(str(reports[n].lookalike_fp[cat]) for n in names)])
            + " |"
        )
    total = sum(first.lookalikes.values())
    lines.append(
        "| **all** | "
        + " | ".join([str(total), *(f"**{reports[n].lookalike_fp_total}**" for n in names)])
        + " |"
    )
    return "\n".join(lines)
