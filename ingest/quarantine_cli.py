"""``enclave quarantine list|release|retry`` (ingest/quarantine.py).

Exit codes: 0 done; 1 a document is still quarantined after ``retry``, some file failed, or
the release made was held by the rails or rejected by the gate; 2 usage error (unknown
document, not quarantined, no index, another writer holds the lock).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from enclave.cli_options import ConfigOpt, DataDirOpt, JsonOpt, build_settings, fail
from enclave.errors import EnclaveError
from ingest.promotion import ReleaseHooks

DocsArg = Annotated[
    list[str] | None, typer.Argument(help="document ids or paths", show_default=False)
]
AllOpt = Annotated[bool, typer.Option("--all", help="every quarantined document")]


def register(app: typer.Typer, hooks: ReleaseHooks | None = None) -> None:
    quarantine = typer.Typer(
        help="Documents kept out of the index for their parse quality: list, release, retry.",
        no_args_is_help=True,
    )
    app.add_typer(quarantine, name="quarantine")

    @quarantine.command("list")
    def list_command(
        release: Annotated[
            str,
            typer.Option("--release", help="live (default), head, or a release id"),
        ] = "live",
        data_dir: DataDirOpt = None,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """The quarantined documents with their reason and score."""
        from ingest.quarantine import list_quarantined

        try:
            data = list_quarantined(build_settings(config, data_dir), release)
        except EnclaveError as exc:
            raise fail(exc) from exc
        if as_json:
            typer.echo(json.dumps(data))
            return
        _print_list(data)

    @quarantine.command("release")
    def release_command(
        docs: DocsArg = None,
        every: AllOpt = False,
        data_dir: DataDirOpt = None,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Let documents in despite their score (kept for as long as the file is unchanged);
        makes a candidate release, promoted like an ingest's."""
        _reparse(docs or [], every, data_dir, config, as_json, admit=True, hooks=hooks)

    @quarantine.command("retry")
    def retry_command(
        docs: DocsArg = None,
        every: AllOpt = False,
        data_dir: DataDirOpt = None,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Parse documents again now (after installing Tesseract, say) and score them again;
        makes a candidate release, promoted like an ingest's."""
        _reparse(docs or [], every, data_dir, config, as_json, admit=False, hooks=hooks)


def _reparse(
    refs: list[str],
    every: bool,
    data_dir: Any,
    config: Any,
    as_json: bool,
    *,
    admit: bool,
    hooks: ReleaseHooks | None,
) -> None:
    from ingest.quarantine import reparse, resolve

    try:
        settings = build_settings(config, data_dir)
        docs = resolve(settings, refs, every=every)
        if not docs:
            data: dict[str, Any] = {"documents": 0, "summary": None}
        else:
            summary = reparse(settings, docs, admit=admit, hooks=hooks)
            data = {"documents": len(docs), "summary": summary.to_dict()}
    except EnclaveError as exc:
        raise fail(exc) from exc
    s = data["summary"]
    code = 0
    if s is not None and (s["failed"] or s["quarantined"] or (s["release"] or {}).get("blocked")):
        code = 1
    if as_json:
        typer.echo(json.dumps(data))
        raise typer.Exit(code)
    if s is None:
        typer.echo("no quarantined documents")
        raise typer.Exit(0)
    done = s["ingested"] + s["updated"]
    typer.echo(f"{done} of {data['documents']} documents indexed")
    for q in s["quarantined"]:
        typer.echo(f"still quarantined: {q['path']}: {q['reason']}")
    for f in s["failed"]:
        typer.echo(f"failed: {f['path']}: {f['error']}")
    rel = s.get("release") or {}
    if rel.get("id"):
        state = "live" if rel.get("promoted") else rel.get("state")
        typer.echo(f"release {rel['id']}: {state}")
        if rel.get("reason") and not rel.get("promoted"):
            typer.echo(str(rel["reason"]))
    raise typer.Exit(code)


def _print_list(data: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    rows = data["quarantined"]
    if not rows:
        console.print(f"no quarantined documents in release {data['release'] or '(none)'}")
        return
    table = Table(title=f"Quarantined documents ({data['release']})", show_header=True)
    table.add_column("id")
    table.add_column("path", overflow="fold")
    table.add_column("score", justify="right")
    table.add_column("reason", overflow="fold")
    for r in rows:
        score = "-" if r["score"] is None else f"{r['score']:.2f}"
        table.add_row(r["id"], r["path"], score, r["reason"])
    console.print(table)
