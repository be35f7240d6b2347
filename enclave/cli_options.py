"""What every command line shares: the ``--config`` and ``--data-dir`` options, settings built
from flags, and errors turned into exit codes. Imports no package CLI (each of them imports
this module), so the command modules form no cycle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from enclave.errors import EnclaveError
from enclave.settings import Settings, load_settings

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


JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]
