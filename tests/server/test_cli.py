"""``enclave serve``: flags reach the settings and uvicorn runs one worker on them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import server.cli as server_cli


def _app() -> typer.Typer:
    app = typer.Typer()
    server_cli.register(app)

    @app.callback()
    def main() -> None:
        """test root"""

    return app


def test_serve_flags_reach_uvicorn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    seen: dict[str, Any] = {}

    def fake_run(app: Any, **kwargs: Any) -> None:
        seen["app"] = app
        seen.update(kwargs)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    result = CliRunner().invoke(
        _app(),
        ["serve", "--data-dir", str(tmp_path / "d"), "--host", "127.0.0.1", "--port", "8123"],
    )
    assert result.exit_code == 0, result.output
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123 and seen["workers"] == 1
    state = seen["app"].state.enclave
    assert state.settings.data_dir == tmp_path / "d"
    assert state.settings.generator.model == "bundled"  # the bundled models by default


def test_serve_rejects_bad_flags(tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["serve", "--port", "99999"])
    assert result.exit_code == 2
    result = CliRunner().invoke(_app(), ["serve", "--config", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2 and "config file not found" in result.output


def test_serve_loads_llama_cpp_before_numpy(tmp_path: Path) -> None:
    """CUDA builds of llama.cpp can crash on model load when NumPy was imported first
    (enclave/native.py): `enclave serve` starts importing llama_cpp before anything imports
    NumPy."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "started = []\n"
        "class Spy:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        started.append(name)\n"
        "sys.meta_path.insert(0, Spy())\n"
        "from typer.testing import CliRunner\n"
        "from enclave import cli\n"
        "cli._register()\n"
        f"r = CliRunner().invoke(cli.app, ['serve', '--data-dir', {str(tmp_path)!r}, "
        "'--log-level', 'nonsense'])\n"
        "assert r.exit_code == 2, r.output\n"
        "print(started.index('llama_cpp') < started.index('numpy'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "True", out.stderr
