"""``enclave eval``: score retrieval and answers on a BEIR-layout dataset, write reports, gate.

Exit codes: 0 ok, 1 the gate failed (or the run failed), 2 usage error.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from enclave.cli_options import ConfigOpt, DataDirOpt, build_settings, fail
from enclave.errors import EnclaveError
from enclave.native import preload_generator_runtime


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def redact_argv(argv: list[str]) -> list[str]:
    """The command line for the report, without the API key."""
    out: list[str] = []
    hide = False
    for arg in argv:
        if hide:
            out.append("***")
            hide = False
        elif arg == "--api-key":
            out.append(arg)
            hide = True
        elif arg.startswith("--api-key="):
            out.append("--api-key=***")
        else:
            out.append(arg)
    return out


def print_summary(outcome: Any) -> None:
    """The metric table (with deltas against a baseline), speed, gate verdict, report paths."""
    from rich.console import Console
    from rich.table import Table

    from eval.report import metric_rows

    console = Console(file=sys.stdout, soft_wrap=True)
    report = outcome.report
    deltas = {d.metric: d for d in outcome.deltas}
    table = Table(title="Enclave eval", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    if deltas:
        table.add_column("baseline", justify="right")
        table.add_column("delta", justify="right")
    for name, value in metric_rows(report):
        row = [name, _fmt(value)]
        if deltas:
            d = deltas.get(name)
            delta = d.delta if d else None
            colour = "" if d is None or d.better is None else ("green" if d.better else "red")
            text = "–" if delta is None else f"{delta:+.4f}"
            row += [_fmt(d.baseline if d else None), f"[{colour}]{text}[/]" if colour else text]
        table.add_row(*row)
    console.print(table)
    speed = report["metrics"].get("speed", {})
    info = report.get("retrieval", {})
    console.print(
        f"retrieval: {info.get('queries_run')} queries in "
        f"{_fmt(speed.get('retrieval_seconds'))} s ({_fmt(speed.get('queries_per_s'))} queries/s;"
        f" embedding {_fmt(info.get('embed_seconds'))} s, search "
        f"{_fmt(info.get('search_seconds'))} s; CPU {_fmt(info.get('cpu_seconds'))} s)",
        highlight=False,
    )
    if report.get("answer_mode"):
        console.print(f"answers made by: {report['answer_mode']}", highlight=False)
    for w in report.get("warnings") or []:
        console.print(f"[yellow]warning:[/] {w}", highlight=False)
    if outcome.gate is not None:
        if outcome.gate.passed:
            console.print(f"[green]gate passed[/] ({len(outcome.gate.checks)} checks)")
        else:
            console.print(f"[red]gate FAILED[/]: {len(outcome.gate.failures)} threshold(s)")
            for c in outcome.gate.failures:
                console.print(f"  [red]FAIL[/] {c.describe()}", highlight=False)
    if report.get("release"):
        console.print(f"release scored: {report['release']}", highlight=False)
    console.print(f"reports: {outcome.paths['json'].parent}", highlight=False)


def register(app: typer.Typer) -> None:
    @app.command("eval")
    def eval_command(
        dataset_dir: Annotated[
            Path,
            typer.Argument(
                help="BEIR-layout folder: corpus.jsonl or documents/, queries.jsonl, qrels/test.tsv"
            ),
        ],
        data_dir: DataDirOpt = None,
        config: ConfigOpt = None,
        out: Annotated[
            Path | None,
            typer.Option("--out", help="report folder (default <data_dir>/eval-runs/<time>)"),
        ] = None,
        answers: Annotated[
            int, typer.Option("--answers", help="answers to generate and score (a seeded sample)")
        ] = 100,
        seed: Annotated[int, typer.Option("--seed", help="seed of the answer sample")] = 0,
        top_k: Annotated[
            int, typer.Option("--top-k", help="documents ranked per query (metric depth)")
        ] = 10,
        baseline: Annotated[
            Path | None, typer.Option("--baseline", help="an earlier report.json to compare with")
        ] = None,
        gate: Annotated[
            Path | None,
            typer.Option("--gate", help="gate.toml: min, max and max_regression thresholds"),
        ] = None,
        url: Annotated[
            str | None,
            typer.Option("--url", help="evaluate a running Enclave server instead (HTTP)"),
        ] = None,
        api_key: Annotated[
            str | None,
            typer.Option("--api-key", envvar="ENCLAVE_API_KEY", help="API key for --url"),
        ] = None,
        as_key: Annotated[
            str | None,
            typer.Option(
                "--as-key",
                "--principal",
                help="evaluate in-process as this API key (name or id): only the documents "
                "its groups may read (default: as an admin, the whole index)",
            ),
        ] = None,
        no_answers: Annotated[
            bool, typer.Option("--no-answers", help="retrieval metrics only")
        ] = False,
        limit_queries: Annotated[
            int | None, typer.Option("--limit-queries", help="use only the first N queries")
        ] = None,
        threads: Annotated[
            int, typer.Option("--threads", help="parallel searches", min=1, max=32)
        ] = 2,
        no_progress: Annotated[
            bool, typer.Option("--no-progress", help="no progress bar on stderr")
        ] = False,
        release: Annotated[
            str | None,
            typer.Option(
                "--release",
                help="score this release of the index in --data-dir in place, on its own "
                "tables (r-000012, live, candidate); corpus ids map by document path",
            ),
        ] = None,
    ) -> None:
        """Evaluate retrieval (recall@k, MRR, nDCG) and answers (correctness, faithfulness,
        citations, latency) on a dataset; exit 1 when the --gate fails."""
        if not (no_answers or url):
            preload_generator_runtime()
        from eval.harness import EvalOptions, run_eval

        try:
            settings = build_settings(config, data_dir)
            reader = None
            if release is not None:
                from store.registry import Registry
                from store.releases import open_release

                rid = Registry.at(settings.index).resolve(release).id
                reader = open_release(settings.index, rid)
            outcome = run_eval(
                settings,
                EvalOptions(
                    dataset_dir=dataset_dir,
                    out_dir=out,
                    answers=answers,
                    no_answers=no_answers,
                    seed=seed,
                    top_k=top_k,
                    limit_queries=limit_queries,
                    url=url,
                    api_key=api_key,
                    as_key=as_key,
                    baseline=baseline,
                    gate=gate,
                    progress=not no_progress,
                    threads=threads,
                    command=["enclave", *redact_argv(sys.argv[1:])],
                ),
                reader=reader,
            )
        except EnclaveError as exc:
            raise fail(exc) from None
        print_summary(outcome)
        if outcome.gate is not None and not outcome.gate.passed:
            raise typer.Exit(1)
