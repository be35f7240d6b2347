"""One evaluation run, start to finish: dataset -> index -> retrieval -> answers -> report.

The index is one of three: an evaluation index of the dataset's own corpus, built with the
real pipeline (eval/index.py); a running server (``--url``); or, given ``reader``, an
existing index's release scored in place, on its own tables (``enclave eval --release``,
the release gate). Every report names the release it scored (``report["release"]``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enclave.errors import UsageError
from eval.dataset import Dataset, load_dataset
from eval.gate import (
    Delta,
    Gate,
    GateResult,
    check_gate,
    compare,
    flatten_metrics,
    load_gate,
    load_report,
)
from eval.provenance import HashCache, describe_models, enclave_version
from eval.report import write_reports
from eval.retrieval_metrics import RetrievalScores, score_retrieval

if TYPE_CHECKING:
    from rich.progress import Progress

    from enclave.settings import Settings
    from models.embedder import Embedder
    from store.reader import TableReader

log = logging.getLogger(__name__)


@dataclass
class EvalOptions:
    dataset_dir: Path
    out_dir: Path | None = None
    answers: int = 100
    no_answers: bool = False
    seed: int = 0
    top_k: int = 10
    limit_queries: int | None = None
    url: str | None = None
    api_key: str | None = None
    #: evaluate in-process as this API key (name or id): only the documents it may read
    as_key: str | None = None
    baseline: Path | None = None
    gate: Path | None = None
    progress: bool = True
    threads: int = 2
    command: list[str] = field(default_factory=list)


@dataclass
class EvalOutcome:
    report: dict[str, Any]
    paths: dict[str, Path]
    gate: GateResult | None
    deltas: list[Delta]


# --------------------------------------------------------------------------- progress
@contextmanager
def _progress(enabled: bool) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(file=sys.stderr)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bar:
        yield bar


def _advance(bar: Progress | None, description: str, total: int) -> Callable[[int], None]:
    """A callback moving one task of the bar. Where stderr is no terminal (CI logs), the bar
    cannot redraw: a line is printed at every tenth of the way instead."""
    if bar is None:
        return lambda _n: None
    task = bar.add_task(description, total=total)
    if bar.console.is_terminal:
        return lambda n: bar.advance(task, n)
    done = 0
    step = max(1, total // 10)

    def advance(n: int) -> None:
        nonlocal done
        before = done
        done += n
        bar.advance(task, n)
        if done // step > before // step or done == total:
            bar.console.print(f"{description}: {done}/{total}", highlight=False)

    return advance


# ------------------------------------------------------------------------------- run
def worst_misses(
    scores: RetrievalScores, dataset: Dataset, run: dict[str, list[str]], limit: int = 15
) -> list[dict[str, Any]]:
    """Queries whose first relevant document ranks worst (missing entirely first)."""
    depth = scores.depth
    order = sorted(
        range(len(scores.query_ids)),
        key=lambda i: (
            int(scores.first_hit[i]) if scores.first_hit[i] > 0 else depth + 1,
            -float(scores.ndcg[i, -1]),
        ),
        reverse=True,
    )
    by_id = dataset.query_by_id()
    out: list[dict[str, Any]] = []
    for i in order:
        if scores.first_hit[i] == 1 and scores.recall[i, -1] >= 1.0:
            break
        qid = scores.query_ids[i]
        out.append(
            {
                "id": qid,
                "query": by_id[qid].text,
                "expected": sorted(dataset.qrels.get(qid, {})),
                "got": run.get(qid, [])[:5],
                "rank": int(scores.first_hit[i]) or None,
                "ndcg@10": round(float(scores.ndcg[i, min(10, depth) - 1]), 4),
            }
        )
        if len(out) >= limit:
            break
    return out


def _check_gate_inputs(gate: Gate | None, options: EvalOptions) -> None:
    if gate is None:
        return
    if gate.max_regression and options.baseline is None:
        raise UsageError(f"{gate.path} has [max_regression] thresholds: pass --baseline REPORT")
    needs_answers = sorted(n for n in gate.names() if n.startswith("answers."))
    if needs_answers and (options.no_answers or options.answers <= 0):
        raise UsageError(
            f"{gate.path} checks {needs_answers[0]}, but answers are not evaluated "
            "(--no-answers or --answers 0)"
        )


def run_eval(
    settings: Settings,
    options: EvalOptions,
    *,
    embedder: Embedder | None = None,
    generator: Any = None,
    reader: TableReader | None = None,
) -> EvalOutcome:
    """Everything ``enclave eval`` does except printing. Usage problems raise UsageError.
    ``reader``: score this release of an existing index in place (module docstring)."""
    if options.top_k < 1 or options.top_k > 100:
        raise UsageError("--top-k must be between 1 and 100")
    if options.answers < 0:
        raise UsageError("--answers must be >= 0")
    if options.limit_queries is not None and options.limit_queries < 1:
        raise UsageError("--limit-queries must be >= 1")
    gate = load_gate(options.gate) if options.gate else None
    baseline = load_report(options.baseline) if options.baseline else None
    _check_gate_inputs(gate, options)
    if reader is not None and options.url is not None:
        raise UsageError("--release scores this machine's index in place: drop --url")
    dataset = load_dataset(options.dataset_dir, in_place=reader is not None)
    warnings = list(dataset.warnings)
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out_dir = options.out_dir or (
        Path(settings.data_dir) / "eval-runs" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    )
    timings: dict[str, float] = {}
    t_start = time.perf_counter()

    queries = dataset.queries
    if options.limit_queries is not None:
        queries = queries[: options.limit_queries]
    scored = [q for q in queries if q.id in dataset.qrels]
    want_answers = not options.no_answers and options.answers > 0

    from eval.answers import answer_modes, score_answers
    from eval.index import DocMapper, EvalIndex, build_index
    from eval.runner import (
        AnswerSample,
        HttpClient,
        answer_http,
        answer_local,
        chunk_depth,
        retrieve_http,
        retrieve_local,
        sample_queries,
    )

    client: HttpClient | None = None
    index_info: dict[str, Any] = {}
    try:
        if (options.url is None or want_answers) and embedder is None:
            from models.loading import load_embedder
            from models.variants import for_index

            t0 = time.perf_counter()
            # a release scored in place: embed questions the way its chunks were embedded
            bound = None
            if reader is not None:
                from store.records import read_index_meta

                # the reader's own table set (store/sets.py), else the index's root set
                bound = getattr(reader, "embedder_name", None) or read_index_meta(
                    settings.index
                ).get("embedder")
            embedder = load_embedder(for_index(settings.embedder, bound))
            timings["load_embedder_s"] = time.perf_counter() - t0

        filters = None
        if options.as_key is not None:
            if options.url is not None:
                raise UsageError(
                    "--as-key evaluates in-process; with --url the server applies the groups "
                    "and limits of --api-key"
                )
            from enclave.security.access import search_filters_for
            from enclave.security.keys import KeyStore

            principal = KeyStore(settings.data_dir).find(options.as_key).principal()
            filters = search_filters_for(principal)
        index: EvalIndex | None = None
        scored_reader: Any = None
        rank_settings = settings
        release: str | None = None
        if reader is not None:
            scored_reader, mapper, release = reader, DocMapper(dataset), reader.release_id
            index_info = {
                "in_place": True,
                "release": release,
                "versions": getattr(reader, "versions", None),
                "chunks": reader.count_chunks(),
                "documents": reader.count_documents(),
            }
        elif options.url is None:
            assert embedder is not None
            index = build_index(dataset, settings, embedder, progress=options.progress)
            scored_reader, rank_settings = index.store, index.settings
            release = index.release
            timings["ingest_s"] = index.seconds
            mapper = index.mapper
            failed = index.ingest.get("failed") or []
            if failed:
                warnings.append(
                    f"{len(failed)} corpus file(s) failed to ingest, e.g. "
                    f"{failed[0].get('path')}: {failed[0].get('error')}"
                )
            index_info = {
                "dir": str(index.dir),
                "key": index.key,
                "reused": index.reused,
                "version": index.store.version(),
                "chunks": index.store.count_chunks(),
                "documents": index.store.count_documents(),
                "ingest": index.ingest,
                "ingest_seconds": round(index.seconds, 3),
                "release": index.release,
            }
            if options.as_key is not None:
                index_info["as_key"] = options.as_key
                index_info["groups"] = None if filters is None else filters.groups
        with _progress(options.progress) as bar:
            if scored_reader is not None:
                assert embedder is not None
                retrieval = retrieve_local(
                    scored,
                    scored_reader,
                    embedder,
                    rank_settings,
                    mapper,
                    depth=options.top_k,
                    threads=options.threads,
                    advance=_advance(bar, "retrieval", len(scored)),
                    filters=filters,
                )
            else:
                assert options.url is not None
                client = HttpClient(options.url, options.api_key)
                mapper = DocMapper(dataset)
                try:
                    index_info = {"server_models": client.get("/v1/models").get("data")}
                    release = _server_release(client)
                    index_info["release"] = release
                except Exception as exc:  # informative only
                    index_info = {"server_models_error": str(exc)}
                retrieval = retrieve_http(
                    scored,
                    client,
                    mapper,
                    depth=options.top_k,
                    chunks_per_query=min(100, chunk_depth(settings, options.top_k)),
                    threads=options.threads,
                    advance=_advance(bar, "retrieval (http)", len(scored)),
                )
            timings["retrieval_s"] = retrieval.seconds
            if retrieval.unmapped_hits:
                warnings.append(
                    f"{retrieval.unmapped_hits} retrieved chunks matched no corpus document "
                    "(the index holds other files?)"
                )
            scores = score_retrieval(retrieval.run, dataset.qrels, depth=options.top_k)

            samples: list[AnswerSample] = []
            answer_rows: list[dict[str, Any]] = []
            answer_summary: dict[str, Any] = {}
            if want_answers:
                chosen = sample_queries(queries, options.answers, options.seed)
                if not chosen:
                    warnings.append("no query has reference answers: answers not evaluated")
                advance = _advance(bar, "answers", len(chosen))
                t0 = time.perf_counter()
                if chosen and scored_reader is not None:
                    from rag.service import RagService

                    if generator is None:
                        from models.loading import load_generator

                        t1 = time.perf_counter()
                        generator = load_generator(settings.generator)
                        timings["load_generator_s"] = time.perf_counter() - t1
                    assert embedder is not None
                    rag = RagService(rank_settings, scored_reader, embedder, generator)
                    for q in chosen:
                        samples.append(answer_local(rag, q, mapper, filters))
                        advance(1)
                elif chosen:
                    assert client is not None
                    for q in chosen:
                        samples.append(
                            answer_http(
                                client,
                                q,
                                mapper,
                                search_top_k=min(100, chunk_depth(settings, options.top_k)),
                            )
                        )
                        advance(1)
                timings["answers_s"] = time.perf_counter() - t0
                if samples:
                    assert embedder is not None
                    t0 = time.perf_counter()
                    answer_summary, answer_rows = score_answers(
                        samples, embedder.embed, dataset.qrels
                    )
                    timings["answer_scoring_s"] = time.perf_counter() - t0
                    if answer_summary.get("errors"):
                        first_error = next(r["error"] for r in answer_rows if r["error"])
                        warnings.append(
                            f"{answer_summary['errors']} answer(s) failed, e.g.: {first_error}"
                        )
    finally:
        if client is not None:
            client.close()

    cache = HashCache(Path(settings.data_dir) / "eval" / "file-hashes.json")
    models = describe_models(settings, embedder, generator, cache)
    cache.save()
    timings["total_s"] = time.perf_counter() - t_start

    metrics: dict[str, dict[str, Any]] = {
        "retrieval": scores.summary() if scores.query_ids else {},
        "speed": {
            "retrieval_seconds": round(retrieval.seconds, 3),
            "queries_per_s": round(retrieval.queries_per_s, 2),
        },
    }
    if answer_summary:
        metrics["answers"] = answer_summary
    report: dict[str, Any] = {
        "format": 1,
        "enclave_version": enclave_version(),
        "created": started,
        "command": options.command,
        "mode": "in-place"
        if reader is not None
        else "in-process"
        if options.url is None
        else "http",
        "url": options.url,
        "release": release,
        "seed": options.seed,
        "top_k": options.top_k,
        "answers_requested": 0 if not want_answers else options.answers,
        "answer_mode": answer_modes(answer_rows),
        "limit_queries": options.limit_queries,
        "dataset": dataset.describe(),
        "settings": settings.model_dump(mode="json"),
        "models": models,
        "index": index_info,
        "metrics": metrics,
        "curves": {"recall_at_k": scores.recall_curve() if scores.query_ids else []},
        "retrieval": {
            "queries_run": retrieval.queries,
            "queries_scored": len(scores.query_ids),
            "depth": retrieval.depth,
            "chunks_per_query": retrieval.chunks_per_query,
            "embed_seconds": round(retrieval.embed_seconds, 3),
            "search_seconds": round(retrieval.search_seconds, 3),
            "cpu_seconds": round(retrieval.cpu_seconds, 3),
            "threads": options.threads,
            "unmapped_hits": retrieval.unmapped_hits,
        },
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "warnings": warnings,
        "worst_misses": worst_misses(scores, dataset, retrieval.run),
        "per_query": {
            qid: {"first_relevant_rank": int(scores.first_hit[i]), "docs": retrieval.run[qid]}
            for i, qid in enumerate(scores.query_ids)
        },
        "answers": answer_rows,
    }

    current = flatten_metrics(report)
    deltas: list[Delta] = []
    if baseline is not None:
        base_flat = flatten_metrics(baseline)
        deltas = compare(current, base_flat)
        report["baseline"] = {
            "path": str(options.baseline),
            "created": baseline.get("created"),
            "dataset_hash": (baseline.get("dataset") or {}).get("hash"),
            "deltas": [d.to_dict() for d in deltas],
            "recall_at_k": (baseline.get("curves") or {}).get("recall_at_k"),
        }
        if report["baseline"]["dataset_hash"] not in (None, dataset.hash):
            warnings.append("the baseline was measured on a different version of the dataset")
    gate_result: GateResult | None = None
    if gate is not None:
        gate_result = check_gate(gate, current, flatten_metrics(baseline) if baseline else None)
        report["gate"] = {"path": gate.path, **gate_result.to_dict()}
    paths = write_reports(report, out_dir)
    return EvalOutcome(report=report, paths=paths, gate=gate_result, deltas=deltas)


def _mode(reader: Any, options: EvalOptions) -> str:
    if reader is not None:
        return "in-place"
    return "in-process" if options.url is None else "http"


def _server_release(client: Any) -> str | None:
    """The release a server serves (its ``/readyz``), for the report."""
    try:
        ready = client.get("/readyz")
    except Exception:
        return None
    value = (ready.get("index") or {}).get("release")
    return str(value) if value else None
