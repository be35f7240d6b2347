from __future__ import annotations

from pathlib import Path

import pytest

from enclave.errors import ConfigError
from enclave.settings import load_settings


def test_security_defaults() -> None:
    s = load_settings().security
    assert s.auth is True and s.audit is True
    assert s.audit_questions == "hash"
    assert s.policy_file is None and s.redact_pii is False and s.flag_injection is True
    assert s.default_daily_tokens == 0 and s.default_rpm == 0


def test_security_from_env_and_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENCLAVE_SECURITY__AUDIT_QUESTIONS", "full")
    cfg = tmp_path / "enclave.toml"
    cfg.write_text('[security]\npolicy_file = "acl.toml"\ndefault_rpm = 30\n')
    s = load_settings(cfg).security
    assert s.audit_questions == "full" and s.default_rpm == 30
    assert s.policy_file == Path("acl.toml")


def test_bad_audit_mode_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCLAVE_SECURITY__AUDIT_QUESTIONS", "everything")
    with pytest.raises(ConfigError, match="audit_questions"):
        load_settings()


def test_unknown_security_key_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "enclave.toml"
    cfg.write_text("[security]\naudit_question = 'full'\n")
    with pytest.raises(ConfigError, match="audit_question"):
        load_settings(cfg)
