"""The way from a candidate to the live release: rails, gate, promotion, and the record of it.

:func:`promote` is the one path, for the end of an ingest run (``release.auto_promote``) and
for ``enclave releases promote``:

1. the rails (store/compare.py) compare the candidate with the live release; a candidate
   that removes too many documents or whose failure rate jumps is *held*: it waits, with the
   reasons and the command that forces it;
2. with a golden set configured (``release.golden_set``), the gate scores the candidate's own
   tables (:class:`ReleaseHooks` ``gate``, provided by the evaluation package) and keeps the
   report with the release; a failed gate *rejects* the candidate (exit code 1);
3. otherwise the candidate goes live (store/releases.py: one atomic pointer replace).

``force`` promotes whatever the rails and the gate say, and is audited. Every promote,
rollback and purge from the command line is written to the audit log (``cli:releases ...``).

The gate lives in ``eval/``, above this package: it arrives as a hook from the command-line
root (``enclave/cli.py``). Without one, a candidate whose golden set cannot be scored waits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from enclave.settings import Settings
from store.registry import PROMOTED, REJECTED, ReleaseRecord

if TYPE_CHECKING:
    from models.embedder import Embedder
    from store.records import DocumentRecord
    from store.releases import Releases

log = logging.getLogger(__name__)


@dataclass
class GateVerdict:
    """What the gate said about one release."""

    passed: bool
    #: each failed threshold, described (``retrieval.recall@10 = 0.61 < min 0.9``)
    failures: list[str] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    #: where the report (report.json, .md, .html) is kept
    report: str | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "failures": list(self.failures),
            "metrics": dict(self.metrics),
            "report": self.report,
            "seconds": round(self.seconds, 3),
        }


#: (settings, releases, the release, an embedder already loaded or None) -> the verdict
GateRunner = Callable[[Settings, "Releases", ReleaseRecord, "Embedder | None"], GateVerdict]
Scrubber = Callable[[Settings, "list[DocumentRecord]"], list[str]]


@dataclass
class ReleaseHooks:
    """What the packages above ingestion lend the release workflow."""

    #: scores a release in place against ``release.golden_set`` and ``release.gate``
    gate: GateRunner | None = None
    #: removes a purged document's text from files outside the index; returns the files
    scrub: Scrubber | None = None


@dataclass
class Outcome:
    """Where one promotion attempt left a release."""

    release: str
    #: live | candidate | rejected
    state: str
    promoted: bool
    #: held by the rails or rejected by the gate (not merely waiting for a manual promote)
    blocked: bool = False
    reason: str | None = None
    forced: bool = False
    rails: dict[str, Any] | None = None
    gate: dict[str, Any] | None = None
    #: releases whose tags retention dropped
    expired: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.release,
            "state": self.state,
            "promoted": self.promoted,
            "blocked": self.blocked,
            "reason": self.reason,
            "forced": self.forced,
            "rails": self.rails,
            "gate": self.gate,
            "expired": self.expired,
        }


def force_hint(rid: str) -> str:
    return f"To promote it anyway: `enclave releases promote {rid} --force` (audited)."


def promote(
    settings: Settings,
    releases: Releases,
    rec: ReleaseRecord,
    *,
    hooks: ReleaseHooks | None,
    by: str,
    force: bool = False,
    embedder: Embedder | None = None,
) -> Outcome:
    """Rails, gate, switch (module docstring). The caller holds the writer lock; the gate
    uses ``embedder`` when one is loaded already."""
    from store.compare import check_rails

    started = time.perf_counter()
    rs = settings.release
    out = Outcome(release=rec.id, state=rec.state, promoted=False)
    live_view = releases.live_view()
    live_ptr = releases.registry.live()
    if live_ptr is not None and live_ptr.release == rec.id:
        if rec.state != PROMOTED:  # a promote killed after its switch: finish the record
            releases.promote(rec, by=by, keep=rs.keep)
        out.state, out.reason = "live", f"{rec.id} is already live"
        return out
    if rec.state != PROMOTED:  # a release promoted before is a known quantity: no rails
        verdict = check_rails(
            None if live_ptr is None else live_view,
            releases.view(rec),
            max_removed_share=rs.max_removed_share,
            max_failure_jump=rs.max_failure_jump,
            min_documents=rs.rails_min_documents,
        )
        rec.rails = out.rails = verdict.to_dict()
        if not verdict.ok and not force:
            reason = "Not promoted: " + "; ".join(verdict.reasons) + ". " + force_hint(rec.id)
            releases.hold(rec, reason)
            out.state, out.reason, out.blocked = "candidate", reason, True
            return out
    gate_failed: list[str] = []
    if rs.golden_set is not None and rec.state != PROMOTED:
        if rec.gate is None:
            if hooks is None or hooks.gate is None:
                reason = (
                    "Waiting: release.golden_set is set, but this command cannot run the "
                    f"gate; promote with `enclave releases promote {rec.id}`."
                )
                releases.hold(rec, reason)
                out.state, out.reason = "candidate", reason
                return out
            verdict_g = hooks.gate(settings, releases, rec, embedder)
            rec.gate = verdict_g.to_dict()
        out.gate = rec.gate
        if not rec.gate.get("passed"):
            gate_failed = list(rec.gate.get("failures") or [])
            if not force:
                releases.reject(rec, rec.gate)
                reason = (
                    "Rejected by the gate: "
                    + "; ".join(gate_failed or ["it failed"])
                    + f". Report: {rec.gate.get('report')}. "
                    + force_hint(rec.id)
                )
                out.state, out.reason, out.blocked = REJECTED, reason, True
                return out
    forced = force and (bool(gate_failed) or not (rec.rails or {}).get("ok", True))
    releases.promote(rec, by=by, forced=forced, keep=rs.keep)
    out.expired = [r.id for r in releases.registry.records() if r.state == "expired"]
    out.state, out.promoted, out.forced = "live", True, forced
    out.seconds = time.perf_counter() - started
    audit(
        settings,
        f"cli:{by.removeprefix('enclave ')}",
        "forced" if forced else "ok",
        {"release": rec.id, "action": "promote", "gate_failures": gate_failed,
         "rails": rec.rails},
    )  # fmt: skip
    return out


def after_ingest(
    settings: Settings,
    releases: Releases,
    rec: ReleaseRecord,
    hooks: ReleaseHooks | None,
    embedder: Embedder | None = None,
) -> Outcome:
    """The end of an ingest run: promote the new candidate when ``release.auto_promote``."""
    if not settings.release.auto_promote:
        return Outcome(
            release=rec.id,
            state="candidate",
            promoted=False,
            reason=f"Waiting (release.auto_promote = false): `enclave releases promote {rec.id}`.",
        )
    return promote(settings, releases, rec, hooks=hooks, by="enclave ingest", embedder=embedder)


def audit(settings: Settings, endpoint: str, outcome: str, extra: dict[str, Any]) -> None:
    """One audit record for a release operation from the command line."""
    if not settings.security.audit:
        return
    from enclave.security.audit import AuditLog

    log_ = AuditLog(settings.data_dir, questions=settings.security.audit_questions)
    log_.append(endpoint=endpoint, principal=None, outcome=outcome, extra=extra)
