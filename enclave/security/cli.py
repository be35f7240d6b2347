"""``enclave keys ...``, ``enclave audit ...`` and ``enclave policy check``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from enclave.cli_options import ConfigOpt, DataDirOpt, JsonOpt, build_settings, fail
from enclave.errors import EnclaveError
from enclave.settings import Settings


def _settings(config: Path | None, data_dir: Path | None) -> Settings:
    return build_settings(config, data_dir)


def _limit(v: int | None) -> str:
    return "default" if v is None else ("unlimited" if v == 0 else str(v))


keys_app = typer.Typer(
    help="API keys: who may call the server, which documents they see, their limits.",
    no_args_is_help=True,
)
audit_app = typer.Typer(
    help="The audit log, chained with a key kept outside the data directory.",
    no_args_is_help=True,
)
policy_app = typer.Typer(
    help="The document ACL policy (path globs -> groups).", no_args_is_help=True
)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="a name for the key's owner, e.g. alice or hr-bot")],
    groups: Annotated[
        str, typer.Option("--groups", "-g", help="comma-separated groups, e.g. hr,finance")
    ] = "",
    admin: Annotated[
        bool, typer.Option("--admin", help="sees every document; admin routes")
    ] = False,
    daily_tokens: Annotated[
        int | None, typer.Option("--daily-tokens", help="daily token budget; 0 = unlimited")
    ] = None,
    rpm: Annotated[
        int | None, typer.Option("--rpm", help="requests per minute; 0 = unlimited")
    ] = None,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Create an API key. The key is printed once and cannot be shown again."""
    from enclave.security.keys import KeyStore, parse_groups

    try:
        settings = _settings(config, data_dir)
        store = KeyStore(settings.data_dir)
        rec, key = store.create(
            name, groups=parse_groups(groups), admin=admin, daily_tokens=daily_tokens, rpm=rpm
        )
    except EnclaveError as exc:
        raise fail(exc) from None
    if json_out:
        typer.echo(json.dumps({**rec.public_dict(), "key": key}))
        return
    typer.echo(key)
    typer.echo(
        f"created key {rec.key_id} for {rec.name!r} (groups: {', '.join(rec.groups) or 'none'}"
        f"{', admin' if rec.admin else ''}). Store it now: it is not shown again.",
        err=True,
    )
    if not rec.groups and not rec.admin:
        typer.echo("note: with no groups this key sees only public documents.", err=True)


@keys_app.command("list")
def keys_list(
    all_keys: Annotated[bool, typer.Option("--all", help="include revoked keys")] = False,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List keys (never the keys themselves)."""
    from enclave.security.keys import KeyStore

    try:
        records = KeyStore(_settings(config, data_dir).data_dir).records()
    except EnclaveError as exc:
        raise fail(exc) from None
    if not all_keys:
        records = [r for r in records if r.active]
    if json_out:
        typer.echo(json.dumps([r.public_dict() for r in records], indent=2))
        return
    if not records:
        typer.echo("no keys (create one with `enclave keys create NAME --groups ...`)")
        return
    header = f"{'NAME':<20} {'ID':<12} {'PREFIX':<10} {'GROUPS':<24} ADMIN DAILY_TOKENS RPM"
    typer.echo(header + ("     CREATED              REVOKED" if all_keys else "     CREATED"))
    for r in records:
        line = (
            f"{r.name:<20} {r.key_id:<12} {r.prefix:<10} {','.join(r.groups) or '-':<24} "
            f"{'yes' if r.admin else 'no':<5} {_limit(r.daily_tokens):<12} {_limit(r.rpm):<8} "
            f"{r.created}"
        )
        if all_keys:
            line += f" {r.revoked or '-'}"
        typer.echo(line)


@keys_app.command("revoke")
def keys_revoke(
    name_or_id: Annotated[str, typer.Argument(help="key name or id")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Revoke a key; a running server refuses it from the next request on."""
    from enclave.security.keys import KeyStore

    try:
        rec = KeyStore(_settings(config, data_dir).data_dir).revoke(name_or_id)
    except EnclaveError as exc:
        raise fail(exc) from None
    typer.echo(f"revoked key {rec.key_id} ({rec.name})")


@keys_app.command("set-groups")
def keys_set_groups(
    name_or_id: Annotated[str, typer.Argument(help="key name or id")],
    groups: Annotated[str, typer.Option("--groups", "-g", help="comma-separated; '' = none")],
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Replace a key's groups (effective on the next request)."""
    from enclave.security.keys import KeyStore, parse_groups

    try:
        rec = KeyStore(_settings(config, data_dir).data_dir).set_groups(
            name_or_id, parse_groups(groups)
        )
    except EnclaveError as exc:
        raise fail(exc) from None
    typer.echo(f"key {rec.key_id} ({rec.name}) groups: {', '.join(rec.groups) or 'none'}")


@keys_app.command("set-limits")
def keys_set_limits(
    name_or_id: Annotated[str, typer.Argument(help="key name or id")],
    daily_tokens: Annotated[
        int | None, typer.Option("--daily-tokens", help="daily token budget; 0 = unlimited")
    ] = None,
    rpm: Annotated[
        int | None, typer.Option("--rpm", help="requests per minute; 0 = unlimited")
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Change a key's daily token budget and/or requests per minute."""
    from enclave.security.keys import KeyStore

    try:
        rec = KeyStore(_settings(config, data_dir).data_dir).set_limits(
            name_or_id, daily_tokens=daily_tokens, rpm=rpm
        )
    except EnclaveError as exc:
        raise fail(exc) from None
    typer.echo(
        f"key {rec.key_id} ({rec.name}): daily tokens {_limit(rec.daily_tokens)}, "
        f"rpm {_limit(rec.rpm)}"
    )


@audit_app.command("verify")
def audit_verify(
    expect_head: Annotated[
        str | None,
        typer.Option("--expect-head", help="head hash saved earlier (elsewhere) to compare"),
    ] = None,
    allow_unkeyed: Annotated[
        bool,
        typer.Option(
            "--allow-unkeyed",
            help="accept a log written before audit keys (plain sha256 chain, no keyed record)",
        ),
    ] = False,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Check the audit chain with the audit key. Exit 0 if intact, 1 if tampered (first bad
    line reported), 2 if it cannot be checked (the audit key is missing)."""
    from enclave.security.audit import verify_log

    try:
        settings = _settings(config, data_dir)
        result = verify_log(
            settings.data_dir,
            expect_head=expect_head,
            key_file=settings.security.audit_key_file,
            allow_unkeyed=allow_unkeyed,
        )
    except EnclaveError as exc:
        raise fail(exc) from None
    if json_out:
        typer.echo(json.dumps(result.to_dict()))
    elif result.ok:
        parts = []
        if result.keyed:
            parts.append(f"{result.keyed} keyed with audit key {result.key_id}")
        if result.unkeyed:
            parts.append(f"{result.unkeyed} unkeyed, from before audit keys")
        detail = f" ({', '.join(parts)})" if parts else ""
        typer.echo(f"ok: {result.records} records{detail}, head {result.head}")
    else:
        where = f"line {result.bad_line}: " if result.bad_line else ""
        label = "NOT VERIFIED" if result.unverifiable else "TAMPERED"
        typer.echo(f"{label}: {where}{result.reason}", err=True)
        typer.echo(f"{result.records} records verified before the problem", err=True)
    raise typer.Exit(0 if result.ok else 1)


@audit_app.command("key")
def audit_key(
    create: Annotated[
        bool, typer.Option("--create", help="create the key file if there is none")
    ] = False,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Show where the audit key is read from and its id (never the key). Back the key up:
    verifying the log needs it. Exit 1 if there is no key (and no --create)."""
    from enclave.security.audit_key import describe_key_source, load_audit_key

    try:
        settings = _settings(config, data_dir)
        key_file = settings.security.audit_key_file
        key = load_audit_key(key_file, data_dir=settings.data_dir, create=create)
    except EnclaveError as exc:
        raise fail(exc) from None
    source = key.source if key else describe_key_source(key_file)
    if json_out:
        typer.echo(json.dumps({"source": source, "audit_key_id": key.key_id if key else None}))
    elif key:
        typer.echo(f"audit key {key.key_id} from {source}")
    else:
        typer.echo(
            f"no audit key at {source}; `enclave serve` creates it on first use, or run "
            "`enclave audit key --create`",
            err=True,
        )
    raise typer.Exit(0 if key else 1)


@audit_app.command("tail")
def audit_tail(
    n: Annotated[int, typer.Option("-n", "--lines", help="how many records", min=0)] = 20,
    follow_: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing new records")
    ] = False,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Print the last records (one per line)."""
    from enclave.security.audit import follow, format_record, read_tail

    try:
        ddir = _settings(config, data_dir).data_dir
    except EnclaveError as exc:
        raise fail(exc) from None

    def show(rec: dict[str, object]) -> None:
        typer.echo(json.dumps(rec, ensure_ascii=False) if json_out else format_record(rec))
        sys.stdout.flush()

    for rec in read_tail(ddir, n):
        show(rec)
    if follow_:
        try:
            for rec in follow(ddir):
                show(rec)
        except KeyboardInterrupt:
            pass


@policy_app.command("check")
def policy_check(
    policy: Annotated[Path, typer.Argument(help="the policy TOML file")],
    paths: Annotated[list[str] | None, typer.Argument(help="document paths to evaluate")] = None,
    groups: Annotated[str, typer.Option("--groups", "-g", help="as given to ingest")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Validate a policy file and show which groups each path would get."""
    from enclave.security.keys import parse_groups
    from enclave.security.policy import AclPolicy
    from store.records import normalise_path

    try:
        pol = AclPolicy.load(policy)
        extra = parse_groups(groups)
        result = {}
        for p in paths or []:
            norm = normalise_path(p)
            result[p] = pol.groups_for(norm, extra)
    except EnclaveError as exc:
        raise fail(exc) from None
    if json_out:
        typer.echo(json.dumps({"rules": len(pol.rules), "paths": result}))
        return
    typer.echo(f"ok: {len(pol.rules)} rules in {policy}")
    for p, gs in result.items():
        typer.echo(f"{p}: {', '.join(gs) if gs else '(admins only)'}")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
    app.add_typer(audit_app, name="audit")
    app.add_typer(policy_app, name="policy")
