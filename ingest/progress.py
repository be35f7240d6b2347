"""Progress of ``enclave ingest`` on stderr: a bar for people, JSON lines for machines.

* :class:`IngestProgress`: a rich bar (files done, files/s, the current file), for a terminal.
* :class:`LineProgress`: one JSON object per line on stderr, at the start, every
  :data:`LINE_INTERVAL_S` seconds (from a background thread, so a run busy with one huge file
  still reports), and at the end: ``{"progress": {files_done, files_total, ingested,
  updated, unchanged, failed, chunks_written, bytes_done, bytes_total, elapsed_s, eta_s,
  current}, "final": bool}``. ``eta_s`` extrapolates the bytes of the files that need work
  (new, changed or retried) done so far; it is null until one is done.

``enclave ingest`` shows the bar when stderr is a terminal and ``--json`` is not given, the
lines when stderr is not a terminal (a log, a pipe) or with ``--progress``, and nothing with
``--no-progress``; stdout only ever holds the summary. A long-lived caller (``enclave sync``
during a re-index) passes a function instead: it receives each line's object.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

#: seconds between two progress lines
LINE_INTERVAL_S = 5.0

#: what a run shows: a bar (true, ``"bar"``), JSON lines (``"lines"``), nothing (false), or
#: each line's object handed to a function
Progress = bool | str | Callable[[dict[str, Any]], None]


class IngestProgress:
    """A rich progress bar; does nothing when disabled."""

    def __init__(self, *, enabled: bool, total: int) -> None:
        self.enabled = enabled and total > 0
        self.total = total
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> IngestProgress:
        if not self.enabled:
            return self
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("ingest"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} files/s"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[current]}", style="dim"),
            console=Console(stderr=True),
            transient=True,
        )
        self._progress.start()
        self._task = self._progress.add_task("ingest", total=self.total, rate="-", current="")
        return self

    def advance(self, path: str, size: int = 0, work: bool = True) -> None:
        """One file counted (``size`` bytes; ``work``: it needed hashing or parsing)."""
        if self._progress is None:
            return
        task = self._progress.tasks[0]
        speed = task.speed
        rate = f"{speed:.1f}" if speed else "-"
        name = os.path.basename(path)
        if len(name) > 40:
            name = name[:37] + "..."
        self._progress.update(self._task, advance=1, rate=rate, current=name)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


class LineProgress:
    """JSON progress lines on ``stream`` (stderr) while a run goes on; see the module
    docstring. ``stats()`` gives the run's counters at the moment of a line."""

    def __init__(
        self,
        *,
        total: int,
        bytes_total: int,
        stats: Callable[[], dict[str, int]],
        stream: TextIO | None = None,
        interval_s: float | None = None,
        sink: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.total = total
        self.sink = sink
        self.bytes_total = bytes_total
        self.stats = stats
        self.stream = stream
        self.interval_s = LINE_INTERVAL_S if interval_s is None else interval_s
        self.done = 0
        self.bytes_done = 0
        self.current = ""
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="ingest-progress", daemon=True)

    def __enter__(self) -> LineProgress:
        self._t0 = time.monotonic()
        self.line()
        self._thread.start()
        return self

    def advance(self, path: str, size: int = 0, work: bool = True) -> None:
        self.done += 1
        if work:
            self.bytes_done += size
        self.current = path

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.line()

    def line(self, *, final: bool = False) -> None:
        """Write one progress line now."""
        elapsed = time.monotonic() - self._t0
        eta: float | None = None
        if final:
            eta = 0.0
        elif self.bytes_done and self.bytes_total:
            left = max(0, self.bytes_total - self.bytes_done)
            eta = round(elapsed * left / self.bytes_done, 1)
        progress: dict[str, Any] = {
            "files_done": self.done,
            "files_total": self.total,
            **self.stats(),
            "bytes_done": self.bytes_done,
            "bytes_total": self.bytes_total,
            "elapsed_s": round(elapsed, 1),
            "eta_s": eta,
            "current": self.current,
        }
        if self.sink is not None:
            self.sink({"progress": progress, "final": final})
            return
        text = json.dumps({"progress": progress, "final": final})
        stream = self.stream or sys.stderr
        with self._lock:
            try:
                stream.write(text + "\n")
                stream.flush()
            except (OSError, ValueError):
                pass  # a closed stderr never stops a run

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        self.line(final=exc_type is None)
