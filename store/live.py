"""What a server reads: the live release, followed as it changes.

:class:`LiveIndex` holds the pinned view (store/view.py) of the release ``live.json`` names.
:meth:`LiveIndex.reader` is called once at the start of every request: at most every
``check_s`` (half a second) it looks at the pointer file's inode, size and mtime (one
``stat``), and when the pointer moved it opens the new release's view and swaps it in
atomically. A request keeps the view it started with to its end, so no request mixes two
releases, and nothing that was not promoted is ever read: the head, where ingest runs write,
is never opened here.

An index that predates releases is adopted on first sight (its current versions become the
first release, live) when no writer holds the lock; until a release exists the server serves
an empty index.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from store.reader import TableReader
from store.records import read_index_meta
from store.registry import LivePointer, Registry
from store.view import EMPTY, IndexView

log = logging.getLogger(__name__)

CHECK_S = 0.5


class LiveIndex:
    """The live release of the index at ``lance_dir``, for a server's requests."""

    def __init__(self, lance_dir: Path | str, *, check_s: float = CHECK_S) -> None:
        import lancedb

        self.path = Path(lance_dir)
        self.path.mkdir(parents=True, exist_ok=True)
        self.check_s = check_s
        self.registry = Registry.at(self.path)
        self._db: Any = lancedb.connect(str(self.path), read_consistency_interval=timedelta(0))
        self._view: TableReader = EMPTY
        self._pointer: LivePointer | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._checked = float("-inf")
        self._lock = threading.Lock()
        self.refresh(force=True)

    # ------------------------------------------------------------------ reading
    def reader(self) -> TableReader:
        """The view of the release live now; one per request."""
        if time.monotonic() - self._checked >= self.check_s:
            self.refresh()
        return self._view

    @property
    def pointer(self) -> LivePointer | None:
        """The live pointer the current view was opened from."""
        return self._pointer

    @property
    def release_id(self) -> str | None:
        return self._view.release_id

    @property
    def connection(self) -> Any:
        """The LanceDB connection the views share."""
        return self._db

    def meta(self) -> dict[str, Any]:
        return read_index_meta(self.path)

    @property
    def embedder_name(self) -> str | None:
        name = self.meta().get("embedder")
        return str(name) if name else None

    @property
    def dimension(self) -> int | None:
        dim = self.meta().get("dimension")
        return int(dim) if dim else None

    # ----------------------------------------------------------------- following
    def refresh(self, *, force: bool = False) -> None:
        """Swap to the pointer's release when it moved (``force``: look now)."""
        if not self._lock.acquire(blocking=force):
            return  # another thread is looking: serve the current view meanwhile
        try:
            self._checked = time.monotonic()
            stamp = self.registry.live_stamp()
            if stamp is None:
                self._adopt()
                stamp = self.registry.live_stamp()
                if stamp is None:
                    return
            if stamp == self._stamp:
                return
            pointer = self.registry.live()
            if pointer is None:
                return
            try:
                view = IndexView(self._db, self.path, pointer.versions, pointer.release)
            except Exception as exc:  # versions not readable (yet): keep serving the old one
                log.warning("cannot open release %s: %s", pointer.release, exc)
                return
            self._view, self._pointer, self._stamp = view, pointer, stamp
            log.info("serving release %s", pointer.release)
        finally:
            self._lock.release()

    def _adopt(self) -> None:
        """Adopt an index written before releases, unless a writer is busy (it will)."""
        if self.registry.ids() or not (self.path / "documents.lance").is_dir():
            return
        from store.db import Store
        from store.lock import WriterBusyError, WriterLock
        from store.releases import Releases

        try:
            with WriterLock(self.path, "enclave serve (adopting the index)"):
                Releases(Store(self.path)).adopt()
        except WriterBusyError:
            return
