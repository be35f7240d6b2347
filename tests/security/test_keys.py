from __future__ import annotations

import json
import stat
import threading
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from enclave.errors import NotFoundError, UsageError
from enclave.security.keys import (
    KeyStore,
    Principal,
    bearer_token,
    generate_key,
    parse_groups,
)

runner = CliRunner()


def _auth(store: KeyStore, key: str) -> Principal:
    p = store.authenticate(key)
    assert p is not None
    return p


def invoke(app: typer.Typer, *args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_cli_create_list_revoke_and_authenticate(cli_app: typer.Typer, data_dir: Path) -> None:
    d = str(data_dir)
    res = invoke(
        cli_app,
        "keys",
        "create",
        "alice",
        "--groups",
        "hr,finance",
        "-d",
        d,
        "--daily-tokens",
        "5000",
        "--rpm",
        "10",
    )
    assert res.exit_code == 0, res.output
    key = res.stdout.strip().splitlines()[0]
    assert key.startswith("enc_") and len(key) == 47
    assert "not shown again" in res.stderr

    path = data_dir / "keys.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_text()
    assert key not in raw  # only the hash is stored
    assert key[10:] not in raw

    store = KeyStore(data_dir)  # e.g. the server's instance, created before the revocation
    p = _auth(store, key)
    assert p == Principal(
        name="alice",
        key_id=p.key_id,
        groups=("hr", "finance"),
        admin=False,
        daily_tokens=5000,
        rpm=10,
    )

    res = invoke(cli_app, "keys", "list", "--json", "-d", d)
    listed = json.loads(res.stdout)
    assert [k["name"] for k in listed] == ["alice"]
    assert "key_sha256" not in listed[0] and "key" not in listed[0]
    assert listed[0]["groups"] == ["hr", "finance"] and listed[0]["prefix"] == key[:10]

    res = invoke(cli_app, "keys", "list", "-d", d)
    assert "alice" in res.stdout and "hr,finance" in res.stdout and key not in res.stdout

    res = invoke(cli_app, "keys", "revoke", "alice", "-d", d)
    assert res.exit_code == 0 and p.key_id in res.stdout
    assert store.authenticate(key) is None  # the same instance reloads: next request refused

    res = invoke(cli_app, "keys", "list", "--json", "-d", d)
    assert json.loads(res.stdout) == []
    res = invoke(cli_app, "keys", "list", "--json", "--all", "-d", d)
    assert json.loads(res.stdout)[0]["revoked"]

    res = invoke(cli_app, "keys", "revoke", "alice", "-d", d)
    assert res.exit_code != 0 and "already revoked" in res.stderr


def test_cli_admin_set_groups_and_limits(cli_app: typer.Typer, data_dir: Path) -> None:
    d = str(data_dir)
    res = invoke(cli_app, "keys", "create", "root", "--admin", "--json", "-d", d)
    info = json.loads(res.stdout)
    store = KeyStore(data_dir)
    assert _auth(store, info["key"]).admin is True

    res = invoke(cli_app, "keys", "create", "bob", "-d", d)
    bob_key = res.stdout.strip()
    assert "only public documents" in res.stderr
    assert _auth(store, bob_key).groups == ()

    res = invoke(cli_app, "keys", "set-groups", "bob", "--groups", "legal, hr", "-d", d)
    assert res.exit_code == 0, res.output
    assert _auth(store, bob_key).groups == ("legal", "hr")

    bob_id = _auth(store, bob_key).key_id
    res = invoke(cli_app, "keys", "set-limits", bob_id, "--rpm", "3", "-d", d)
    assert res.exit_code == 0, res.output
    assert _auth(store, bob_key).rpm == 3
    assert _auth(store, bob_key).daily_tokens is None


@pytest.mark.parametrize(
    "groups", ["x') OR true --", "hr;finance", "hr,fin ance", "-lead", "a/b", "é" * 3, "x" * 65]
)
def test_cli_rejects_odd_group_names(cli_app: typer.Typer, data_dir: Path, groups: str) -> None:
    res = invoke(cli_app, "keys", "create", "eve", "--groups", groups, "-d", str(data_dir))
    assert res.exit_code == 2
    assert "invalid group name" in res.stderr
    assert not (data_dir / "keys.json").exists()  # nothing written


def test_cli_rejects_bad_names_duplicates_and_limits(cli_app: typer.Typer, data_dir: Path) -> None:
    d = str(data_dir)
    assert invoke(cli_app, "keys", "create", "bad name", "-d", d).exit_code == 2
    assert invoke(cli_app, "keys", "create", "carol", "-d", d).exit_code == 0
    res = invoke(cli_app, "keys", "create", "carol", "-d", d)
    assert res.exit_code == 2 and "exists" in res.stderr
    res = invoke(cli_app, "keys", "create", "dave", "--rpm", "-1", "-d", d)
    assert res.exit_code == 2 and "--rpm" in res.stderr
    res = invoke(cli_app, "keys", "revoke", "nobody", "-d", d)
    assert res.exit_code == 1 and "no key named" in res.stderr
    # a revoked name can be reused; the name then means the new key
    assert invoke(cli_app, "keys", "revoke", "carol", "-d", d).exit_code == 0
    res = invoke(cli_app, "keys", "create", "carol", "-d", d)
    new_key = res.stdout.strip()
    assert KeyStore(data_dir).find("carol").active
    assert KeyStore(data_dir).authenticate(new_key) is not None


def test_authenticate_rejects_garbage(data_dir: Path) -> None:
    store = KeyStore(data_dir)
    _rec, key = store.create("svc", groups=["ops"])
    assert store.authenticate(key) is not None
    for bad in [
        None,
        "",
        "enc_",
        key[:-1],
        key + "A",
        key.upper(),
        generate_key(),
        "Bearer " + key,
    ]:
        assert store.authenticate(bad) is None
    with pytest.raises(UsageError):
        store.set_groups("svc", ["ok", "not ok"])
    with pytest.raises(NotFoundError):
        store.revoke("missing")


def test_concurrent_creates_keep_every_key(data_dir: Path) -> None:
    errors: list[BaseException] = []
    keys: list[str] = []

    def make(i: int) -> None:
        try:
            keys.append(KeyStore(data_dir).create(f"user{i}", groups=["g"])[1])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=make, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    store = KeyStore(data_dir)
    assert len(store.records()) == 12
    assert {_auth(store, k).name for k in keys} == {f"user{i}" for i in range(12)}


def test_damaged_keys_file_is_a_clear_error(cli_app: typer.Typer, data_dir: Path) -> None:
    (data_dir / "keys.json").write_text("{not json")
    res = invoke(cli_app, "keys", "list", "-d", str(data_dir))
    assert res.exit_code == 2 and "not a valid Enclave keys file" in res.stderr


def test_bearer_and_parse_groups() -> None:
    assert bearer_token("Bearer enc_abc") == "enc_abc"
    assert bearer_token("bearer   enc_abc ") == "enc_abc"
    assert bearer_token("Basic xyz") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None
    assert parse_groups(" hr, ,finance,hr ") == ["hr", "finance"]
    assert parse_groups("") == []
