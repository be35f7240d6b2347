"""The quality gate and baseline deltas (pure logic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from enclave.errors import UsageError
from eval.gate import KNOWN_METRICS, check_gate, compare, flatten_metrics, load_gate

CURRENT = {
    "retrieval.recall@10": 0.92,
    "retrieval.ndcg@10": 0.80,
    "answers.latency_total_p95_s": 12.0,
}
BASELINE = {
    "retrieval.recall@10": 0.93,
    "retrieval.ndcg@10": 0.85,
    "answers.latency_total_p95_s": 10.0,
}


def _gate(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gate.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_min_and_max_pass(tmp_path: Path) -> None:
    gate = load_gate(
        _gate(
            tmp_path,
            '[min]\n"retrieval.recall@10" = 0.9\n[max]\n"answers.latency_total_p95_s" = 30\n',
        )
    )
    result = check_gate(gate, CURRENT)
    assert result.passed
    assert [c.kind for c in result.checks] == ["min", "max"]


def test_min_fails_below_threshold(tmp_path: Path) -> None:
    gate = load_gate(_gate(tmp_path, '[min]\n"retrieval.recall@10" = 0.95\n'))
    result = check_gate(gate, CURRENT)
    assert not result.passed
    assert result.failures[0].metric == "retrieval.recall@10"
    assert "minimum 0.95" in result.failures[0].describe()


def test_max_fails_above_threshold(tmp_path: Path) -> None:
    gate = load_gate(_gate(tmp_path, '[max]\n"answers.latency_total_p95_s" = 11\n'))
    assert not check_gate(gate, CURRENT).passed


def test_threshold_equal_to_value_passes(tmp_path: Path) -> None:
    gate = load_gate(_gate(tmp_path, '[min]\n"retrieval.recall@10" = 0.92\n'))
    assert check_gate(gate, CURRENT).passed


def test_max_regression_drop(tmp_path: Path) -> None:
    ok = load_gate(_gate(tmp_path, '[max_regression]\n"retrieval.recall@10" = 0.02\n'))
    assert check_gate(ok, CURRENT, BASELINE).passed  # dropped 0.01
    bad = load_gate(_gate(tmp_path, '[max_regression]\n"retrieval.ndcg@10" = 0.02\n'))
    result = check_gate(bad, CURRENT, BASELINE)  # dropped 0.05
    assert not result.passed
    assert result.failures[0].baseline == 0.85


def test_max_regression_on_lower_is_better_metric_is_a_rise(tmp_path: Path) -> None:
    gate = load_gate(_gate(tmp_path, '[max_regression]\n"answers.latency_total_p95_s" = 1.0\n'))
    assert not check_gate(gate, CURRENT, BASELINE).passed  # rose by 2 s
    faster = dict(CURRENT, **{"answers.latency_total_p95_s": 5.0})
    assert check_gate(gate, faster, BASELINE).passed  # an improvement is never a regression


def test_max_regression_needs_a_baseline(tmp_path: Path) -> None:
    gate = load_gate(_gate(tmp_path, '[max_regression]\n"retrieval.ndcg@10" = 0.02\n'))
    with pytest.raises(UsageError, match="baseline"):
        check_gate(gate, CURRENT, None)


def test_unmeasured_metric_fails(tmp_path: Path) -> None:
    gate = load_gate(_gate(tmp_path, '[min]\n"answers.faithfulness" = 0.5\n'))
    result = check_gate(gate, CURRENT)
    assert not result.passed
    assert "not measured" in result.failures[0].describe()


def test_unknown_metric_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"unknown metric name\(s\): retrieval.recall@11"):
        load_gate(_gate(tmp_path, '[min]\n"retrieval.recall@11" = 0.9\n'))


def test_bad_gate_files(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown section"):
        load_gate(_gate(tmp_path, '[minimum]\n"retrieval.recall@10" = 0.9\n'))
    with pytest.raises(UsageError, match="quote metric names"):
        load_gate(_gate(tmp_path, "[min]\nretrieval.recall = 0.9\n"))
    with pytest.raises(UsageError, match="must be a number"):
        load_gate(_gate(tmp_path, '[min]\n"retrieval.recall@10" = "high"\n'))
    with pytest.raises(UsageError, match="cannot read"):
        load_gate(_gate(tmp_path, "[min\n"))
    with pytest.raises(UsageError, match="not found"):
        load_gate(tmp_path / "missing.toml")


def test_flatten_and_compare() -> None:
    report = {
        "metrics": {
            "retrieval": {"recall@10": 0.9, "ndcg@10": 0.8},
            "answers": {"faithfulness": None, "count": 3, "abstention_rate": 0.1},
        }
    }
    flat = flatten_metrics(report)
    assert flat == {
        "retrieval.recall@10": 0.9,
        "retrieval.ndcg@10": 0.8,
        "answers.count": 3.0,
        "answers.abstention_rate": 0.1,
    }
    rows = {d.metric: d for d in compare(flat, {"retrieval.recall@10": 0.95})}
    assert rows["retrieval.recall@10"].delta == pytest.approx(-0.05)
    assert rows["retrieval.recall@10"].better is False
    assert rows["retrieval.ndcg@10"].delta is None
    assert all(m.count(".") == 1 for m in KNOWN_METRICS)


def test_report_command_line_hides_the_api_key() -> None:
    from eval.cli import redact_argv

    argv = ["eval", "ds", "--api-key", "sk-secret", "--url", "http://x", "--api-key=sk-2"]
    assert redact_argv(argv) == [
        "eval",
        "ds",
        "--api-key",
        "***",
        "--url",
        "http://x",
        "--api-key=***",
    ]
