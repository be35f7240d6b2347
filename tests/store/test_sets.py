"""Table sets and embedder variants: a set records the variant it was built with, and a server
that follows a release into it loads that variant (store/sets.py, models/variants.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from enclave.settings import Settings
from ingest.embed import build_settings
from models.embedder import HashEmbedder
from models.variants import INT8_SUFFIX
from store.sets import set_dir, set_location


def test_set_location_is_a_child_of_the_index(tmp_path: Path) -> None:
    root = tmp_path / "lancedb"
    assert set_location(root, None).uri == str(root.absolute())
    child = set_location(root, "t-000003")
    assert child.uri == str(root.absolute() / "sets" / "t-000003")
    assert set_dir(root, "t-000003") == root.absolute() / "sets" / "t-000003"
    with pytest.raises(ValueError, match="not a table set id"):
        set_location(root, "../escape")


def test_build_settings_record_the_variant_loaded(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, embedder={"model": "bundled", "variant": "auto"})
    assert build_settings(settings)["embedder"]["variant"] == "auto"  # type: ignore[index]
    int8 = build_settings(settings, "all-MiniLM-L6-v2@abc" + INT8_SUFFIX)
    assert int8["embedder"]["variant"] == "int8"  # type: ignore[index]
    fp32 = build_settings(settings, "all-MiniLM-L6-v2@abc")
    assert fp32["embedder"]["variant"] == "fp32"  # type: ignore[index]
    assert "cache_dir" not in fp32["embedder"]  # type: ignore[operator]
    hashed = build_settings(settings, "hash-32")
    assert hashed["embedder"]["variant"] == "auto"  # type: ignore[index]


class _View:
    def __init__(self, name: str, build: dict[str, Any]) -> None:
        self.embedder_name = name
        self.meta = {"embedder": name, "build": {"embedder": build}}
        self.release_id = "r-000002"


def test_server_loads_the_variant_the_set_records(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A set recorded under ``auto`` (or any variant setting) is loaded in the variant its
    embedder name records: the questions and the vectors share a variant."""
    import models.embedder
    import models.loading
    from server.state import Embedders

    name = "all-MiniLM-L6-v2@abc" + INT8_SUFFIX
    seen: list[Any] = []

    def fake_load(spec: Any) -> HashEmbedder:
        seen.append(spec)
        emb = HashEmbedder()
        emb.name = name
        return emb

    monkeypatch.setattr(models.loading, "load_embedder", fake_load)
    settings = Settings(data_dir=tmp_path, embedder={"model": "hash", "device": "cpu"})
    embedders = Embedders(settings)
    view = _View(name, {"model": "bundled", "variant": "auto", "batch_size": 8})
    assert embedders.ready_for(view, wait=True)  # type: ignore[arg-type]
    assert seen[0].variant == "int8" and seen[0].model == "bundled"
    assert embedders.get(name) is not None


def test_reindex_keeps_the_live_variant_of_the_same_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import models.embedder
    import models.loading
    from ingest.reindex import _keep_variant

    monkeypatch.setattr(
        models.embedder, "model_source", lambda s: (tmp_path, "m", "m@abc" if s else "")
    )
    auto = Settings(data_dir=tmp_path, embedder={"model": "bundled"})
    assert _keep_variant(auto, "m@abc").embedder.variant == "fp32"
    assert _keep_variant(auto, "m@abc" + INT8_SUFFIX).embedder.variant == "int8"
    assert _keep_variant(auto, "other@def").embedder.variant == "auto"  # another model
    explicit = Settings(data_dir=tmp_path, embedder={"model": "bundled", "variant": "int8"})
    assert _keep_variant(explicit, "m@abc").embedder.variant == "int8"
