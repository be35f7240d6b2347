from __future__ import annotations

from pathlib import Path

import pytest

from enclave.errors import ConfigError
from enclave.settings import load_settings


def test_precedence_flags_env_toml_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "enclave.toml"
    cfg.write_text('data_dir = "from-toml"\n[ingest]\nchunk_tokens = 111\nchunk_overlap = 7\n')
    s = load_settings(cfg)
    assert s.data_dir == Path("from-toml")
    assert s.ingest.chunk_tokens == 111
    monkeypatch.setenv("ENCLAVE_INGEST__CHUNK_TOKENS", "222")
    s = load_settings(cfg)
    assert s.ingest.chunk_tokens == 222
    assert s.ingest.chunk_overlap == 7
    s = load_settings(cfg, {"ingest": {"chunk_tokens": 333, "chunk_overlap": None}})
    assert s.ingest.chunk_tokens == 333
    assert s.ingest.chunk_overlap == 7


def test_enclave_toml_in_cwd_is_picked_up(tmp_path: Path) -> None:
    (tmp_path / "enclave.toml").write_text("[server]\nport = 9123\n")
    assert load_settings().server.port == 9123


def test_invalid_values_are_clear_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCLAVE_SERVER__PORT", "99999")
    with pytest.raises(ConfigError, match="port"):
        load_settings()
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[ingest]\nno_such_field = 1\n")
    monkeypatch.delenv("ENCLAVE_SERVER__PORT")
    with pytest.raises(ConfigError):
        load_settings(bad)


def test_retired_dedup_threshold_is_ignored_with_a_warning() -> None:
    import warnings

    from enclave.settings import load_settings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        settings = load_settings(overrides={"retrieval": {"dedup_threshold": 0.9}})
    assert settings.retrieval.collapse_duplicates is True
    assert any("dedup_threshold is no longer used" in str(w.message) for w in caught)
