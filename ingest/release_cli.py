"""``enclave releases list|show|diff|promote|rollback|cleanup``, ``enclave purge`` and
``enclave lineage``: the index as a release artifact (docs/releases.md).

Exit codes: 0 done; 1 a promotion refused (the gate failed, the rails held the candidate: the
reasons are printed, and how to force it), a release no longer retained; 2 usage error
(unknown release, another writer holds the lock).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from enclave.cli_options import ConfigOpt, DataDirOpt, JsonOpt, build_settings, fail
from enclave.errors import EnclaveError
from enclave.settings import Settings
from ingest.promotion import ReleaseHooks

RefArg = Annotated[str, typer.Argument(help="r-000012, 12, live or candidate")]


def register(app: typer.Typer, hooks: ReleaseHooks | None = None) -> None:
    releases = typer.Typer(
        help="Index releases: list, compare, promote, roll back.", no_args_is_help=True
    )
    app.add_typer(releases, name="releases")

    @releases.command("list")
    def list_command(
        data_dir: DataDirOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False
    ) -> None:
        """Every release with its state: live, retained, candidate, rejected, expired."""
        try:
            rows = release_rows(build_settings(config, data_dir))
        except EnclaveError as exc:
            raise fail(exc) from exc
        if as_json:
            typer.echo(json.dumps({"releases": rows}))
            return
        _print_list(rows)

    @releases.command("show")
    def show_command(
        release: RefArg = "live",
        data_dir: DataDirOpt = None,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """One release's record: versions, counts, rails, gate, history."""
        try:
            settings = build_settings(config, data_dir)
            registry = _registry(settings)
            rec = registry.resolve(release)
            data = {**_asdict(rec), "status": registry.status_of(rec, registry.live())}
        except EnclaveError as exc:
            raise fail(exc) from exc
        typer.echo(json.dumps(data, indent=None if as_json else 2))

    @releases.command("diff")
    def diff_command(
        old: RefArg = "live",
        new: RefArg = "candidate",
        data_dir: DataDirOpt = None,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Documents added, changed, removed and failed between two releases; chunk counts;
        the gate's metrics side by side."""
        try:
            data = diff_releases(build_settings(config, data_dir), old, new)
        except EnclaveError as exc:
            raise fail(exc) from exc
        if as_json:
            typer.echo(json.dumps(data))
            return
        _print_diff(data)

    @releases.command("promote")
    def promote_command(
        release: RefArg = "candidate",
        force: Annotated[
            bool, typer.Option("--force", help="promote whatever the rails and gate say")
        ] = False,
        data_dir: DataDirOpt = None,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Make a release live: rails, then the gate (with release.golden_set), then the
        atomic switch. Exit 1 when refused."""
        from ingest.promotion import promote
        from store.db import Store
        from store.lock import WriterLock
        from store.releases import Releases

        try:
            settings = build_settings(config, data_dir)
            with WriterLock(settings.index, "enclave releases promote"):
                rels = Releases(Store(settings.index))
                rec = rels.registry.resolve(release)
                out = promote(
                    settings, rels, rec, hooks=hooks, by="enclave releases promote", force=force
                )
        except EnclaveError as exc:
            raise fail(exc) from exc
        _report(out.to_dict(), as_json)
        if not out.promoted and out.state != "live":
            raise typer.Exit(1)

    @releases.command("rollback")
    def rollback_command(
        release: Annotated[
            str | None,
            typer.Argument(help="the release to make live (default: the live one's parent)"),
        ] = None,
        data_dir: DataDirOpt = None,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Make an earlier promoted release live again (atomic, under a second)."""
        try:
            data = rollback(build_settings(config, data_dir), release)
        except EnclaveError as exc:
            raise fail(exc) from exc
        _report(data, as_json)

    @releases.command("cleanup")
    def cleanup_command(
        data_dir: DataDirOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False
    ) -> None:
        """Remove now what only dropped releases referenced (ingest runs do it anyway)."""
        from store.db import Store
        from store.lock import WriterLock

        try:
            settings = build_settings(config, data_dir)
            with WriterLock(settings.index, "enclave releases cleanup"):
                from store.releases import Releases
                from store.sets import active_tables

                store = Store(settings.index, tables=active_tables(settings.index))
                before = settings.index.size_bytes()
                store.optimize()
                dropped = Releases(store).drop_unused_sets()
                after = settings.index.size_bytes()
        except EnclaveError as exc:
            raise fail(exc) from exc
        _report(
            {"bytes_before": before, "bytes_after": after, "table_sets_deleted": dropped},
            as_json,
        )

    @app.command("purge")
    def purge_command(
        target: Annotated[str, typer.Argument(help="a document id or the file's path")],
        data_dir: DataDirOpt = None,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Remove a document from the live release and every retained one, physically
        (legal requests, leaked secrets). Audited."""
        from ingest.purge import purge

        try:
            data = purge(build_settings(config, data_dir), target, hooks=hooks)
        except EnclaveError as exc:
            raise fail(exc) from exc
        _report(data, as_json)

    @app.command("lineage")
    def lineage_command(
        response_id: Annotated[str, typer.Argument(help="an answer's id (chatcmpl-...)")],
        data_dir: DataDirOpt = None,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """The exact passages and file versions an answer stood on."""
        from enclave.security.lineage import lineage

        try:
            settings = build_settings(config, data_dir)
            data = lineage(settings.data_dir, settings.index, response_id)
        except EnclaveError as exc:
            raise fail(exc) from exc
        if as_json:
            typer.echo(json.dumps(data))
            return
        _print_lineage(data)


# ------------------------------------------------------------------------- operations
def _registry(settings: Settings) -> Any:
    from store.registry import Registry

    return Registry.at(settings.index)


def _asdict(rec: Any) -> dict[str, Any]:
    from dataclasses import asdict

    out: dict[str, Any] = asdict(rec)
    return out


def release_rows(settings: Settings) -> list[dict[str, Any]]:
    """``enclave releases list``: newest first."""
    registry = _registry(settings)
    live = registry.live()
    rows = []
    for rec in reversed(registry.records()):
        gate = rec.gate or {}
        rows.append(
            {
                "id": rec.id,
                "status": registry.status_of(rec, live),
                "created_at": rec.created_at,
                "promoted_at": rec.promoted_at,
                "parent": rec.parent,
                "documents": rec.counts.get("documents"),
                "chunks": rec.counts.get("chunks"),
                "failed": rec.counts.get("failed"),
                "gate": None if not gate else bool(gate.get("passed")),
                "forced": rec.forced,
                "held": rec.held,
            }
        )
    return rows


def diff_releases(settings: Settings, old_ref: str, new_ref: str) -> dict[str, Any]:
    """``enclave releases diff``: documents, chunk counts, gate metrics side by side."""
    from store.compare import changes_dict, compare_documents
    from store.releases import open_release

    registry = _registry(settings)
    old, new = registry.resolve(old_ref), registry.resolve(new_ref)
    old_view = open_release(settings.index, old.id, registry=registry)
    new_view = open_release(settings.index, new.id, registry=registry, connection=None)
    changes = changes_dict(compare_documents(old_view, new_view))
    metrics_old = (old.gate or {}).get("metrics") or {}
    metrics_new = (new.gate or {}).get("metrics") or {}
    names = sorted(set(metrics_old) | set(metrics_new))
    return {
        "old": old.id,
        "new": new.id,
        **changes,
        "chunks": {"before": old_view.count_chunks(), "after": new_view.count_chunks()},
        "gate": {
            "old": None if old.gate is None else bool(old.gate.get("passed")),
            "new": None if new.gate is None else bool(new.gate.get("passed")),
            "metrics": [
                {"metric": n, "old": metrics_old.get(n), "new": metrics_new.get(n)} for n in names
            ],
        },
    }


def rollback(settings: Settings, target_ref: str | None) -> dict[str, Any]:
    """``enclave releases rollback``: audited."""
    from ingest.promotion import audit
    from store.db import Store
    from store.lock import WriterLock
    from store.releases import Releases

    with WriterLock(settings.index, "enclave releases rollback"):
        rels = Releases(Store(settings.index))
        target = rels.registry.resolve(target_ref) if target_ref else None
        was, now = rels.rollback(target, by="enclave releases rollback", keep=settings.release.keep)
    audit(settings, "cli:releases rollback", "ok", {"from": was, "to": now.id})
    return {"id": now.id, "state": "live", "promoted": True, "rolled_back_from": was}


# --------------------------------------------------------------------------- printing
def _report(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(data))
        return
    from rich.console import Console

    console = Console()
    if "promoted" in data:
        if data.get("promoted"):
            forced = " (forced, audited)" if data.get("forced") else ""
            extra = f" (was {data['rolled_back_from']})" if data.get("rolled_back_from") else ""
            console.print(f"[green]{data['id']} is live[/]{forced}{extra}", highlight=False)
        else:
            console.print(f"[red]{data['id']} not promoted[/] ({data.get('state')})")
            gate = data.get("gate") or {}
            for failure in gate.get("failures") or []:
                console.print(f"  [red]FAIL[/] {failure}", highlight=False)
            if data.get("reason"):
                console.print(data["reason"], highlight=False, soft_wrap=True)
        return
    console.print_json(json.dumps(data))


def _print_list(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Releases (newest first)")
    for col in ("id", "status", "created", "promoted", "parent", "docs", "chunks", "failed",
                "gate", "note"):  # fmt: skip
        table.add_column(col)
    for r in rows:
        gate = "-" if r["gate"] is None else ("pass" if r["gate"] else "FAIL")
        note = "forced" if r["forced"] else (r["held"] or "")[:60]
        table.add_row(
            r["id"],
            r["status"],
            (r["created_at"] or "")[:19],
            (r["promoted_at"] or "-")[:19],
            r["parent"] or "-",
            str(r["documents"]),
            str(r["chunks"]),
            str(r["failed"]),
            gate,
            note,
        )
    Console().print(table)


def _print_diff(d: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    c = d["counts"]
    console.print(
        f"{d['old']} -> {d['new']}: {c['added']} added, {c['changed']} changed, "
        f"{c['removed']} removed, {c['failed']} newly failed; documents "
        f"{d['documents']['before']} -> {d['documents']['after']}, chunks "
        f"{d['chunks']['before']} -> {d['chunks']['after']}",
        highlight=False,
    )
    for key in ("added", "changed", "removed", "failed"):
        for doc in d[key][:20]:
            console.print(f"  {key:8} {doc['path']}", highlight=False)
    if d["gate"]["metrics"]:
        table = Table(title="gate metrics")
        for col in ("metric", d["old"], d["new"]):
            table.add_column(col)
        for m in d["gate"]["metrics"]:
            table.add_row(m["metric"], _num(m["old"]), _num(m["new"]))
        console.print(table)


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def _print_lineage(d: dict[str, Any]) -> None:
    from rich.console import Console

    console = Console()
    console.print(
        f"{d['response_id']}: release {d['release']}, answered {d['answered_at']}",
        highlight=False,
    )
    for doc in d["documents"]:
        console.print(f"  file {doc['path']} sha256 {doc['sha256']}", highlight=False)
    for p in d["passages"]:
        mark = "cited" if p["cited"] else "retrieved"
        text = "(purged)" if p["purged"] else " ".join((p["text"] or "").split())[:160]
        console.print(f"  [{mark}] {p['chunk_id']}: {text}", highlight=False)
