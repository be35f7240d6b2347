"""What the ingest commands (``enclave ingest``, ``enclave sync``) show a person: the progress
kind on stderr and the summary tables."""

from __future__ import annotations

from typing import Any


def progress_kind(flag: bool | None, *, as_json: bool, tty: bool) -> bool | str:
    """What ``enclave ingest`` shows on stderr while it runs: ``"lines"`` (JSON progress
    lines) with ``--progress`` or when stderr is not a terminal, the bar (True) on a terminal
    without ``--json``, nothing (False) with ``--no-progress`` or ``--json`` on a terminal.
    stdout only ever holds the summary."""
    if flag is False:
        return False
    if flag or not tty:
        return "lines"
    return not as_json


def print_summary(d: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title="Ingest summary", show_header=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    for key in ("files_seen", "ingested", "updated", "unchanged", "deleted"):
        table.add_row(key.replace("_", " "), str(d[key]))
    table.add_row("failed", str(len(d["failed"])))
    if d.get("quarantined"):
        table.add_row("quarantined", str(len(d["quarantined"])))
    table.add_row("chunks added", str(d["chunks_added"]))
    table.add_row("chunks deleted", str(d["chunks_deleted"]))
    if d.get("redacted"):
        table.add_row("redacted", ", ".join(f"{k} {v}" for k, v in sorted(d["redacted"].items())))
    if d.get("flagged_chunks"):
        table.add_row("flagged chunks", str(d["flagged_chunks"]))
    table.add_row("seconds", f"{d['seconds']:.1f}")
    console.print(table)
    for key, title in (("skipped", "Skipped"), ("truncated", "Indexed in part")):
        if d.get(key):
            listed = Table(title=title, show_header=True)
            listed.add_column("path", overflow="fold")
            listed.add_column("reason", overflow="fold")
            for s in d[key]:
                listed.add_row(s["path"], s["reason"])
            console.print(listed)
    rel = d.get("release") or {}
    if rel.get("id"):
        state = "live" if rel.get("promoted") else rel.get("state")
        console.print(f"release {rel['id']}: {state}", highlight=False)
    for failure in (rel.get("gate") or {}).get("failures") or []:
        console.print(f"  [red]FAIL[/] {failure}", highlight=False)
    if rel.get("reason") and rel.get("id"):
        console.print(rel["reason"], highlight=False, soft_wrap=True)
    if d.get("quarantined"):
        quarantined = Table(
            title="Quarantined (enclave quarantine list | release | retry)", show_header=True
        )
        quarantined.add_column("path", overflow="fold")
        quarantined.add_column("score", justify="right")
        quarantined.add_column("reason", overflow="fold")
        for q in d["quarantined"]:
            quarantined.add_row(q["path"], f"{q['score']:.2f}", q["reason"])
        console.print(quarantined)
    if d["failed"]:
        errors = Table(title="Failed files", show_header=True)
        errors.add_column("path", overflow="fold")
        errors.add_column("reason", overflow="fold")
        for f in d["failed"]:
            errors.add_row(f["path"], f["error"])
        console.print(errors)
