"""The ``enclave`` command. Each package registers its own subcommands (``register(app)``);
the options they share come from :mod:`enclave.cli_options`, which imports no package CLI.
Heavy imports happen inside the commands, so ``enclave --help`` is instant.

Exit codes: 0 success, 1 partial failure (some files failed, a gate failed), 2 usage error.
"""

from __future__ import annotations

import sys

import typer

from enclave.errors import EnclaveError
from enclave.offline import enforce_offline

app = typer.Typer(
    name="enclave",
    help="Enclave: a local RAG server over your documents. Nothing leaves the machine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    from enclave.security.cli import register as register_security
    from eval.cli import register as register_eval
    from eval.release_gate import release_hooks
    from ingest.cli import register as register_ingest
    from models.cli import register as register_models
    from server.cli import register as register_server

    # the release commands get the gate and the report scrubber from eval/, above ingest/
    register_ingest(app, release_hooks())
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
