"""An index is bound to one embedder variant: an explicit other variant is refused with a
message that says how to proceed, and ``variant = "auto"`` follows the index (so indexes built
with fp32 keep working under the int8 default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import models.embedder
import models.loading
from enclave.errors import EmbedderMismatchError
from enclave.settings import EmbedderSettings, Settings, load_settings
from ingest.pipeline import ingest_paths
from store.db import Store
from tests.ingest.helpers import write_text_corpus


def _settings(data: Path, variant: str = "auto") -> Settings:
    return load_settings(
        overrides={
            "data_dir": str(data),
            "ingest": {"workers": 1},
            "embedder": {"variant": variant},
        }
    )


@pytest.fixture
def fp32_index(tmp_path: Path, fp32_embedder: Any) -> tuple[Path, Path]:
    docs = tmp_path / "docs"
    write_text_corpus(docs, 2)
    data = tmp_path / "data"
    ingest_paths(_settings(data, "fp32"), [docs], embedder=fp32_embedder)
    assert Store(data / "lancedb").embedder_name == fp32_embedder.name
    return data, docs


def test_int8_on_an_fp32_index_is_refused(
    fp32_index: tuple[Path, Path], bundled_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, docs = fp32_index
    (docs / "new.txt").write_text("a new document about the harbor lantern", "utf-8")
    loads: list[EmbedderSettings] = []
    monkeypatch.setattr(models.loading, "load_embedder", lambda s: loads.append(s))
    # refused before anything is loaded or parsed
    with pytest.raises(EmbedderMismatchError) as refused:
        ingest_paths(_settings(data, "int8"), [docs])
    message = refused.value.message
    assert "built with embedder" in message and "(fp32 variant)" in message
    assert "(int8 variant)" in message and "ENCLAVE_EMBEDDER__VARIANT=fp32" in message
    assert "--data-dir NEW" in message
    assert loads == []
    # an int8 embedder handed in is refused too, and nothing is written
    with pytest.raises(EmbedderMismatchError, match="fp32 variant"):
        ingest_paths(_settings(data), [docs], embedder=bundled_embedder)
    store = Store(data / "lancedb")
    assert {d.embedder for d in store.list_documents()} == {store.embedder_name}


def test_fp32_on_an_int8_index_is_refused(tmp_path: Path, bundled_embedder: Any) -> None:
    docs, data = tmp_path / "docs", tmp_path / "data"
    write_text_corpus(docs, 1)
    ingest_paths(_settings(data), [docs], embedder=bundled_embedder)
    assert Store(data / "lancedb").embedder_name == bundled_embedder.name
    (docs / "doc000.txt").write_text("changed", "utf-8")
    with pytest.raises(EmbedderMismatchError) as refused:
        ingest_paths(_settings(data, "fp32"), [docs])
    assert "(int8 variant)" in refused.value.message
    assert "ENCLAVE_EMBEDDER__VARIANT=int8" in refused.value.message


def test_auto_follows_the_index(
    fp32_index: tuple[Path, Path], fp32_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, docs = fp32_index
    loads: list[EmbedderSettings] = []

    def load(settings: EmbedderSettings) -> Any:
        loads.append(settings)
        return fp32_embedder

    monkeypatch.setattr(models.loading, "load_embedder", load)
    # nothing changed: decided without loading an embedder
    assert ingest_paths(_settings(data), [docs]).unchanged == 2
    assert loads == []
    (docs / "new.txt").write_text("a new document about the harbor lantern", "utf-8")
    summary = ingest_paths(_settings(data), [docs])
    assert summary.ingested == 1 and summary.failed == []
    assert [s.variant for s in loads] == ["fp32"]
    # a new index under auto gets the default
    fresh = data.parent / "fresh"
    ingest_paths(_settings(fresh), [docs])
    assert loads[-1].variant == "auto"
    assert Store(fresh / "lancedb").embedder_name == fp32_embedder.name
