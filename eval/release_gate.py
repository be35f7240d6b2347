"""The release gate: ``enclave eval`` run against a candidate release's own tables.

:func:`gate_release` scores the release's pinned view (store/view.py) in place with the
golden set (``release.golden_set``): the same retrieval path and answers as the server, hits
mapped to the golden set's corpus ids by document path (eval/index.py ``DocMapper``), nothing
rebuilt. The reports (report.json, .md, .html) are kept with the release, under
``<lance_dir>/_enclave/reports/<release>/``, and the verdict of ``release.gate`` decides
whether the candidate may go live (ingest/promotion.py).

:func:`scrub_reports` is the purge's cleaner: it drops, from every kept report and every
report under ``<data_dir>/eval-runs``, the answers given from a purged document (their text
may quote it), and writes the reports again.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.promotion import GateVerdict, ReleaseHooks

if TYPE_CHECKING:
    from enclave.settings import Settings
    from models.embedder import Embedder
    from store.records import DocumentRecord
    from store.registry import ReleaseRecord
    from store.releases import Releases
    from store.view import IndexView

log = logging.getLogger(__name__)


def gate_release(
    settings: Settings,
    releases: Releases,
    rec: ReleaseRecord,
    embedder: Embedder | None = None,
) -> GateVerdict:
    """Score ``rec`` in place and judge it with ``release.gate`` (module docstring), with
    ``embedder`` when the caller has one loaded (the ingest run's)."""
    from eval.gate import flatten_metrics
    from eval.harness import EvalOptions, run_eval

    rs = settings.release
    assert rs.golden_set is not None
    started = time.perf_counter()
    out_dir = releases.registry.report_dir(rec.id)
    options = EvalOptions(
        dataset_dir=Path(rs.golden_set),
        out_dir=out_dir,
        answers=rs.answers,
        no_answers=rs.answers == 0,
        gate=None if rs.gate is None else Path(rs.gate),
        progress=False,
        command=["enclave", "releases", "promote", rec.id, "(gate)"],
    )
    if rs.answers > 0:
        from enclave.native import preload_generator_runtime

        preload_generator_runtime()
    view = releases.view(rec)
    settings, embedder = _release_embedder(settings, view, embedder)
    outcome = run_eval(settings, options, embedder=embedder, reader=view)
    gate = outcome.gate
    return GateVerdict(
        passed=gate is None or gate.passed,
        failures=[] if gate is None else [c.describe() for c in gate.failures],
        metrics=flatten_metrics(outcome.report),
        report=str(outcome.paths["json"]),
        seconds=time.perf_counter() - started,
    )


def _release_embedder(
    settings: Settings, view: IndexView, embedder: Embedder | None
) -> tuple[Settings, Embedder | None]:
    """The embedder questions are embedded with: the one the release's tables were built with
    (a re-index may have used another model than the configured one, store/sets.py)."""
    from enclave.settings import EmbedderSettings

    name = view.embedder_name
    built = (view.meta.get("build") or {}).get("embedder")
    if name is None or (embedder is not None and embedder.name == name):
        return settings, embedder
    if not isinstance(built, dict):
        return settings, embedder
    own = settings.embedder
    from models.variants import for_index

    spec = EmbedderSettings.model_validate(
        {**built, "device": own.device, "threads": own.threads, "cache_dir": own.cache_dir}
    )
    spec = for_index(spec, name)  # the variant the tables' embedder name records
    if embedder is None and spec.model == own.model and for_index(own, name) == spec:
        return settings, None
    return settings.model_copy(update={"embedder": spec}), None


def _purged(source: str | None, paths: list[str]) -> bool:
    """Whether a report's corpus id (a path or path suffix) names a purged document."""
    if not source:
        return False
    src = source.replace("\\", "/").strip("/")
    return any(p == source or p.endswith("/" + src) for p in paths)


def scrub_reports(settings: Settings, documents: list[DocumentRecord]) -> list[str]:
    """Remove the answers given from ``documents`` from every kept report; returns the
    report.json files rewritten."""
    from eval.report import write_reports
    from store.registry import REGISTRY_DIR, REPORTS

    paths = sorted({d.path for d in documents})
    roots = [
        Path(settings.lance_dir) / REGISTRY_DIR / REPORTS,
        Path(settings.data_dir) / "eval-runs",
    ]
    changed: list[str] = []
    for root in roots:
        for report_json in sorted(root.glob("*/report.json")) if root.is_dir() else []:
            try:
                report: dict[str, Any] = json.loads(report_json.read_text("utf-8"))
            except (OSError, ValueError):
                continue
            rows = report.get("answers") or []
            kept = [
                r
                for r in rows
                if not any(_purged(s, paths) for s in (r.get("source_docs") or []))
                and not any(s is None for s in (r.get("source_docs") or []))
            ]
            if len(kept) == len(rows):
                continue
            report["answers"] = kept
            report.setdefault("purged", []).append(
                {"answers_removed": len(rows) - len(kept), "documents": len(paths)}
            )
            write_reports(report, report_json.parent)
            changed.append(str(report_json))
    return changed


def release_hooks() -> ReleaseHooks:
    """What the evaluation package lends the release workflow (enclave/cli.py wires it)."""
    return ReleaseHooks(gate=gate_release, scrub=scrub_reports)
