"""The ``enclave`` command. Each package registers its own subcommands; heavy imports happen
inside the commands, so ``enclave --help`` is instant.

Exit codes: 0 success, 1 partial failure (some files failed, a gate failed), 2 usage error.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from enclave.errors import EnclaveError
from enclave.offline import enforce_offline
from enclave.settings import Settings, load_settings

app = typer.Typer(
    name="enclave",
    help="Enclave: a local RAG server over your documents. Nothing leaves the machine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="enclave.toml to read (default: $ENCLAVE_CONFIG or ./enclave.toml)"
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", "-d", help="data directory (default: $ENCLAVE_DATA_DIR or ./enclave-data)"
    ),
]


def build_settings(
    config: Path | None, data_dir: Path | None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Settings for one command: flags > environment > enclave.toml > defaults."""
    merged: dict[str, Any] = dict(overrides or {})
    if data_dir is not None:
        merged["data_dir"] = data_dir
    return load_settings(config, merged)


def fail(exc: EnclaveError) -> typer.Exit:
    typer.echo(f"error: {exc.message}", err=True)
    return typer.Exit(exc.exit_code)


def _register() -> None:
    from enclave.security.cli import register as register_security
    from eval.cli import register as register_eval
    from ingest.cli import register as register_ingest
    from models.cli import register as register_models
    from server.cli import register as register_server

    register_ingest(app)
    register_server(app)
    register_models(app)
    register_eval(app)
    register_security(app)


def main(argv: list[str] | None = None) -> None:
    enforce_offline()
    _register()
    try:
        app(args=argv, standalone_mode=True)
    except EnclaveError as exc:  # pragma: no cover - commands catch their own
        typer.echo(f"error: {exc.message}", err=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
