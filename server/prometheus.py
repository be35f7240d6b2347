"""Prometheus metrics, one registry per app (two apps in one process never mix figures)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from enclave.security.rate_limits import Limiter
    from store.live import LiveIndex

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "enclave_requests",
            "HTTP requests by route and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "enclave_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_seconds = Histogram(
            "enclave_stage_seconds",
            "latency per answer stage: retrieve, pack, queue, first_token, generate",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter("enclave_tokens", "tokens through the model", ["kind"], registry=r)
        self.queue_depth = Gauge(
            "enclave_queue_depth", "generations waiting for the model", registry=r
        )
        self.in_flight = Gauge(
            "enclave_generations_in_flight", "generations running on the model", registry=r
        )
        self.generations = Counter(
            "enclave_generations",
            "finished generations by finish reason (stop, length, cancelled, error)",
            ["finish_reason"],
            registry=r,
        )
        self.cancellations = Counter(
            "enclave_cancellations", "generations cancelled, by cause", ["cause"], registry=r
        )
        self.rejected = Counter(
            "enclave_rejected",
            "requests refused before generation, by cause",
            ["cause"],
            registry=r,
        )
        self.abstentions = Counter(
            "enclave_abstentions", "questions answered 'not in the documents'", registry=r
        )
        self.auth_failures = Counter(
            "enclave_auth_failures",
            "requests refused 401 (missing, unknown or revoked key)",
            registry=r,
        )
        self.rate_limited = Counter(
            "enclave_rate_limited", "requests refused 429 by a key's limits", ["limit"], registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class UsageCollector(Collector):
    """Today's usage per API key, read from the limiter at scrape time."""

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter

    def collect(self) -> Iterator[GaugeMetricFamily]:
        tokens = GaugeMetricFamily(
            "enclave_key_tokens_today", "tokens (prompt + completion) used today", labels=["key"]
        )
        requests = GaugeMetricFamily(
            "enclave_key_requests_today", "requests admitted today", labels=["key"]
        )
        for row in self.limiter.usage()["keys"]:
            tokens.add_metric([str(row["name"])], float(row["total_tokens"]))
            requests.add_metric([str(row["name"])], float(row["requests"]))
        yield tokens
        yield requests

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


class ReleaseCollector(Collector):
    """The live release, read from the server's index at scrape time:
    ``enclave_release_info{release="r-000012"} 1`` and its promotion time."""

    def __init__(self, index: LiveIndex) -> None:
        self.index = index

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from datetime import datetime

        self.index.reader()  # looks at the pointer when due
        pointer = self.index.pointer
        info = GaugeMetricFamily(
            "enclave_release_info", "the release this server serves", labels=["release"]
        )
        promoted = GaugeMetricFamily(
            "enclave_release_promoted_timestamp_seconds",
            "when the live release was promoted (Unix time)",
        )
        if pointer is not None:
            info.add_metric([pointer.release], 1.0)
            try:
                when = datetime.fromisoformat(pointer.promoted_at.replace("Z", "+00:00"))
                promoted.add_metric([], when.timestamp())
            except ValueError:
                pass
        yield info
        yield promoted
        searcher = self.index.reader().searcher_in_use()
        cache = searcher.row_cache if searcher is not None else None
        held = GaugeMetricFamily(
            "enclave_row_cache_bytes",
            "memory of the live release's row cache (store/row_cache.py; 0: not held, or loading)",
        )
        held.add_metric([], float(cache.nbytes if cache is not None else 0))
        yield held
        text = GaugeMetricFamily(
            "enclave_row_cache_text_bytes",
            "bytes in the row cache's text file (beside the index, else in the system's "
            "temporary directory; 0: none)",
        )
        text.add_metric([], float(cache.text_bytes if cache is not None else 0))
        yield text

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


class SyncCollector(Collector):
    """``enclave sync``'s state, read at scrape time from the state file it writes in the
    data directory (ingest/sync.py): up, pending changes, runs, errors, the last run."""

    def __init__(self, data_dir: Path | str) -> None:
        self.data_dir = data_dir

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from datetime import datetime

        from ingest.sync import read_sync_state

        state = read_sync_state(self.data_dir)
        up = GaugeMetricFamily(
            "enclave_sync_up", "1 while an `enclave sync` process reports for this data dir"
        )
        up.add_metric([], 1.0 if state and state.get("running") else 0.0)
        yield up
        if state is None:
            return
        info = GaugeMetricFamily(
            "enclave_sync_info",
            "the sync process's state (watching, running, waiting, blocked, error, stopped) "
            "and its last release",
            labels=["state", "last_release"],
        )
        last = state.get("last_release") or {}
        info.add_metric([str(state.get("state")), str(last.get("id") or "")], 1.0)
        yield info
        for name, doc, key in (
            ("enclave_sync_pending_changes", "changes seen and not yet ingested",
             "pending_changes"),
            ("enclave_sync_runs", "ingest runs the sync process made", "runs"),
            ("enclave_sync_errors", "runs that failed (errors reported in the state)",
             "errors_total"),
        ):  # fmt: skip
            g = GaugeMetricFamily(name, doc)
            g.add_metric([], float(state.get(key) or 0))
            yield g
        run = state.get("last_run") or {}
        when = GaugeMetricFamily(
            "enclave_sync_last_run_timestamp_seconds", "when the last sync run finished"
        )
        took = GaugeMetricFamily("enclave_sync_last_run_seconds", "how long the last run took")
        if run.get("finished_at"):
            try:
                stamp = datetime.fromisoformat(str(run["finished_at"]).replace("Z", "+00:00"))
                when.add_metric([], stamp.timestamp())
                took.add_metric([], float(run.get("seconds") or 0.0))
            except ValueError:
                pass
        yield when
        yield took
        job = state.get("reindex") or {}
        busy = GaugeMetricFamily(
            "enclave_sync_reindex_running",
            "1 while the sync process builds a re-index (settings changed), with its ETA",
        )
        busy.add_metric([], 1.0 if job.get("state") == "running" else 0.0)
        yield busy
        eta = (job.get("progress") or {}).get("eta_s") if job.get("state") == "running" else None
        if isinstance(eta, int | float):
            left = GaugeMetricFamily(
                "enclave_sync_reindex_eta_seconds", "the running re-index's expected time left"
            )
            left.add_metric([], float(eta))
            yield left

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


#: the admission estimates in /metrics: key of ChatService.estimates() -> (name, help)
ESTIMATE_GAUGES = {
    "wait_s": (
        "enclave_expected_wait_seconds",
        "expected (mean) wait of a chat request arriving now: the running generation's "
        "remaining time plus the expected hold of every admitted request",
    ),
    "hold_s": (
        "enclave_expected_hold_seconds",
        "expected (mean) time one generation with the default max_tokens holds the model",
    ),
    "prefill_s_per_token": (
        "enclave_expected_prefill_seconds_per_token",
        "prompt seconds per token admission expects (mean of recent generations)",
    ),
    "decode_s_per_token": (
        "enclave_expected_decode_seconds_per_token",
        "seconds per generated token admission expects (mean of recent generations)",
    ),
    "admitted": (
        "enclave_admitted_requests",
        "chat requests admitted and not done (preparing, waiting or generating)",
    ),
}


class EstimateCollector(Collector):
    """Admission's estimates (``ChatService.estimates``), read at scrape time; nothing
    before the models are loaded."""

    def __init__(self, estimates: Callable[[], dict[str, float] | None]) -> None:
        self.estimates = estimates

    def collect(self) -> Iterator[GaugeMetricFamily]:
        values = self.estimates()
        if values is None:
            return
        for key, (name, help_text) in ESTIMATE_GAUGES.items():
            if key in values:
                yield GaugeMetricFamily(name, help_text, value=values[key])

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())
