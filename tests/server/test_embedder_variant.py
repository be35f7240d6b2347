"""The server embeds questions with the variant its index was built with: under
``embedder.variant = "auto"`` it follows the index; an explicit other variant stops start-up
with a message that says how to proceed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import models.embedder
import models.loading
from enclave.security.services import SecurityServices
from enclave.settings import EmbedderSettings, Settings, load_settings
from ingest.pipeline import ingest_paths
from models.generator import FakeGenerator
from server.state import AppState


def _settings(data: Path, variant: str) -> Settings:
    return load_settings(
        overrides={
            "data_dir": str(data),
            "ingest": {"workers": 1},
            "embedder": {"variant": variant},
            "generator": {"model": "fake"},
        }
    )


@pytest.fixture(scope="module")
def fp32_data(tmp_path_factory: pytest.TempPathFactory, fp32_embedder: Any) -> Path:
    root = tmp_path_factory.mktemp("fp32-index")
    (root / "docs").mkdir()
    (root / "docs" / "leave.txt").write_text("Every employee receives 27 days of leave.", "utf-8")
    ingest_paths(_settings(root / "data", "fp32"), [root / "docs"], embedder=fp32_embedder)
    return root / "data"


def _start(settings: Settings) -> AppState:
    state = AppState(settings, SecurityServices.from_settings(settings), generator=FakeGenerator())
    state.start_loading()
    assert state.wait_loaded(120) or state.error is not None
    return state


def test_an_explicit_other_variant_stops_start_up(fp32_data: Path, bundled_embedder: Any) -> None:
    state = _start(_settings(fp32_data, "int8"))  # int8 loads from the run's build cache
    try:
        assert not state.ready and state.error is not None
        assert "built with embedder" in state.error and "(fp32 variant)" in state.error
        assert "ENCLAVE_EMBEDDER__VARIANT=fp32" in state.error
    finally:
        state.close()
        state.security.close()


def test_auto_follows_the_index(
    fp32_data: Path, fp32_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[EmbedderSettings] = []

    def load(settings: EmbedderSettings) -> Any:
        loads.append(settings)
        return fp32_embedder

    monkeypatch.setattr(models.loading, "load_embedder", load)
    state = _start(_settings(fp32_data, "auto"))
    try:
        assert state.error is None and state.ready
        assert [s.variant for s in loads] == ["fp32"]
    finally:
        state.close()
        state.security.close()
