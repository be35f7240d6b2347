"""``enclave sync``: watch folders and deliver every change as a release (docs/sync.md).

A long-lived process over the roots of ``[sync]`` (and any PATH given):

* a **watcher** thread (``watchfiles``: inotify on Linux, FSEvents, ReadDirectoryChangesW)
  notes every change under the roots; nothing is read from the files there;
* the **main loop** waits until the roots were quiet for ``sync.debounce_s`` (a burst of
  changes makes one run; at most ten debounce periods after the first change), then runs an
  ordinary incremental ingest over the roots (:func:`ingest.pipeline.ingest_paths`, with
  ``--prune`` under ``sync.prune``): a candidate release that goes through the rails and the
  gate and is promoted under ``release.auto_promote`` (ingest/promotion.py). A vanished
  share is therefore no mass deletion: the rails hold a release that removes too much;
* a **full rescan** every ``sync.rescan_interval_s`` runs the same ingest whatever the
  watcher saw: the safety net for network mounts, where notifications do not arrive. An
  unchanged rescan is decided from the ingest snapshot without opening LanceDB.

Restarts: the process keeps no state of its own that a run needs. It begins with a run over
the roots, which the change detection (ingest/changes.py) makes a cheap incremental run, so a
change made while it was down (or killed by SIGKILL half-way through a run: the head keeps
what it wrote, the kernel frees the writer lock) is picked up at once.

**Settings changes.** When the configured embedder, chunking or parse settings differ from what
the live release's tables were built with (ingest/reindex.py :func:`~ingest.reindex.build_drift`;
settings are read when the process starts, so a restart after editing ``enclave.toml`` is
the change), the next run is a **re-index** under ``sync.reindex = "auto"``: a complete new
table set built as a candidate release while servers keep serving the live one, gated and
promoted like any release; its progress and ETA are in the state (``reindex``). It holds the
writer lock while it builds: changes made meanwhile wait for the first run after it. While
the live set does not match the settings (a refused re-index, ``sync.reindex = "off"``),
ordinary runs write it as it was built (:func:`~ingest.reindex.as_built`): edits are still
delivered within seconds, and the live set never mixes two chunkings or two embedders. A
re-index the gate or the rails refuse is not tried again for the same change to the same
table set until the process restarts (``enclave releases promote --force`` serves it anyway).

Another writer (an ingest, a promote, ``enclave reindex``) holding the index's lock is waited
for: the run is tried again every ``sync.lock_retry_s`` and the changes stay pending. Errors
(an unmounted root, an embedder that does not match the index) are reported and retried with
a growing pause; the process does not exit on them.

The state (watching, the last run, the last release, pending changes, errors) is written
atomically to ``<data_dir>/sync-state.json`` at every step and at least every
:data:`HEARTBEAT_S` seconds; ``enclave status`` and the server's ``/metrics`` read it
(:func:`read_sync_state`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enclave.errors import EnclaveError, UsageError
from enclave.settings import Settings
from store.registry import now_iso

if TYPE_CHECKING:
    from ingest.promotion import ReleaseHooks
    from ingest.reindex import Drift
    from models.embedder import Embedder

log = logging.getLogger("enclave.sync")

STATE_FILE = "sync-state.json"
#: the state file is rewritten at least this often while the process lives
HEARTBEAT_S = 30.0
#: a state whose heartbeat is older than this is reported as not running
STALE_S = 3 * HEARTBEAT_S
#: errors kept in the state file
KEEP_ERRORS = 5
#: a run starts at the latest this many debounce periods after the first pending change
MAX_DEBOUNCES = 10


def sync_roots(settings: Settings, paths: list[Path] | None = None) -> list[str]:
    """The roots to watch: ``sync.roots`` and ``paths``, each once, absolute. UsageError
    when there is none (a clear message, exit code 2)."""
    out: list[str] = []
    for p in [*settings.sync.roots, *(paths or [])]:
        key = os.path.abspath(os.path.expanduser(str(p)))
        if key not in out:
            out.append(key)
    if not out:
        raise UsageError(
            "nothing to watch: give folders (`enclave sync PATH...`) or set sync.roots "
            "(enclave.toml [sync] roots = [...], ENCLAVE_SYNC__ROOTS='[\"/data/docs\"]')"
        )
    return out


# ---------------------------------------------------------------------------- state file
def write_state(data_dir: Path | str, state: dict[str, Any]) -> None:
    """Replace the state file atomically (temporary file, rename)."""
    path = Path(data_dir) / STATE_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(state, indent=1), "utf-8")
        os.replace(tmp, path)


def read_sync_state(data_dir: Path | str, now: float | None = None) -> dict[str, Any] | None:
    """The state the sync process left, with ``running``: whether it is alive (a fresh
    heartbeat, not stopped). None when no sync ever ran here or the file is unreadable."""
    try:
        state: dict[str, Any] = json.loads((Path(data_dir) / STATE_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict):
        return None
    beat = state.get("heartbeat_unix")
    fresh = isinstance(beat, int | float) and (now or time.time()) - beat <= STALE_S
    state["running"] = bool(fresh and state.get("state") != "stopped")
    return state


# ------------------------------------------------------------------------------- watcher
class Watcher:
    """A thread that notes changes under the roots (``watchfiles``); restarted after an
    error (a root not mounted yet) every ``retry_s``."""

    def __init__(
        self,
        roots: list[str],
        on_change: Callable[[int], None],
        stop: threading.Event,
        *,
        retry_s: float = 10.0,
        ignore: str | None = None,
    ) -> None:
        self.roots = roots
        #: a folder whose changes are not the documents' (the data directory, when it lies
        #: under a root: the runs' own writes must not trigger runs)
        self.ignore = None if ignore is None else os.path.abspath(ignore) + os.sep
        self.on_change = on_change
        self.stop = stop
        self.retry_s = retry_s
        self.status = "starting"
        self.thread = threading.Thread(target=self._run, name="enclave-sync-watch", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        from watchfiles import DefaultFilter, watch

        default = DefaultFilter()
        ignore = self.ignore

        def wanted(change: Any, path: str) -> bool:
            return default(change, path) and not (ignore and path.startswith(ignore))

        while not self.stop.is_set():
            present = [r for r in self.roots if os.path.exists(r)]
            if not present:
                self.status = "down: no root exists"
                self.stop.wait(self.retry_s)
                continue
            try:
                self.status = "watching" if len(present) == len(self.roots) else "partial"
                for changes in watch(
                    *present,
                    watch_filter=wanted,
                    stop_event=self.stop,
                    debounce=200,
                    step=50,
                    rust_timeout=int(self.retry_s * 1000),
                    yield_on_timeout=True,
                    ignore_permission_denied=True,
                    raise_interrupt=False,
                ):
                    if changes:
                        self.on_change(len(changes))
                    if len(present) < len(self.roots) and any(
                        os.path.exists(r) for r in self.roots if r not in present
                    ):
                        break  # a root appeared (a share mounted): watch it too
                    if not all(os.path.exists(r) for r in present):
                        break  # a root vanished: watch what is left
            except Exception as exc:  # reported; the rescan still runs
                self.status = f"down: {exc}"
                log.warning("watcher stopped: %s; retrying in %.0f s", exc, self.retry_s)
                self.on_change(1)  # whatever happened meanwhile: look
                self.stop.wait(self.retry_s)


# --------------------------------------------------------------------------------- loop
@dataclass
class _Pending:
    count: int = 0
    first: float | None = None
    last: float | None = None
    since_iso: str | None = None


@dataclass
class SyncService:
    """The sync loop (module docstring). ``run_forever`` returns when ``stop`` is set."""

    settings: Settings
    roots: list[str]
    hooks: ReleaseHooks | None = None
    embedder: Embedder | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    #: a run once the folders were quiet this long
    debounce_s: float = 0.0
    state: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.debounce_s = self.debounce_s or self.settings.sync.debounce_s
        self._pending = _Pending()
        self._wake = threading.Condition()
        self._errors_in_row = 0
        self._warm = False
        self.state = {
            "pid": os.getpid(),
            "started_at": now_iso(),
            "state": "starting",
            "roots": list(self.roots),
            "watcher": "starting",
            "pending_changes": 0,
            "pending_since": None,
            "runs": 0,
            "errors_total": 0,
            "last_run": None,
            "last_release": None,
            "last_error": None,
            "errors": [],
            "waiting_for": None,
            "reindex": None,
            "settings": self.settings.sync.model_dump(mode="json"),
        }
        #: the re-index last tried (Drift.key): not tried again for the same change
        self._reindex_tried: str | None = None
        #: the embedder settings ``embedder`` was loaded with (None: as configured)
        self._embedder_for = self.settings.embedder if self.embedder is not None else None
        #: the settings ordinary runs write with (as the live set was built)
        self._effective = self.settings

    # ------------------------------------------------------------------- events
    def note_change(self, n: int = 1) -> None:
        """The watcher saw ``n`` changes."""
        now = time.monotonic()
        with self._wake:
            p = self._pending
            p.count += n
            p.last = now
            if p.first is None:
                p.first, p.since_iso = now, now_iso()
            self._wake.notify_all()

    def _take_pending(self) -> _Pending:
        with self._wake:
            taken, self._pending = self._pending, _Pending()
            return taken

    def _give_back(self, taken: _Pending) -> None:
        """A run that did not go through: its changes are pending again."""
        with self._wake:
            p = self._pending
            p.count += taken.count or 1
            if taken.first is not None and (p.first is None or taken.first < p.first):
                p.first, p.since_iso = taken.first, taken.since_iso
            p.last = max(p.last or 0.0, taken.last or 0.0) or time.monotonic()
            if p.first is None:
                p.first, p.since_iso = time.monotonic(), now_iso()

    def _due(self, now: float) -> float | None:
        """Seconds until the pending changes are due (0: now); None when none pend."""
        p = self._pending
        if p.first is None or p.last is None:
            return None
        quiet = p.last + self.debounce_s - now
        cap = p.first + self.debounce_s * MAX_DEBOUNCES - now
        return max(0.0, min(quiet, cap))

    # --------------------------------------------------------------------- state
    def _save(self, **changes: Any) -> None:
        self.state.update(changes)
        with self._wake:
            self.state["pending_changes"] = self._pending.count
            self.state["pending_since"] = self._pending.since_iso
        self.state["heartbeat_at"] = now_iso()
        self.state["heartbeat_unix"] = time.time()
        write_state(self.settings.data_dir, self.state)

    def _error(self, message: str) -> None:
        entry = {"at": now_iso(), "message": message[:2000]}
        errors = [*self.state.get("errors", []), entry][-KEEP_ERRORS:]
        self.state["errors_total"] = int(self.state.get("errors_total", 0)) + 1
        self._save(state="error", last_error=entry, errors=errors)
        log.error("sync: %s", message)

    # ---------------------------------------------------------------------- loop
    def run_forever(self, *, watch: bool = True) -> None:
        watcher: Watcher | None = None
        if watch:
            retry = min(10.0, self.settings.sync.rescan_interval_s)
            watcher = Watcher(
                self.roots,
                self.note_change,
                self.stop,
                retry_s=retry,
                ignore=str(self.settings.data_dir),
            )
            watcher.start()
        self.note_change(0)  # the catch-up run at start (a restart picks up what it missed)
        with self._wake:
            self._pending.first = self._pending.last = time.monotonic() - self.debounce_s
        rescan = self.settings.sync.rescan_interval_s
        next_rescan = time.monotonic() + rescan
        retry_at = 0.0
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                with self._wake:
                    due = self._due(now)
                if now >= retry_at and (due == 0.0 or now >= next_rescan):
                    next_rescan = now + rescan
                    pause = self.run_once(rescan=due is None)
                    retry_at = time.monotonic() + pause
                    if not self._warm:
                        self.warm_up()
                    continue
                waits = [HEARTBEAT_S, next_rescan - now]
                if due is not None:
                    waits.append(max(due, retry_at - now))
                self._save(
                    state=self.state["state"]
                    if self.state["state"] in ("error", "blocked", "waiting")
                    else "watching",
                    watcher=watcher.status if watcher else "off",
                )
                with self._wake:
                    self._wake.wait(timeout=max(0.05, min(waits)))
        finally:
            self.stop.set()
            self._save(state="stopped")

    def run_once(self, *, rescan: bool = False) -> float:
        """One ingest over the roots; returns how long to wait before another attempt
        (0 after a run that went through)."""
        from ingest.pipeline import ingest_paths
        from ingest.reindex import as_built, build_drift
        from store.lock import WriterBusyError

        taken = self._take_pending()
        started, t0 = now_iso(), time.perf_counter()
        self._save(state="running", waiting_for=None)
        try:
            drift = build_drift(self.settings)
            auto = self.settings.sync.reindex == "auto"
            if drift is not None and auto and drift.key != self._reindex_tried:
                return self._reindex(drift, taken, started, t0)
            settings = self.settings if drift is None else as_built(self.settings, drift)
            self._effective = settings
            if self._embedder_for != settings.embedder:
                self.embedder = None  # loaded for other settings (before a re-index)
            summary = ingest_paths(
                settings,
                self.roots,
                prune=self.settings.sync.prune,
                embedder=self.embedder,
                hooks=self.hooks,
                loaded=self._keep_embedder,
            )
        except WriterBusyError as exc:
            self._give_back(taken)
            self._save(state="waiting", waiting_for=exc.message)
            return self.settings.sync.lock_retry_s
        except EnclaveError as exc:
            self._give_back(taken)
            return self._failed(exc.message)
        except Exception as exc:  # the service reports and goes on
            log.exception("sync run failed")
            self._give_back(taken)
            return self._failed(f"{type(exc).__name__}: {exc}")
        self._errors_in_row = 0
        self._record(summary.to_dict(), started, time.perf_counter() - t0, taken, rescan)
        return 0.0

    def _reindex(self, drift: Drift, taken: _Pending, started: str, t0: float) -> float:
        """Build the re-index ``drift`` asks for (module docstring); raises what a run raises
        (the caller reports it), and then it is not tried again for the same change, unless
        another writer came first."""
        from ingest.reindex import reindex_job
        from store.lock import WriterBusyError

        self._reindex_tried = drift.key
        self._save(state="reindexing")
        log.info("sync: re-index (%s)", "; ".join(drift.changes))
        try:
            out = reindex_job(
                self.settings,
                self.roots,
                drift,
                hooks=self.hooks,
                report=lambda job: self._save(reindex=job),
            )
        except WriterBusyError:
            self._reindex_tried = None
            raise
        self.embedder, self._embedder_for = None, None  # the next run loads what is live
        self._errors_in_row = 0
        self._record(out, started, time.perf_counter() - t0, taken, False)
        return 0.0

    def warm_up(self) -> None:
        """Load what the first change would otherwise wait for (LanceDB, the embedder): an
        unchanged catch-up run needs neither, and a service should answer its first change as
        fast as its hundredth."""
        self._warm = True
        self._save(state="warming")
        try:
            import lancedb  # noqa: F401

            if self.embedder is None:
                from models.loading import load_embedder

                self.embedder = load_embedder(self._effective.embedder)
                self._embedder_for = self._effective.embedder
        except Exception as exc:  # the run that needs them reports the error
            log.warning("sync: warm-up: %s", exc)

    def _keep_embedder(self, embedder: Embedder) -> None:
        self.embedder = embedder  # loaded once, kept for the next runs
        self._embedder_for = self._effective.embedder

    def _failed(self, message: str) -> float:
        self._errors_in_row += 1
        self._error(message)
        return float(min(self.settings.sync.rescan_interval_s, 2.0**self._errors_in_row))

    def _record(
        self, d: dict[str, Any], started: str, seconds: float, taken: _Pending, rescan: bool
    ) -> None:
        """Note a run that went through; ``d`` is its summary (``IngestSummary.to_dict``)."""
        rel = d.get("release") or {}
        last_run = {
            "started_at": started,
            "finished_at": now_iso(),
            "seconds": round(seconds, 3),
            "trigger": "reindex"
            if "reindex" in d
            else "rescan"
            if rescan and not taken.count
            else "changes",
            "changes": taken.count,
            "files_seen": d["files_seen"],
            "ingested": d["ingested"],
            "updated": d["updated"],
            "deleted": d["deleted"],
            "failed": len(d["failed"]),
            "from_snapshot": d.get("from_snapshot", False),
            "release": rel.get("id"),
            "release_state": rel.get("state"),
            "promoted": bool(rel.get("promoted")),
            "blocked": bool(rel.get("blocked")),
            "reason": rel.get("reason") if rel.get("id") else None,
            "live": rel.get("live"),
        }
        changes: dict[str, Any] = {"runs": int(self.state["runs"]) + 1, "last_run": last_run}
        if rel.get("id"):
            changes["last_release"] = {
                "id": rel["id"],
                "state": "live" if rel.get("promoted") else rel.get("state"),
                "at": last_run["finished_at"],
                "reason": rel.get("reason"),
            }
        state = "watching"
        if rel.get("blocked"):
            state = "blocked"
        self._save(state=state, **changes)
        if rel.get("id"):
            log.info(
                "sync: %s %s (%d new, %d changed, %d deleted, %.1f s)",
                rel["id"],
                "live" if rel.get("promoted") else rel.get("state"),
                d["ingested"],
                d["updated"],
                d["deleted"],
                seconds,
            )
