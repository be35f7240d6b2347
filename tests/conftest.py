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


#: (variable, its value before, the temporary dir) for each user directory made temporary
_USER_DIRS: list[tuple[str, str | None, str]] = []


def pytest_configure(config: pytest.Config) -> None:
    """The user's config directory (where the audit key lives by default) and cache directory
    (where the int8 embedder is built by default) are temporary ones for the whole run, from
    before collection on: modules that build an app at import time and module-scoped servers
    included, no test reads or writes the real ones. The int8 embedder is built once per run,
    by the first test that loads it."""
    for variable, prefix in (("XDG_CONFIG_HOME", "config"), ("XDG_CACHE_HOME", "cache")):
        created = tempfile.mkdtemp(prefix=f"enclave-test-{prefix}-")
        _USER_DIRS.append((variable, os.environ.get(variable), created))
        os.environ[variable] = created


def pytest_unconfigure(config: pytest.Config) -> None:
    while _USER_DIRS:
        variable, previous, created = _USER_DIRS.pop()
        shutil.rmtree(created, ignore_errors=True)
        if previous is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = previous


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
    """The real bundled all-MiniLM-L6-v2 in the default variant for a new index (int8 through
    ONNX Runtime), loaded once for the whole run."""
    from enclave.settings import EmbedderSettings
    from models.loading import load_embedder

    return load_embedder(EmbedderSettings())


@pytest.fixture(scope="session")
def fp32_embedder() -> Any:
    """The real bundled all-MiniLM-L6-v2 in its fp32 variant (sentence-transformers), loaded
    once for the whole run."""
    from enclave.settings import EmbedderSettings
    from models.loading import load_embedder

    return load_embedder(EmbedderSettings(variant="fp32"))


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "enclave-data"
    d.mkdir()
    return d
