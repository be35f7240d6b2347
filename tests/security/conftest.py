"""Fixtures for the security tests: a CLI app with only the security commands registered."""

from __future__ import annotations

import pytest
import typer

from enclave.security.cli import register


@pytest.fixture
def cli_app() -> typer.Typer:
    app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)
    register(app)
    return app
