"""``enclave ingest`` and ``enclave status`` (and, through ingest/release_cli.py, the
release commands).

Exit codes: 0 all files ingested (or unchanged) and the release step went through; 1 some
files failed (listed with reasons), or the run's candidate was held by the rails or rejected
by the gate (the reasons and how to force it are printed); 2 usage error (missing path, bad
flag or group, embedder mismatch, invalid settings, another writer busy).

stdout holds only the summary (one JSON object with ``--json``); progress goes to stderr
(:func:`ingest.cli_output.progress_kind`, ingest/progress.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from enclave.cli_options import ConfigOpt, DataDirOpt, build_settings, fail
from enclave.errors import EnclaveError
from enclave.settings import Settings
from ingest.cli_output import print_summary, progress_kind
from ingest.promotion import ReleaseHooks

#: lent by the command-line root (enclave/cli.py): the gate and the report scrubber
_HOOKS: dict[str, ReleaseHooks | None] = {"hooks": None}


def register(app: typer.Typer, hooks: ReleaseHooks | None = None) -> None:
    from ingest.index_cli import register as register_index
    from ingest.quarantine_cli import register as register_quarantine
    from ingest.release_cli import register as register_releases
    from ingest.sync_cli import register as register_sync

    _HOOKS["hooks"] = hooks
    app.command("ingest")(ingest_command)
    app.command("status")(status_command)
    register_releases(app, hooks)
    register_index(app)
    register_sync(app, hooks)
    register_quarantine(app, hooks)


def ingest_command(
    paths: Annotated[
        list[Path], typer.Argument(help="files and folders to ingest", show_default=False)
    ],
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print one JSON summary object on stdout")
    ] = False,
    prune: Annotated[
        bool,
        typer.Option("--prune", help="delete documents under PATH whose files no longer exist"),
    ] = False,
    include: Annotated[
        list[str] | None,
        typer.Option("--include", help="only files matching this glob (repeatable)"),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", help="skip files and folders matching this glob (repeatable)"),
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="parser processes (default: cores)")
    ] = None,
    chunk_tokens: Annotated[
        int | None, typer.Option("--chunk-tokens", min=16, help="target chunk size in tokens")
    ] = None,
    chunk_overlap: Annotated[
        int | None, typer.Option("--chunk-overlap", min=0, help="overlap between chunks")
    ] = None,
    groups: Annotated[
        str | None,
        typer.Option("--groups", help="comma-separated groups allowed to read these documents"),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(
            "--policy", help="TOML ACL policy: path globs -> groups (security.policy_file)"
        ),
    ] = None,
    follow_links: Annotated[
        bool,
        typer.Option(
            "--follow-links",
            help="follow symbolic links to files and folders outside PATH "
            "(ingest.follow_external_links); by default they are skipped and listed",
        ),
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="JSON progress lines on stderr (default: a bar on a terminal without --json, "
            "lines when stderr is not a terminal)",
            show_default=False,
        ),
    ] = None,
    redact_pii: Annotated[
        bool,
        typer.Option(
            "--redact-pii",
            help="replace e-mails, phones, IBANs, cards and SSNs before embedding "
            "(security.redact_pii)",
        ),
    ] = False,
    engine: Annotated[
        str,
        typer.Option(
            "--engine",
            help="local (this machine) or ray (parse, chunk and embed on a Ray cluster; "
            "needs enclave-rag[ray])",
        ),
    ] = "local",
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="the Ray cluster for --engine ray (host:port or ray://...); default: a local "
            "cluster started for the run",
        ),
    ] = None,
) -> None:
    """Ingest files and folders into the index (incremental: unchanged files are skipped)."""
    from ingest.groups import parse_groups
    from ingest.pipeline import ingest_paths

    overrides: dict[str, Any] = {
        "ingest": {
            "workers": workers,
            "chunk_tokens": chunk_tokens,
            "chunk_overlap": chunk_overlap,
        }
    }
    if follow_links:
        overrides["ingest"]["follow_external_links"] = True
    security: dict[str, Any] = {}
    if policy is not None:
        security["policy_file"] = policy
    if redact_pii:
        security["redact_pii"] = True
    if security:
        overrides["security"] = security
    try:
        settings = build_settings(config, data_dir, overrides)
        if include:
            settings.ingest.include = [*settings.ingest.include, *include]
        if exclude:
            settings.ingest.exclude = [*settings.ingest.exclude, *exclude]
        checked = parse_groups(groups)
        show = progress_kind(progress, as_json=as_json, tty=sys.stderr.isatty())
        summary = ingest_paths(
            settings,
            paths,
            prune=prune,
            groups=checked,
            progress=show,
            hooks=_HOOKS["hooks"],
            engine=engine,
            ray_address=ray_address,
        )
    except EnclaveError as exc:
        raise fail(exc) from exc
    _warn_drift(settings)
    if as_json:
        typer.echo(json.dumps(summary.to_dict()))
    else:
        print_summary(summary.to_dict())
    raise typer.Exit(0 if summary.ok and not summary.release_blocked else 1)


def _warn_drift(settings: Settings) -> None:
    """Chunking or parse settings that differ from what the live table set was built with
    cut only the files this run re-read: say so on stderr, and how to rebuild everything."""
    from ingest.reindex import build_drift

    try:
        drift = build_drift(settings)
    except Exception:  # a warning never fails a run that went through
        return
    if drift is not None:
        typer.echo(
            f"warning: the live index was built with other settings ({'; '.join(drift.changes)}):"
            " only new and changed files used these; `enclave reindex` rebuilds every document"
            " with them (docs/sync.md)",
            err=True,
        )


def status_command(
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="print one JSON object on stdout")
    ] = False,
) -> None:
    """Show what the live release holds (documents, chunks, failures), the live and
    candidate releases, the embedder, the index size and the last ingest."""
    try:
        settings = build_settings(config, data_dir)
        report = index_status(settings.data_dir, settings.index)
    except EnclaveError as exc:
        raise fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(report))
        return
    _print_status(report)


def index_status(data_dir: Path, location: Any = None) -> dict[str, Any]:
    """The ``enclave status`` report of the index in ``data_dir`` (or at ``location``, a
    store.location.IndexLocation: ``store.uri``)."""
    from enclave.errors import UsageError
    from ingest.quarantine import quarantine_row
    from ingest.summary import read_last_ingest
    from models.variants import variant_of
    from store.db import Store
    from store.location import describe, locate
    from store.records import STATUS_EMPTY, STATUS_FAILED, STATUS_OK, STATUS_QUARANTINED
    from store.releases import Releases

    location = locate(location if location is not None else Path(data_dir) / "lancedb")
    if not location.is_remote and not location.local_path.is_dir():
        raise UsageError(f"no index in {data_dir}: run `enclave ingest PATH --data-dir {data_dir}`")
    location.check()
    store = Store(location)
    releases = Releases(store)
    view = releases.live_view()
    docs = view.list_documents()
    counts = {
        s: sum(1 for d in docs if d.status == s)
        for s in (STATUS_OK, STATUS_EMPTY, STATUS_FAILED, STATUS_QUARANTINED)
    }
    failures = [
        {"path": d.path, "status": d.status, "error": d.error}
        for d in docs
        if d.status not in (STATUS_OK, STATUS_QUARANTINED)
    ]
    quarantined = [quarantine_row(d, signals=False) for d in docs if d.status == STATUS_QUARANTINED]
    truncated = [
        {"path": d.path, "reason": d.error} for d in docs if d.status == STATUS_OK and d.error
    ]
    from ingest.sync import read_sync_state

    last = read_last_ingest(data_dir)
    ingested = [d.ingested_at for d in docs if d.ingested_at]
    meta = getattr(view, "meta", None) or store.meta()
    live = releases.registry.live()
    return {
        "data_dir": str(data_dir),
        "index": dict(describe(location)),
        "releases": release_status(releases),
        "documents": len(docs),
        "documents_by_status": counts,
        "chunks": view.count_chunks(),
        "failures": failures,
        "quarantined": quarantined,
        "truncated": truncated,
        "embedder": {
            "name": meta.get("embedder"),
            "dimension": meta.get("dimension"),
            "variant": variant_of(str(meta["embedder"])) if meta.get("embedder") else None,
        },
        "tables": live.tables if live else None,
        "build": meta.get("build"),
        "index_bytes": store.size_bytes(),
        "last_ingest": last["finished_at"] if last else (max(ingested) if ingested else None),
        "last_summary": last["summary"] if last else None,
        "sync": read_sync_state(data_dir),
    }


def release_status(releases: Any) -> dict[str, Any]:
    """The live release and the newest candidate waiting (held, rejected or pending)."""
    registry = releases.registry
    live = registry.live()
    records = registry.records()
    by_id = {r.id: r for r in records}
    pending = [r for r in records if r.state in ("candidate", "rejected")]
    out: dict[str, Any] = {"live": None, "candidate": None, "count": len(records)}
    if live is not None:
        rec = by_id.get(live.release)
        out["live"] = {
            "id": live.release,
            "promoted_at": live.promoted_at,
            "promoted_by": live.promoted_by,
            "forced": bool(rec and rec.forced),
        }
    if pending:
        rec = pending[-1]
        out["candidate"] = {
            "id": rec.id,
            "state": rec.state,
            "created_at": rec.created_at,
            "reason": rec.held or ("gate failed" if rec.state == "rejected" else None),
        }
    return out


def _print_status(r: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"Enclave index: {r['data_dir']}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    by = r["documents_by_status"]
    table.add_row(
        "documents",
        f"{r['documents']} (ok {by['ok']}, empty {by['empty']}, failed {by['failed']}, "
        f"quarantined {by.get('quarantined', 0)})",
    )
    table.add_row("chunks", str(r["chunks"]))
    rel = r.get("releases") or {}
    live, cand = rel.get("live"), rel.get("candidate")
    table.add_row(
        "live release", f"{live['id']} (promoted {live['promoted_at']})" if live else "none"
    )
    if cand:
        why = f": {cand['reason']}" if cand.get("reason") else ""
        table.add_row("candidate", f"{cand['id']} ({cand['state']}){why}")
    emb = r["embedder"]
    variant = f", {emb['variant']}" if emb.get("variant") else ""
    table.add_row(
        "embedder",
        f"{emb['name']} (dimension {emb['dimension']}{variant})" if emb["name"] else "-",
    )
    table.add_row("index size", _human_bytes(r["index_bytes"]))
    table.add_row("last ingest", r["last_ingest"] or "never")
    sync = r.get("sync")
    if sync:
        table.add_row("sync", _sync_line(sync))
    console.print(table)
    if r["failures"]:
        errors = Table(title="Documents without chunks", show_header=True)
        errors.add_column("path", overflow="fold")
        errors.add_column("status")
        errors.add_column("reason", overflow="fold")
        for f in r["failures"]:
            errors.add_row(f["path"], f["status"], f["error"])
        console.print(errors)
    if r.get("quarantined"):
        quarantined = Table(
            title="Quarantined (enclave quarantine list | release | retry)", show_header=True
        )
        quarantined.add_column("path", overflow="fold")
        quarantined.add_column("score", justify="right")
        quarantined.add_column("reason", overflow="fold")
        for q in r["quarantined"]:
            score = "-" if q["score"] is None else f"{q['score']:.2f}"
            quarantined.add_row(q["path"], score, q["reason"])
        console.print(quarantined)
    if r.get("truncated"):
        part = Table(title="Indexed in part", show_header=True)
        part.add_column("path", overflow="fold")
        part.add_column("reason", overflow="fold")
        for t in r["truncated"]:
            part.add_row(t["path"], t["reason"])
        console.print(part)


def _sync_line(s: dict[str, Any]) -> str:
    """``enclave sync``'s state in one line."""
    if not s.get("running"):
        return f"not running (last heartbeat {s.get('heartbeat_at') or '?'})"
    parts = [f"{s.get('state')}, watcher {s.get('watcher')}, {s.get('pending_changes', 0)} "
             "pending"]  # fmt: skip
    run = s.get("last_run") or {}
    if run:
        parts.append(f"last run {run.get('finished_at')} ({run.get('seconds')} s)")
    rel = s.get("last_release") or {}
    if rel:
        parts.append(f"last release {rel.get('id')} ({rel.get('state')})")
    err = s.get("last_error") or {}
    if s.get("state") == "error" and err:
        parts.append(f"error: {err.get('message')}")
    if s.get("waiting_for"):
        parts.append(f"waiting: {s['waiting_for']}")
    job = s.get("reindex") or {}
    if job:
        line = f"re-index {job.get('state')} ({', '.join(job.get('changes') or [])})"
        done = job.get("progress") or {}
        if job.get("state") == "running" and done:
            eta = done.get("eta_s")
            line += f", {done.get('files_done')}/{done.get('files_total')} files"
            line += f", ETA {eta:.0f} s" if isinstance(eta, int | float) else ""
        elif job.get("release"):
            line += f" as {job['release']}"
        parts.append(line)
    return "; ".join(parts)


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def main() -> None:
    """``python -m ingest.cli``: the ingest and status commands alone."""
    from enclave.offline import enforce_offline

    enforce_offline()
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True)
    register(app)
    app()


if __name__ == "__main__":
    main()
