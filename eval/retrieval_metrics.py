"""Retrieval metrics at document level, vectorised with numpy.

Definitions (they match ranx's ``recall@k``, ``mrr@k`` and ``ndcg@k``; the tests check it):

* ``recall@k``: relevant documents among the first k / all relevant documents of the query.
* ``mrr@k``: 1 / rank of the first relevant document within the first k, else 0.
* ``ndcg@k``: DCG with linear gains (the qrels score) and a log2(rank + 1) discount, divided
  by the DCG of the ideal ranking (relevant documents by descending score).

Only queries with at least one relevant document are scored; every metric is the mean over them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


def dedupe_ranking(doc_ids: Sequence[str | None]) -> list[str]:
    """Chunk ranking -> document ranking: first occurrence of each document wins; chunks that
    map to no corpus document (None) are dropped."""
    seen: set[str] = set()
    out: list[str] = []
    for d in doc_ids:
        if d is None or d in seen:
            continue
        seen.add(d)
        out.append(d)
    return out


@dataclass
class RetrievalScores:
    """Per-query arrays (rows follow ``query_ids``), columns k = 1..depth."""

    query_ids: list[str]
    recall: FloatArray  # (Q, depth)
    rr: FloatArray  # (Q, depth): reciprocal rank of the first hit within k
    ndcg: FloatArray  # (Q, depth)
    first_hit: npt.NDArray[np.int64]  # (Q,) 1-based rank of the first relevant doc, 0 if none

    @property
    def depth(self) -> int:
        return int(self.recall.shape[1])

    def _col(self, k: int) -> int:
        if k < 1:
            raise ValueError("k must be >= 1")
        return min(k, self.depth) - 1

    def mean_recall(self, k: int) -> float:
        return float(self.recall[:, self._col(k)].mean()) if self.query_ids else 0.0

    def mean_mrr(self, k: int) -> float:
        return float(self.rr[:, self._col(k)].mean()) if self.query_ids else 0.0

    def mean_ndcg(self, k: int) -> float:
        return float(self.ndcg[:, self._col(k)].mean()) if self.query_ids else 0.0

    def recall_curve(self) -> list[float]:
        if not self.query_ids:
            return [0.0] * self.depth
        return [float(x) for x in self.recall.mean(axis=0)]

    def summary(self) -> dict[str, float]:
        return {
            "recall@1": self.mean_recall(1),
            "recall@3": self.mean_recall(3),
            "recall@5": self.mean_recall(5),
            "recall@10": self.mean_recall(10),
            "mrr@10": self.mean_mrr(10),
            "ndcg@5": self.mean_ndcg(5),
            "ndcg@10": self.mean_ndcg(10),
        }


def score_retrieval(
    run: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, float]],
    depth: int = 10,
) -> RetrievalScores:
    """Score ranked document lists against graded judgements (gain > 0 = relevant).

    ``run`` maps a query id to its ranked, de-duplicated document ids; a query of ``qrels`` with
    no entry in ``run`` scores 0. Queries without any relevant document are left out.
    """
    if depth < 1:
        raise ValueError("depth must be >= 1")
    qids = [q for q in qrels if any(g > 0 for g in qrels[q].values())]
    n = len(qids)
    gains = np.zeros((n, depth), dtype=np.float64)
    ideal = np.zeros((n, depth), dtype=np.float64)
    n_rel = np.zeros(n, dtype=np.float64)
    for row, qid in enumerate(qids):
        rel = {d: float(g) for d, g in qrels[qid].items() if g > 0}
        n_rel[row] = len(rel)
        ranked = run.get(qid, ())
        for col, doc in enumerate(ranked[:depth]):
            gains[row, col] = rel.get(doc, 0.0)
        best = sorted(rel.values(), reverse=True)[:depth]
        ideal[row, : len(best)] = best

    hits = gains > 0
    recall = np.cumsum(hits, axis=1) / np.maximum(n_rel, 1.0)[:, None]

    any_hit = hits.any(axis=1)
    first = np.where(any_hit, hits.argmax(axis=1) + 1, 0).astype(np.int64)
    ks = np.arange(1, depth + 1)
    rr = np.where(
        (first[:, None] > 0) & (first[:, None] <= ks[None, :]),
        1.0 / np.maximum(first, 1)[:, None],
        0.0,
    )

    discount = 1.0 / np.log2(ks + 1.0)
    dcg = np.cumsum(gains * discount, axis=1)
    idcg = np.cumsum(ideal * discount, axis=1)
    ndcg = dcg / np.where(idcg > 0, idcg, 1.0)
    return RetrievalScores(
        query_ids=qids,
        recall=recall.astype(np.float64),
        rr=rr.astype(np.float64),
        ndcg=ndcg.astype(np.float64),
        first_hit=first,
    )


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default); None for no values."""
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))
