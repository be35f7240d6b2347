"""Scoring a sample of generated answers (see :mod:`eval.answer_metrics` for the methods)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eval.answer_metrics import (
    Embed,
    answer_similarity,
    exact_match,
    faithfulness,
    groundedness,
    markers,
    supported_share,
    token_f1,
)
from eval.retrieval_metrics import percentile
from eval.runner import AnswerSample


def _mean(values: Sequence[float | None]) -> float | None:
    xs = [float(v) for v in values if v is not None]
    return sum(xs) / len(xs) if xs else None


def score_answers(
    samples: Sequence[AnswerSample],
    embed: Embed,
    qrels: Mapping[str, Mapping[str, float]],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Aggregate metrics and one record per answer."""
    rows: list[dict[str, Any]] = []
    for s in samples:
        ok = not s.error
        em = exact_match(s.text, s.references) if ok else 0.0
        f1 = token_f1(s.text, s.references) if ok else 0.0
        sim = answer_similarity(s.text, s.references, embed) if ok else None
        faith = ground = None
        support: list[dict[str, Any]] = []
        if ok and not s.abstained and s.text.strip():
            sentences = faithfulness(s.text, s.sources, embed)
            faith = supported_share(sentences)
            support = [
                {
                    "sentence": x.sentence,
                    "cited": x.cited,
                    "supported": x.supported,
                    "overlap": x.overlap,
                    "cosine": x.cosine,
                }
                for x in sentences
            ]
            passages = list(dict.fromkeys(s.sources.values()))
            ground = supported_share(groundedness(s.text, passages, embed)) if passages else 0.0
        relevant = set(qrels.get(s.query_id, {}))
        hit = None
        if relevant:
            hit = float(any(d in relevant for d in s.source_docs if d is not None))
        rows.append(
            {
                "id": s.query_id,
                "question": s.question,
                "references": s.references,
                "answer": s.text,
                "error": s.error,
                "exact_match": em,
                "token_f1": round(f1, 6),
                "similarity": None if sim is None else round(sim, 6),
                "faithfulness": faith,
                "groundedness": ground,
                "support": support,
                "verified": s.verified,
                "removed": s.removed,
                "markers": len(markers(s.text)),
                "abstained": s.abstained,
                "source_docs": s.source_docs,
                "source_hit": hit,
                "first_token_s": s.first_token_s,
                "total_s": s.total_s,
                "prompt_tokens": s.prompt_tokens,
                "completion_tokens": s.completion_tokens,
            }
        )

    done = [r for r in rows if not r["error"]]
    n_valid = sum(len(r["verified"]) for r in done)
    n_removed = sum(len(r["removed"]) for r in done)
    answered = [r for r in done if not r["abstained"]]
    first = [float(r["first_token_s"]) for r in done if r["first_token_s"] is not None]
    total = [float(r["total_s"]) for r in done if r["total_s"] is not None]
    summary: dict[str, Any] = {
        "count": len(rows),
        "errors": len(rows) - len(done),
        "exact_match": _mean([r["exact_match"] for r in rows]),
        "token_f1": _mean([r["token_f1"] for r in rows]),
        "similarity": _mean([r["similarity"] for r in rows]),
        "faithfulness": _mean([r["faithfulness"] for r in answered]),
        "groundedness": _mean([r["groundedness"] for r in answered]),
        "citation_validity": (n_valid / (n_valid + n_removed)) if n_valid + n_removed else None,
        "cited_answer_rate": (
            sum(1 for r in answered if r["verified"]) / len(answered) if answered else None
        ),
        "abstention_rate": (sum(1 for r in done if r["abstained"]) / len(done)) if done else None,
        "source_hit_rate": _mean([r["source_hit"] for r in done]),
        "latency_first_token_p50_s": percentile(first, 50),
        "latency_first_token_p95_s": percentile(first, 95),
        "latency_total_p50_s": percentile(total, 50),
        "latency_total_p95_s": percentile(total, 95),
        "completion_tokens_mean": _mean([float(r["completion_tokens"]) for r in done]),
        "prompt_tokens_mean": _mean([float(r["prompt_tokens"]) for r in done]),
    }
    return summary, rows
