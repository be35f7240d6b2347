from __future__ import annotations

from pathlib import Path

import pytest

from enclave.errors import AuthError, ConfigError
from enclave.security.audit import AuditLogError
from enclave.security.keys import LOCAL_PRINCIPAL, KeyStore
from enclave.security.services import (
    Authenticator,
    SecurityServices,
    check_no_auth_allowed,
    is_loopback,
)
from enclave.settings import load_settings


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.5", False),
        ("example.internal", False),
    ],
)
def test_is_loopback(host: str, expected: bool) -> None:
    assert is_loopback(host) is expected


def test_no_auth_only_on_loopback() -> None:
    check_no_auth_allowed("127.0.0.1", auth=False)
    check_no_auth_allowed("0.0.0.0", auth=True)
    with pytest.raises(
        ConfigError, match=r"refusing to serve without authentication on 0\.0\.0\.0"
    ):
        check_no_auth_allowed("0.0.0.0", auth=False)


def test_authenticator(data_dir: Path) -> None:
    keys = KeyStore(data_dir)
    auth = Authenticator(keys)
    with pytest.raises(AuthError, match="No API keys exist yet") as info:
        auth.authenticate(None)
    assert info.value.status_code == 401 and info.value.code == "invalid_api_key"
    _, key = keys.create("alice", groups=["hr"])
    with pytest.raises(AuthError) as info:
        auth.authenticate("Basic abc")
    assert "No API keys" not in info.value.message
    with pytest.raises(AuthError, match="invalid or revoked"):
        auth.authenticate("Bearer enc_" + "x" * 43)
    assert auth.authenticate(f"Bearer {key}").name == "alice"
    keys.revoke("alice")
    with pytest.raises(AuthError, match="invalid or revoked") as info:
        auth.authenticate(f"Bearer {key}")
    assert key not in info.value.message
    assert Authenticator(keys, enabled=False).authenticate(None) is LOCAL_PRINCIPAL


def test_security_services_from_settings(data_dir: Path, tmp_path: Path) -> None:
    policy = tmp_path / "acl.toml"
    policy.write_text('[[rule]]\nglob = "/hr/**"\ngroups = ["hr"]\n')
    settings = load_settings(
        overrides={"data_dir": data_dir, "security": {"policy_file": policy, "default_rpm": 7}}
    )
    sec = SecurityServices.from_settings(settings)
    assert sec.policy.groups_for("/hr/a.txt") == ["hr"]
    assert sec.audit is not None and sec.audit.questions == "hash"
    assert sec.limiter.default_rpm == 7
    assert sec.auth.enabled
    sec.close()

    off = load_settings(overrides={"data_dir": data_dir, "security": {"audit": False}})
    assert SecurityServices.from_settings(off).audit is None

    exposed = load_settings(
        overrides={"data_dir": data_dir, "server": {"host": "0.0.0.0"}, "security": {"auth": False}}
    )
    with pytest.raises(ConfigError, match="refusing"):
        SecurityServices.from_settings(exposed)

    bad_policy = load_settings(
        overrides={"data_dir": data_dir, "security": {"policy_file": tmp_path / "none.toml"}}
    )
    with pytest.raises(ConfigError, match="policy file not found"):
        SecurityServices.from_settings(bad_policy)

    (data_dir / "audit" / "audit.jsonl").write_text('{"torn')
    with pytest.raises(AuditLogError):
        SecurityServices.from_settings(settings)
