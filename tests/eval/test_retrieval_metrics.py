"""Retrieval metrics: hand-computed toy cases, and agreement with ranx on random runs."""

from __future__ import annotations

import math
import random
import warnings

import numpy as np
import pytest

from eval.retrieval_metrics import dedupe_ranking, percentile, score_retrieval

METRICS = ["recall@1", "recall@3", "recall@5", "recall@10", "mrr@10", "ndcg@5", "ndcg@10"]


def _ranx(qrels: dict[str, dict[str, float]], run: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """ranx's per-query scores, in the order of ``qrels``."""
    from ranx import Qrels, Run, evaluate

    r_qrels = Qrels({q: {d: int(g) for d, g in rel.items()} for q, rel in qrels.items()})
    # strictly decreasing scores keep ranx's order identical to the list order
    r_run = Run(
        {
            q: ({d: float(len(docs) - i) for i, d in enumerate(docs)} or {"__none__": 0.0})
            for q, docs in run.items()
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        evaluate(r_qrels, r_run, METRICS, return_mean=False, make_comparable=True)
    # per-query scores by query id (the arrays evaluate returns follow ranx's own order)
    return {m: np.asarray([r_run.scores[m][q] for q in qrels], dtype=np.float64) for m in METRICS}


def _ours(scores, name: str) -> np.ndarray:
    kind, k = name.split("@")
    col = min(int(k), scores.depth) - 1
    table = {"recall": scores.recall, "mrr": scores.rr, "ndcg": scores.ndcg}[kind]
    return table[:, col]


def test_dedupe_keeps_first_occurrence_and_drops_unknown() -> None:
    assert dedupe_ranking(["a", "b", "a", None, "c", "b"]) == ["a", "b", "c"]


def test_toy_case_hand_computed() -> None:
    qrels = {"q1": {"d1": 1, "d3": 1}, "q2": {"d9": 1}, "q3": {"x": 2, "y": 1}}
    run = {"q1": ["d2", "d1", "d4", "d3"], "q2": ["a", "b"], "q3": ["y", "x"]}
    s = score_retrieval(run, qrels, depth=10)
    assert s.query_ids == ["q1", "q2", "q3"]
    # q1: relevant at ranks 2 and 4 of 2 relevant
    assert s.recall[0, 0] == 0.0
    assert s.recall[0, 1] == 0.5
    assert s.recall[0, 3] == 1.0
    assert s.rr[0, 9] == 0.5
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3)
    assert s.ndcg[0, 9] == pytest.approx(dcg / idcg, abs=1e-12)
    # q2: nothing found
    assert s.recall[1, 9] == 0.0 and s.rr[1, 9] == 0.0 and s.ndcg[1, 9] == 0.0
    assert int(s.first_hit[1]) == 0
    # q3: graded gains, the less relevant document first
    dcg3 = 1 + 2 / math.log2(3)
    idcg3 = 2 + 1 / math.log2(3)
    assert s.ndcg[2, 9] == pytest.approx(dcg3 / idcg3, abs=1e-12)
    assert s.rr[2, 0] == 1.0
    summary = s.summary()
    assert summary["recall@1"] == pytest.approx((0 + 0 + 0.5) / 3)
    assert summary["mrr@10"] == pytest.approx((0.5 + 0 + 1) / 3)
    assert s.recall_curve()[3] == pytest.approx((1 + 0 + 1) / 3)


def test_mrr_respects_the_cutoff() -> None:
    s = score_retrieval({"q": ["a", "b", "c", "d", "e", "f"]}, {"q": {"f": 1}}, depth=10)
    assert s.mean_mrr(5) == 0.0
    assert s.mean_mrr(10) == pytest.approx(1 / 6)
    assert s.mean_recall(5) == 0.0 and s.mean_recall(6) == 1.0


def test_queries_without_relevant_documents_are_not_scored() -> None:
    s = score_retrieval({"q": ["a"], "r": ["b"]}, {"q": {"a": 1}, "r": {"b": 0}}, depth=3)
    assert s.query_ids == ["q"]
    assert s.summary()["recall@1"] == 1.0


def test_missing_run_entry_scores_zero() -> None:
    s = score_retrieval({}, {"q": {"a": 1}}, depth=5)
    assert s.summary()["ndcg@10"] == 0.0


def test_toy_case_agrees_with_ranx() -> None:
    qrels = {"q1": {"d1": 1, "d3": 1}, "q2": {"d9": 1}, "q3": {"x": 2, "y": 1}}
    run = {"q1": ["d2", "d1", "d4", "d3"], "q2": ["a", "b"], "q3": ["y", "x"]}
    ours = score_retrieval(run, qrels, depth=10)
    ref = _ranx(qrels, run)
    for name in METRICS:
        np.testing.assert_allclose(_ours(ours, name), ref[name], atol=1e-9, err_msg=name)


def test_random_runs_agree_with_ranx() -> None:
    rng = random.Random(7)
    docs = [f"d{i}" for i in range(40)]
    qrels: dict[str, dict[str, float]] = {}
    run: dict[str, list[str]] = {}
    for q in range(300):
        qid = f"q{q}"
        qrels[qid] = {d: rng.choice([1, 1, 2, 3]) for d in rng.sample(docs, rng.randint(1, 6))}
        run[qid] = rng.sample(docs, rng.randint(0, 15))
    ours = score_retrieval(run, qrels, depth=10)
    ref = _ranx(qrels, run)
    assert ours.query_ids == list(qrels)
    for name in METRICS:
        np.testing.assert_allclose(_ours(ours, name), ref[name], atol=1e-9, err_msg=name)
        assert float(np.mean(_ours(ours, name))) == pytest.approx(
            float(np.mean(ref[name])), abs=1e-9
        )


def test_percentile() -> None:
    assert percentile([], 50) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == pytest.approx(2.5)
    assert percentile([float(i) for i in range(101)], 95) == pytest.approx(95.0)
