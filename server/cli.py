"""``enclave serve``: the HTTP API and web UI on one uvicorn worker."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from enclave.cli_options import ConfigOpt, DataDirOpt, build_settings, fail
from enclave.errors import EnclaveError
from enclave.native import preload_generator_runtime
from enclave.settings import Settings


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)


def serve_command(
    data_dir: DataDirOpt = None,
    config: ConfigOpt = None,
    host: Annotated[
        str | None,
        typer.Option("--host", help="address to listen on (default 127.0.0.1: this machine only)"),
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", "-p", min=1, max=65535, help="port (default 8000)")
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="critical, error, warning, info or debug")
    ] = "info",
    no_auth: Annotated[
        bool,
        typer.Option(
            "--no-auth",
            help="serve without API keys (everyone is an admin); refused unless the host is "
            "a loopback address",
        ),
    ] = False,
) -> None:
    """Serve the OpenAI-compatible API and the web UI over the index in the data directory.

    Loads the configured models (the bundled ones by default) at startup; GET /readyz
    answers 200 once they are loaded. Every /v1 request needs 'Authorization: Bearer <key>'
    (create keys with `enclave keys create`) unless --no-auth is given."""
    preload_generator_runtime()
    overrides: dict[str, object] = {"server": {"host": host, "port": port}}
    if no_auth:
        overrides["security"] = {"auth": False}
    try:
        settings = build_settings(config, data_dir, overrides)
    except EnclaveError as exc:
        raise fail(exc) from exc
    level = log_level.lower()
    if level not in {"critical", "error", "warning", "info", "debug"}:
        typer.echo(f"error: unknown log level {log_level!r}", err=True)
        raise typer.Exit(2)
    run_server(settings, log_level=level)


def run_server(settings: Settings, *, log_level: str = "info") -> None:
    """Run uvicorn (one worker: the models are loaded once, in this process)."""
    import uvicorn

    from server.app import create_app

    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        app = create_app(settings)
    except EnclaveError as exc:  # bad policy, damaged audit log, --no-auth off loopback
        raise fail(exc) from exc
    if not settings.security.auth:
        typer.echo("warning: authentication is off (--no-auth): every caller is an admin", err=True)
    typer.echo(
        f"Enclave serving {settings.store.uri or settings.data_dir} on "
        f"http://{settings.server.host}:"
        f"{settings.server.port} (API under /v1, readiness at /readyz)",
        err=True,
    )
    uvicorn.run(
        app,
        host=settings.server.host,
        port=settings.server.port,
        workers=1,
        log_level=log_level,
        access_log=log_level == "debug",
    )
