"""A progress bar for ``enclave ingest`` on stderr (files/s and the current file)."""

from __future__ import annotations

import os
from types import TracebackType
from typing import Any


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

    def advance(self, path: str) -> None:
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
