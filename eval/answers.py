"""Scoring a sample of generated answers (see :mod:`eval.answer_metrics` for the methods)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from eval.answer_metrics import (
    Embed,
    answer_similarity,
    contains_key,
    exact_match,
    faithfulness,
    groundedness,
    is_abstention,
    markers,
    supported_share,
    token_f1,
)
from eval.retrieval_metrics import percentile
from eval.runner import AnswerSample


def _mean(values: Sequence[float | None]) -> float | None:
    xs = [float(v) for v in values if v is not None]
    return sum(xs) / len(xs) if xs else None


def _share(rows: Sequence[dict[str, Any]], key: str) -> float | None:
    """The share of ``rows`` whose ``key`` is true (None without rows)."""
    return sum(1 for r in rows if r[key]) / len(rows) if rows else None


def fact_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Answer metrics by fact over rows scored by :func:`score_answers`.

    * ``key_fact_accuracy``: single-turn answerable questions (with keys) whose answer
      contains a key; ``key_fact_ceiling``: the same questions where a retrieved chunk
      contains a key (what retrieval made possible);
    * ``followup_key_fact_accuracy`` / ``followup_key_fact_ceiling``: the same for
      follow-ups (asked after their history);
    * ``unanswerable_abstention``: unanswerable questions answered with an abstention;
    * ``answerable_abstention``: answerable questions (with keys) answered with one.
    An answer that failed with an error counts as wrong and not abstained.
    """
    single = [r for r in rows if r["keys"] and not r["follow_up"]]
    follow = [r for r in rows if r["keys"] and r["follow_up"]]
    unanswerable = [r for r in rows if r["unanswerable"]]
    answerable = single + follow
    return {
        "key_fact_accuracy": _share(single, "key_fact"),
        "key_fact_ceiling": _share(single, "key_in_sources"),
        "followup_key_fact_accuracy": _share(follow, "key_fact"),
        "followup_key_fact_ceiling": _share(follow, "key_in_sources"),
        "unanswerable_abstention": _share(unanswerable, "abstained"),
        "answerable_abstention": _share(answerable, "abstained"),
        "fact_questions": len(answerable) + len(unanswerable),
    }


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
        checked_cite = False
        if ok and not s.abstained and s.text.strip():
            sentences = faithfulness(s.text, s.sources)
            faith = supported_share(sentences)
            support = [
                {
                    "sentence": x.sentence,
                    "cited": x.cited,
                    "supported": x.supported,
                    "unit": x.unit,
                    "reason": x.reason,
                }
                for x in sentences
            ]
            # a verified citation: a statement carrying its own marker, supported by the
            # passage it cites (checked here, not taken from the server's word)
            checked_cite = any(x.supported and x.marked for x in sentences)
            passages = list(dict.fromkeys(s.sources.values()))
            ground = supported_share(groundedness(s.text, passages)) if passages else 0.0
        abstained = ok and (s.abstained or is_abstention(s.text))
        key_fact = ok and not abstained and bool(s.keys) and contains_key(s.text, s.keys)
        in_sources = bool(s.keys) and any(contains_key(t, s.keys) for t in s.retrieved_texts)
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
                "supported_citation": checked_cite,
                "mode": s.mode,
                "removed": s.removed,
                "markers": len(markers(s.text)),
                "abstained": abstained,
                "keys": s.keys,
                "key_fact": key_fact if s.keys else None,
                "key_in_sources": in_sources if s.keys else None,
                "unanswerable": s.unanswerable,
                "follow_up": s.follow_up,
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
        "supported_citation_rate": _share(answered, "supported_citation"),
        "abstention_rate": (sum(1 for r in done if r["abstained"]) / len(done)) if done else None,
        "source_hit_rate": _mean([r["source_hit"] for r in done]),
        "latency_first_token_p50_s": percentile(first, 50),
        "latency_first_token_p95_s": percentile(first, 95),
        "latency_total_p50_s": percentile(total, 50),
        "latency_total_p95_s": percentile(total, 95),
        "completion_tokens_mean": _mean([float(r["completion_tokens"]) for r in done]),
        "prompt_tokens_mean": _mean([float(r["prompt_tokens"]) for r in done]),
    }
    if any(r["keys"] or r["unanswerable"] for r in rows):
        summary.update(fact_summary(rows))
    return summary, rows


def answer_modes(rows: Sequence[dict[str, Any]]) -> str | None:
    """How the answers were made: "extract", "generate", or e.g. "extract 50, generate 5"."""
    modes = Counter(str(r["mode"]) for r in rows if r.get("mode"))
    if not modes:
        return None
    if len(modes) == 1:
        return next(iter(modes))
    return ", ".join(f"{m} {n}" for m, n in modes.most_common())
