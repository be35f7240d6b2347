"""Baselines and the quality gate.

A gate file (TOML) names metrics as ``"section.metric"`` (the keys of report.json's ``metrics``)::

    [min]
    "retrieval.recall@10" = 0.9
    [max]
    "answers.latency_total_p95_s" = 30
    [max_regression]            # worst allowed move in the bad direction vs --baseline
    "retrieval.ndcg@10" = 0.02  # an absolute drop (a rise, for lower-is-better metrics)
"""

from __future__ import annotations

import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from enclave.errors import UsageError

RETRIEVAL_METRICS = (
    "recall@1",
    "recall@3",
    "recall@5",
    "recall@10",
    "mrr@10",
    "ndcg@5",
    "ndcg@10",
)
ANSWER_METRICS = (
    "exact_match",
    "token_f1",
    "similarity",
    "faithfulness",
    "groundedness",
    "citation_validity",
    "cited_answer_rate",
    "supported_citation_rate",
    "abstention_rate",
    "source_hit_rate",
    "latency_first_token_p50_s",
    "latency_first_token_p95_s",
    "latency_total_p50_s",
    "latency_total_p95_s",
    "completion_tokens_mean",
    "prompt_tokens_mean",
    "key_fact_accuracy",
    "key_fact_ceiling",
    "followup_key_fact_accuracy",
    "followup_key_fact_ceiling",
    "unanswerable_abstention",
    "answerable_abstention",
)
SPEED_METRICS = ("retrieval_seconds", "queries_per_s")

KNOWN_METRICS: tuple[str, ...] = (
    *(f"retrieval.{m}" for m in RETRIEVAL_METRICS),
    *(f"answers.{m}" for m in ANSWER_METRICS),
    *(f"speed.{m}" for m in SPEED_METRICS),
)

#: metrics where a smaller value is better (a regression is a rise)
LOWER_IS_BETTER = frozenset(
    {
        "answers.abstention_rate",
        "answers.answerable_abstention",
        "answers.latency_first_token_p50_s",
        "answers.latency_first_token_p95_s",
        "answers.latency_total_p50_s",
        "answers.latency_total_p95_s",
        "answers.completion_tokens_mean",
        "answers.prompt_tokens_mean",
        "speed.retrieval_seconds",
    }
)

SECTIONS = ("min", "max", "max_regression")


def flatten_metrics(report: dict[str, Any]) -> dict[str, float]:
    """``{"retrieval.recall@10": 0.93, ...}``: every numeric metric of a report."""
    out: dict[str, float] = {}
    metrics = report.get("metrics")
    if not isinstance(metrics, dict):
        return out
    for section, values in metrics.items():
        if not isinstance(values, dict):
            continue
        for name, value in values.items():
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if number and math.isfinite(float(value)):
                out[f"{section}.{name}"] = float(value)
    return out


def load_report(path: Path | str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"baseline report not found: {p}")
    try:
        data = json.loads(p.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read baseline report {p}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("metrics"), dict):
        raise UsageError(f"{p} is not an Enclave eval report (no 'metrics' object)")
    return data


@dataclass
class Gate:
    path: str = ""
    min: dict[str, float] = field(default_factory=dict)
    max: dict[str, float] = field(default_factory=dict)
    max_regression: dict[str, float] = field(default_factory=dict)

    def names(self) -> set[str]:
        return set(self.min) | set(self.max) | set(self.max_regression)


def load_gate(path: Path | str) -> Gate:
    """Read and validate a gate file: unknown sections or metric names are usage errors."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"gate file not found: {p}")
    try:
        data = tomllib.loads(p.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"cannot read gate file {p}: {exc}") from exc
    extra = sorted(set(data) - set(SECTIONS))
    if extra:
        raise UsageError(
            f"{p}: unknown section(s) {', '.join(extra)}; use [min], [max], [max_regression]"
        )
    gate = Gate(path=str(p))
    unknown: list[str] = []
    for section in SECTIONS:
        table = data.get(section, {})
        if not isinstance(table, dict):
            raise UsageError(f'{p}: [{section}] must be a table of "metric" = number')
        target: dict[str, float] = getattr(gate, section)
        for name, value in table.items():
            if isinstance(value, dict):
                # an unquoted dotted key (retrieval.recall = ...) becomes a nested table
                raise UsageError(f'{p}: quote metric names in [{section}], e.g. "{name}.…" = 0.9')
            if name not in KNOWN_METRICS:
                unknown.append(name)
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UsageError(f"{p}: [{section}] {name!r} must be a number, not {value!r}")
            if section == "max_regression" and value < 0:
                raise UsageError(f"{p}: [max_regression] {name!r} must be >= 0")
            target[name] = float(value)
    if unknown:
        raise UsageError(
            f"{p}: unknown metric name(s): {', '.join(sorted(unknown))}. "
            f"Known: {', '.join(KNOWN_METRICS)}"
        )
    return gate


@dataclass
class Check:
    metric: str
    kind: str  # min | max | max_regression
    threshold: float
    value: float | None
    baseline: float | None = None
    ok: bool = True

    def describe(self) -> str:
        got = "not measured" if self.value is None else f"{self.value:.4g}"
        if self.kind == "min":
            return f"{self.metric} = {got}, minimum {self.threshold:.4g}"
        if self.kind == "max":
            return f"{self.metric} = {got}, maximum {self.threshold:.4g}"
        base = "none" if self.baseline is None else f"{self.baseline:.4g}"
        worse = "rise" if self.metric in LOWER_IS_BETTER else "drop"
        return (
            f"{self.metric} = {got} vs baseline {base}, "
            f"largest allowed {worse} {self.threshold:.4g}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "kind": self.kind,
            "threshold": self.threshold,
            "value": self.value,
            "baseline": self.baseline,
            "ok": self.ok,
            "message": self.describe(),
        }


@dataclass
class GateResult:
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [c.to_dict() for c in self.checks]}


_EPS = 1e-12


def check_gate(
    gate: Gate, current: dict[str, float], baseline: dict[str, float] | None = None
) -> GateResult:
    """Every threshold against this run's metrics (and the baseline's, for regressions).

    A metric the run did not measure fails its check; regressions need a baseline that has the
    metric (raises :class:`UsageError` otherwise).
    """
    if gate.max_regression and baseline is None:
        raise UsageError(f"{gate.path or 'the gate'} has [max_regression] but no --baseline given")
    checks: list[Check] = []
    for name, threshold in sorted(gate.min.items()):
        value = current.get(name)
        checks.append(
            Check(name, "min", threshold, value, ok=value is not None and value >= threshold - _EPS)
        )
    for name, threshold in sorted(gate.max.items()):
        value = current.get(name)
        checks.append(
            Check(name, "max", threshold, value, ok=value is not None and value <= threshold + _EPS)
        )
    for name, threshold in sorted(gate.max_regression.items()):
        value = current.get(name)
        base = (baseline or {}).get(name)
        if base is None:
            raise UsageError(f"the baseline report has no {name}: cannot check its regression")
        ok = False
        if value is not None:
            worse = value - base if name in LOWER_IS_BETTER else base - value
            ok = worse <= threshold + _EPS
        checks.append(Check(name, "max_regression", threshold, value, baseline=base, ok=ok))
    return GateResult(checks)


@dataclass
class Delta:
    metric: str
    baseline: float | None
    current: float | None

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.current is None:
            return None
        return self.current - self.baseline

    @property
    def better(self) -> bool | None:
        d = self.delta
        if d is None or abs(d) < 1e-12:
            return None
        return (d < 0) if self.metric in LOWER_IS_BETTER else (d > 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "baseline": self.baseline,
            "current": self.current,
            "delta": self.delta,
        }


def compare(current: dict[str, float], baseline: dict[str, float]) -> list[Delta]:
    """One row per metric in either report, in the catalogue's order."""
    names = [m for m in KNOWN_METRICS if m in current or m in baseline]
    names += sorted((set(current) | set(baseline)) - set(names))
    return [Delta(n, baseline.get(n), current.get(n)) for n in names]
