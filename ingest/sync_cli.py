"""``enclave sync`` and ``enclave reindex`` (ingest/sync.py, ingest/reindex.py).

Exit codes: ``sync`` runs until SIGTERM or SIGINT (exit 0), or exits 2 at once on a usage
error (no folder to watch, invalid settings); ``reindex`` 0 when the new release went live
or waits by choice, 1 when files failed or the rails or the gate held it, 2 on a usage error
(no live release, another writer, invalid settings).
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from enclave.cli_options import ConfigOpt, DataDirOpt, build_settings, fail
from enclave.errors import EnclaveError
from ingest.promotion import ReleaseHooks

_HOOKS: dict[str, ReleaseHooks | None] = {"hooks": None}


def register(app: typer.Typer, hooks: ReleaseHooks | None = None) -> None:
    _HOOKS["hooks"] = hooks
    app.command("sync")(sync_command)
    app.command("reindex")(reindex_command)


def sync_command(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="folders to watch, besides sync.roots", show_default=False),
    ] = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    debounce: Annotated[
        float | None,
        typer.Option(
            "--debounce", min=0.01, help="seconds of quiet before a run (sync.debounce_s)"
        ),
    ] = None,
    rescan: Annotated[
        float | None,
        typer.Option(
            "--rescan", min=5, help="seconds between full rescans (sync.rescan_interval_s)"
        ),
    ] = None,
    no_prune: Annotated[
        bool, typer.Option("--no-prune", help="never remove documents whose files vanished")
    ] = False,
    once: Annotated[
        bool, typer.Option("--once", help="one run over the folders, then exit (cron)")
    ] = False,
) -> None:
    """Watch folders and deliver every change as a release, until stopped (SIGTERM)."""
    from ingest.sync import SyncService, sync_roots

    overrides: dict[str, Any] = {"sync": {"debounce_s": debounce, "rescan_interval_s": rescan}}
    if no_prune:
        overrides["sync"]["prune"] = False
    try:
        settings = build_settings(config, data_dir, overrides)
        roots = sync_roots(settings, paths)
    except EnclaveError as exc:
        raise fail(exc) from exc
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )  # fmt: skip
    service = SyncService(settings, roots, hooks=_HOOKS["hooks"])
    if once:
        service.run_once()
        service._save(state="stopped")
        state = service.state
        typer.echo(json.dumps({k: state.get(k) for k in ("last_run", "last_error")}))
        raise typer.Exit(0 if state.get("last_error") is None else 1)

    def stop(signum: int, frame: Any) -> None:
        service.stop.set()
        with service._wake:
            service._wake.notify_all()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    logging.getLogger("enclave.sync").info(
        "watching %s (debounce %.1f s, rescan every %.0f s)",
        ", ".join(roots), settings.sync.debounce_s, settings.sync.rescan_interval_s,
    )  # fmt: skip
    service.run_forever()


def reindex_command(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="folders to index (default: sync.roots, else the last ingest's)",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    embedder: Annotated[
        str | None, typer.Option("--embedder", help="embedder.model of the new index")
    ] = None,
    chunk_tokens: Annotated[
        int | None, typer.Option("--chunk-tokens", min=16, help="target chunk size in tokens")
    ] = None,
    chunk_overlap: Annotated[
        int | None, typer.Option("--chunk-overlap", min=0, help="overlap between chunks")
    ] = None,
    no_promote: Annotated[
        bool,
        typer.Option("--no-promote", help="leave the new release a candidate (manual promote)"),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="print one JSON summary object on stdout")
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option("--progress/--no-progress", help="progress lines (with an ETA) on stderr"),
    ] = None,
) -> None:
    """Build a complete new index (new embedder, chunking or parser settings) beside the live
    one, served only once promoted; rollback returns to the old one."""
    from ingest.cli_output import print_summary, progress_kind
    from ingest.reindex import reindex

    overrides: dict[str, Any] = {
        "embedder": {"model": embedder},
        "ingest": {"chunk_tokens": chunk_tokens, "chunk_overlap": chunk_overlap},
    }
    if no_promote:
        overrides["release"] = {"auto_promote": False}
    try:
        settings = build_settings(config, data_dir, overrides)
        show = progress_kind(progress, as_json=as_json, tty=sys.stderr.isatty())
        out = reindex(settings, paths, hooks=_HOOKS["hooks"], progress=show)
    except EnclaveError as exc:
        raise fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(out))
    else:
        print_summary(out)
        info = out["reindex"]
        typer.echo(
            f"re-indexed into table set {info['tables']}: embedder {info['from']['embedder']}"
            f" -> {info['to']['embedder']}"
        )
    blocked = bool((out.get("release") or {}).get("blocked"))
    raise typer.Exit(0 if not out["failed"] and not blocked else 1)
