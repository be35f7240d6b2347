"""Shared fixtures. Real components by default: the bundled embedder (loaded once per session),
real LanceDB in a temporary folder. No test reads data outside its own folders, nor the user's home.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from enclave.offline import enforce_offline

enforce_offline()


_CONFIG_HOME: list[tuple[str | None, str]] = []  # (the variable before, the temporary dir)


def pytest_configure(config: pytest.Config) -> None:
    """The user's config directory (where the audit key lives by default) is a temporary one
    for the whole run, from before collection on: modules that build an app at import time
    and module-scoped servers included, no test reads or writes the real one."""
    created = tempfile.mkdtemp(prefix="enclave-test-config-")
    _CONFIG_HOME.append((os.environ.get("XDG_CONFIG_HOME"), created))
    os.environ["XDG_CONFIG_HOME"] = created


def pytest_unconfigure(config: pytest.Config) -> None:
    if not _CONFIG_HOME:
        return
    previous, created = _CONFIG_HOME.pop()
    shutil.rmtree(created, ignore_errors=True)
    if previous is None:
        os.environ.pop("XDG_CONFIG_HOME", None)
    else:
        os.environ["XDG_CONFIG_HOME"] = previous


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees the developer's ENCLAVE_* variables, enclave.toml or home directory."""
    for key in list(os.environ):
        if key.startswith("ENCLAVE_"):
            monkeypatch.delenv(key, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture(scope="session")
def bundled_embedder() -> Any:
    """The real bundled all-MiniLM-L6-v2, loaded once for the whole run."""
    from enclave.settings import EmbedderSettings
    from models.embedder import load_embedder

    return load_embedder(EmbedderSettings())


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "enclave-data"
    d.mkdir()
    return d
