"""The keyed audit chain: a writer of the data directory without the audit key cannot forge
records that verify; verification needs the key; unkeyed logs are migrated, not trusted.

Every key here lives under the test's tmp_path (given through the setting, the environment or
the session's temporary XDG_CONFIG_HOME), never in the real home directory.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
import threading
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from enclave.security.audit import (
    AuditLog,
    AuditLogError,
    canonical_json,
    record_hash,
    verify_log,
)
from enclave.security.audit_key import (
    KEY_ENV,
    AuditKey,
    AuditKeyError,
    default_key_file,
    load_audit_key,
)
from enclave.security.keys import Principal

ALICE = Principal(name="alice", key_id="k1", groups=("hr",))


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The audit key file, outside the data directory, given as the setting (environment)."""
    path = tmp_path / "secrets" / "audit.key"
    monkeypatch.setenv("ENCLAVE_SECURITY__AUDIT_KEY_FILE", str(path))
    return path


def write_log(data_dir: Path, key_file: Path, n: int = 4) -> AuditLog:
    log = AuditLog(data_dir, key_file=key_file)
    for i in range(n):
        log.append(
            endpoint="/v1/chat/completions",
            principal=ALICE,
            question=f"q{i}",
            prompt_tokens=10 + i,
        )
    return log


def audit_dir(data_dir: Path) -> Path:
    return data_dir / "audit"


def lines(data_dir: Path) -> list[str]:
    return (audit_dir(data_dir) / "audit.jsonl").read_text().splitlines(keepends=True)


def put(data_dir: Path, new: list[str]) -> None:
    (audit_dir(data_dir) / "audit.jsonl").write_text("".join(new))


def plain_anchor(count: int, head: str) -> str:
    """An anchor as Enclave wrote it before audit keys (what a forger can compute)."""
    return canonical_json({"count": count, "head": head, "time": "2026-01-01T00:00:00.000Z"})


def write_unkeyed_log(data_dir: Path, n: int) -> list[dict[str, object]]:
    """A log exactly as Enclave wrote it before audit keys: a plain sha256 chain."""
    audit_dir(data_dir).mkdir(parents=True, exist_ok=True)
    prev, out = "0" * 64, []
    for i in range(1, n + 1):
        rec: dict[str, object] = {
            "time": f"2026-01-01T00:00:0{i % 10}.000Z",
            "principal": {"name": "bob", "key_id": "k2"},
            "endpoint": "/v1/search",
            "retrieved": [],
            "cited": [],
            "tokens": {"prompt": i, "completion": 0},
            "latency_ms": 1.0,
            "outcome": "ok",
            "status": 200,
            "seq": i,
            "prev_hash": prev,
        }
        rec["hash"] = record_hash(rec)
        prev = str(rec["hash"])
        out.append(rec)
    put(data_dir, [canonical_json(r) + "\n" for r in out])
    (audit_dir(data_dir) / "audit.anchor.json").write_text(plain_anchor(n, prev))
    return out


def verify_cli(cli_app: typer.Typer, data_dir: Path, *extra: str):
    return CliRunner().invoke(cli_app, ["audit", "verify", "-d", str(data_dir), *extra])


def test_the_key_is_created_outside_the_data_directory_private(
    data_dir: Path, key_file: Path
) -> None:
    log = write_log(data_dir, key_file, 2)
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    secret = bytes.fromhex(key_file.read_text().strip())
    assert len(secret) == 32
    assert not any(secret.hex() in p.read_text() for p in audit_dir(data_dir).iterdir())
    recs = [json.loads(x) for x in lines(data_dir)]
    assert {r["audit_key_id"] for r in recs} == {log.key.key_id}
    assert log.key.key_id not in secret.hex()
    anchor = json.loads((audit_dir(data_dir) / "audit.anchor.json").read_text())
    assert set(anchor) == {"count", "head", "mac", "time"} and anchor["count"] == 2
    # a restart reads the same key and continues the chain
    again = AuditLog(data_dir, key_file=key_file)
    assert again.key.key_id == log.key.key_id
    assert again.append(endpoint="/v1/models", principal=ALICE)["seq"] == 3
    assert verify_log(data_dir, key_file=key_file).ok


def test_default_key_file_is_under_the_user_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    assert default_key_file() == tmp_path / "cfg" / "enclave" / "audit.key"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert default_key_file() == Path.home() / ".config" / "enclave" / "audit.key"
    assert str(Path.home()).startswith(str(tmp_path))  # the tests' home, not the real one


def test_forged_records_with_a_plain_sha256_chain_fail_verify(
    cli_app: typer.Typer, data_dir: Path, key_file: Path
) -> None:
    """What the data directory's writer can do without the key: append a record with a
    recomputed sha256 chain and a matching anchor. It no longer verifies."""
    write_log(data_dir, key_file, 4)
    assert verify_cli(cli_app, data_dir).exit_code == 0
    ls = lines(data_dir)
    last = json.loads(ls[-1])
    anchor = (audit_dir(data_dir) / "audit.anchor.json").read_bytes()

    # 1. a forged record in the same shape (claiming the key id), chained with plain sha256
    forged = {**last, "seq": 5, "prev_hash": last["hash"], "principal": None, "outcome": "ok"}
    forged["hash"] = record_hash(forged)
    put(data_dir, [*ls, json.dumps(forged) + "\n"])
    (audit_dir(data_dir) / "audit.anchor.json").write_text(plain_anchor(5, forged["hash"]))
    res = verify_cli(cli_app, data_dir)
    assert res.exit_code == 1 and "TAMPERED: line 5: hash mismatch" in res.stderr
    assert "MAC fails" in res.stderr

    # 2. the same, as an old-style (unkeyed) record after the keyed ones
    old_style = {k: v for k, v in forged.items() if k not in ("hash", "audit_key_id")}
    old_style["hash"] = record_hash(old_style)
    put(data_dir, [*ls, json.dumps(old_style) + "\n"])
    (audit_dir(data_dir) / "audit.anchor.json").write_text(plain_anchor(5, old_style["hash"]))
    res = verify_cli(cli_app, data_dir)
    assert res.exit_code == 1 and "line 5: an unkeyed record after keyed ones" in res.stderr

    # 3. only the anchor replaced (to hide dropped records): its MAC fails
    put(data_dir, ls[:2])
    (audit_dir(data_dir) / "audit.anchor.json").write_text(
        plain_anchor(2, json.loads(ls[1])["hash"])
    )
    res = verify_cli(cli_app, data_dir)
    assert res.exit_code == 1 and "has no MAC although the log is keyed" in res.stderr

    # and the server refuses to extend a chain whose last record fails its MAC
    put(data_dir, [*ls, json.dumps(forged) + "\n"])
    (audit_dir(data_dir) / "audit.anchor.json").write_bytes(anchor)
    with pytest.raises(AuditLogError, match="fails its MAC"):
        AuditLog(data_dir, key_file=key_file)


def test_a_whole_chain_rewritten_without_the_key_fails(
    cli_app: typer.Typer, data_dir: Path, key_file: Path, tmp_path: Path
) -> None:
    write_log(data_dir, key_file, 3)
    key = load_audit_key(key_file)
    assert key is not None
    # plain sha256 from the first record, anchor included: unkeyed, so nothing vouches for it
    write_unkeyed_log(data_dir, 3)
    res = verify_cli(cli_app, data_dir)
    assert res.exit_code == 1
    assert "NOT VERIFIED: the log's 3 records are unkeyed" in res.stderr
    assert verify_log(data_dir, key_file=key_file).unverifiable
    # rewritten with the forger's own key: it names a key that is not ours
    other = AuditKey(secrets.token_bytes(32), "forger")
    forged_dir = tmp_path / "forged"
    log = AuditLog(forged_dir, key=other)
    for _ in range(3):
        log.append(endpoint="/v1/search", principal=ALICE)
    for name in ("audit.jsonl", "audit.anchor.json"):
        (audit_dir(data_dir) / name).write_bytes((audit_dir(forged_dir) / name).read_bytes())
    res = verify_cli(cli_app, data_dir)
    assert res.exit_code == 1
    assert f"chained with audit key {other.key_id}, not with the key" in res.stderr
    assert key.key_id in res.stderr
    # and the server will not append to it either
    with pytest.raises(AuditKeyError, match="chained with audit key"):
        AuditLog(data_dir, key_file=key_file)


def test_verify_without_the_key_fails_clearly(
    cli_app: typer.Typer, data_dir: Path, key_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_log(data_dir, key_file, 2)
    key_file.rename(key_file.with_name("moved.key"))
    res = verify_cli(cli_app, data_dir)
    assert res.exit_code == 2
    assert "is keyed (HMAC-SHA256) and its audit key was not found" in res.stderr
    assert str(key_file) in res.stderr
    assert not key_file.exists()  # verify never creates a key
    with pytest.raises(AuditKeyError, match="audit key was not found"):
        verify_log(data_dir, key_file=key_file)
    # the server refuses to start rather than chain on with a new key
    with pytest.raises(AuditKeyError, match="audit key was not found"):
        AuditLog(data_dir, key_file=key_file)
    assert not key_file.exists()
    # with the key given in the environment instead, it verifies
    monkeypatch.setenv(KEY_ENV, key_file.with_name("moved.key").read_text().strip())
    res = verify_cli(cli_app, data_dir)
    assert res.exit_code == 0 and "ok: 2 records (2 keyed with audit key" in res.stdout


def test_key_from_the_environment_and_bad_keys(
    data_dir: Path, key_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hexkey = secrets.token_hex(32)
    monkeypatch.setenv(KEY_ENV, hexkey)
    log = write_log(data_dir, key_file, 2)
    assert log.key.source == "$ENCLAVE_AUDIT_KEY" and not key_file.exists()
    assert verify_log(data_dir).ok
    monkeypatch.setenv(KEY_ENV, "not-hex")
    with pytest.raises(AuditKeyError, match="at least 64 hex characters"):
        verify_log(data_dir)
    monkeypatch.setenv(KEY_ENV, "ab" * 8)  # too short
    with pytest.raises(AuditKeyError, match="not valid"):
        load_audit_key()
    monkeypatch.delenv(KEY_ENV)

    # a key file others can read is refused
    loose = tmp_path / "loose.key"
    loose.write_text(secrets.token_hex(32))
    os.chmod(loose, 0o644)
    with pytest.raises(AuditKeyError, match="chmod 600"):
        load_audit_key(loose)
    # a key kept inside the data directory protects nothing: refused
    with pytest.raises(AuditKeyError, match="inside the data directory"):
        AuditLog(data_dir, key_file=data_dir / "audit.key")
    assert not (data_dir / "audit.key").exists()


def test_concurrent_first_use_agrees_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "k" / "audit.key"
    got: list[str] = []

    def one() -> None:
        key = load_audit_key(path, create=True)
        assert key is not None
        got.append(key.key_id)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 8 and len(set(got)) == 1
    assert [p.name for p in path.parent.iterdir()] == ["audit.key"]  # no temporary left


def test_an_unkeyed_log_is_verified_then_keyed(
    cli_app: typer.Typer, data_dir: Path, key_file: Path
) -> None:
    """Migration: a log from before audit keys is checked as before, then keyed records
    follow and vouch for it."""
    old = write_unkeyed_log(data_dir, 3)
    res = verify_cli(cli_app, data_dir)
    assert res.exit_code == 1 and "NOT VERIFIED" in res.stderr and "TAMPERED" not in res.stderr
    res = verify_cli(cli_app, data_dir, "--allow-unkeyed")
    assert res.exit_code == 0 and "ok: 3 records (3 unkeyed, from before audit keys)" in res.stdout

    log = AuditLog(data_dir, key_file=key_file)  # what `enclave serve` does at start-up
    assert key_file.exists() and log.count == 3
    # the anchor now carries a MAC over the unkeyed chain, so it verifies before any request
    assert verify_log(data_dir, key_file=key_file).ok
    rec = log.append(endpoint="/v1/search", principal=ALICE)
    assert rec["seq"] == 4 and rec["prev_hash"] == old[-1]["hash"]
    res = verify_cli(cli_app, data_dir)
    assert res.exit_code == 0
    assert f"ok: 4 records (1 keyed with audit key {log.key.key_id}, 3 unkeyed" in res.stdout

    # from now on the unkeyed part is protected too: rewriting it breaks the keyed record
    ls = lines(data_dir)
    edited = [dict(r) for r in old]
    edited[1]["outcome"] = "forbidden"
    prev = "0" * 64
    for r in edited:
        r["prev_hash"] = prev
        r["hash"] = record_hash(r)
        prev = str(r["hash"])
    put(data_dir, [*(canonical_json(r) + "\n" for r in edited), ls[3]])
    res = verify_cli(cli_app, data_dir)
    assert res.exit_code == 1 and "TAMPERED: line 4: prev_hash does not match" in res.stderr
    # cutting the keyed record and its anchor away does not pass as a clean unkeyed log
    put(data_dir, ls[:3])
    (audit_dir(data_dir) / "audit.anchor.json").write_text(plain_anchor(3, str(old[-1]["hash"])))
    assert verify_cli(cli_app, data_dir).exit_code == 1


def test_a_damaged_unkeyed_log_is_not_keyed(data_dir: Path, key_file: Path) -> None:
    old = write_unkeyed_log(data_dir, 3)
    ls = lines(data_dir)
    rec = dict(old[1])
    rec["outcome"] = "edited"
    put(data_dir, [ls[0], canonical_json(rec) + "\n", ls[2]])
    with pytest.raises(
        AuditLogError, match="written before audit keys, fails verification at line 2"
    ):
        AuditLog(data_dir, key_file=key_file)
    assert len(lines(data_dir)) == 3  # nothing was appended


def test_audit_key_command(cli_app: typer.Typer, data_dir: Path, key_file: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(cli_app, ["audit", "key", "-d", str(data_dir)])
    assert res.exit_code == 1 and f"no audit key at {key_file}" in res.stderr
    res = runner.invoke(cli_app, ["audit", "key", "--create", "--json", "-d", str(data_dir)])
    assert res.exit_code == 0
    out = json.loads(res.stdout)
    key = load_audit_key(key_file)
    assert key is not None and out == {"source": str(key_file), "audit_key_id": key.key_id}
    res = runner.invoke(cli_app, ["audit", "key", "-d", str(data_dir)])
    assert res.exit_code == 0 and f"audit key {key.key_id} from {key_file}" in res.stdout
    assert key.secret.hex() not in res.stdout


def test_serve_exits_2_on_a_damaged_or_unkeyable_log(data_dir: Path, key_file: Path) -> None:
    """`enclave serve` builds the audit log before it binds: a damaged log, or a keyed log
    whose key is missing, stops it with exit 2 and a message (no traceback)."""
    import server.cli as server_cli

    app = typer.Typer()
    server_cli.register(app)
    app.command("noop")(lambda: None)
    runner = CliRunner()
    args = ["serve", "--data-dir", str(data_dir), "--port", "8"]

    write_log(data_dir, key_file, 2)
    ls = lines(data_dir)
    put(data_dir, [*ls, '{"torn'])
    res = runner.invoke(app, args)
    assert res.exit_code == 2, res.output
    assert "error:" in res.output and "incomplete line" in res.output

    put(data_dir, ls[:1])  # a record dropped from the end
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "records were removed" in res.output

    put(data_dir, ls)
    key_file.unlink()
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "audit key was not found" in res.output
    assert not key_file.exists()
