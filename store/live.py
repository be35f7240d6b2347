"""What a server reads: the live release, followed as it changes.

:class:`LiveIndex` holds the pinned view (store/view.py) of the release ``live.json`` names.
:meth:`LiveIndex.reader` is called once at the start of every request: at most every
``check_s`` (half a second) it looks at the pointer file's inode, size and mtime (one
``stat``), and when the pointer moved it opens the new release's view and swaps it in
atomically. A request keeps the view it started with to its end, so no request mixes two
releases, and nothing that was not promoted is ever read: the head, where ingest runs write,
is never opened here.

A release may live in another table set (store/sets.py: built by ``enclave reindex``, maybe
with another embedder): its view opens that set's tables, and ``accept`` (given by the server)
may keep the current view a little longer, until the embedder of the new set is loaded, so
that a question is always embedded by the model its view's vectors came from.

An index that predates releases is adopted on first sight (its current versions become the
first release, live) when no writer holds the lock; until a release exists the server serves
an empty index.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from store.ann import DEFAULT_TUNING, AnnTuning
from store.location import IndexLocation, locate
from store.reader import TableReader
from store.records import read_index_meta
from store.registry import LivePointer, Registry
from store.view import EMPTY, IndexView

log = logging.getLogger(__name__)

CHECK_S = 0.5


class LiveIndex:
    """The live release of the index at ``lance_dir``, for a server's requests."""

    def __init__(
        self,
        lance_dir: IndexLocation | Path | str,
        *,
        check_s: float = CHECK_S,
        accept: Callable[[IndexView], bool] | None = None,
        tuning: AnnTuning = DEFAULT_TUNING,
    ) -> None:
        #: the ``vector_index`` settings vector search follows (store/ann.py)
        self.tuning = tuning
        #: where the index lives (a local folder or an s3:// prefix)
        self.location = locate(lance_dir)
        self.location.check()
        #: the local folder of the index, or this host's side folder of a remote one
        self.path = self.location.local_root
        self.check_s = check_s
        self.registry = Registry.at(self.location)
        #: called with a new release's view before it is served; False: not yet (the
        #: pointer is looked at again at the next check)
        self.accept = accept
        self._dbs: dict[str | None, Any] = {}
        self._db: Any = self._connection(None)
        #: each table set's embedder binding, read once it exists (it never changes after)
        self._metas: dict[str | None, dict[str, Any]] = {}
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

    def _connection(self, tables: str | None) -> Any:
        """One LanceDB connection per table set, kept."""
        if tables not in self._dbs:
            from store.sets import set_location

            self._dbs[tables] = set_location(self.location, tables).connect(timedelta(0))
        return self._dbs[tables]

    def meta(self) -> dict[str, Any]:
        """The ``enclave-index.json`` of the live release's tables (its table set's)."""
        view = self._view
        if isinstance(view, IndexView):
            return view.meta
        return self._set_meta(None)

    def _set_meta(self, tables: str | None) -> dict[str, Any]:
        """The embedder binding of table set ``tables`` (read once it exists: it never
        changes after)."""
        if not self._metas.get(tables):
            from store.sets import set_location

            self._metas[tables] = read_index_meta(set_location(self.location, tables))
        return self._metas[tables]

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
            try:
                stamp = self.registry.live_stamp()
                if stamp is None:
                    self._adopt()
                    stamp = self.registry.live_stamp()
                    if stamp is None:
                        return
                if stamp == self._stamp:
                    return
                pointer = self.registry.live()
            except Exception as exc:  # the object store did not answer: keep the current view
                if force and self._pointer is None:
                    raise
                log.warning("cannot read the live pointer of %s: %s", self.location, exc)
                return
            if pointer is None:
                return
            try:
                from store.sets import set_location

                view = IndexView(
                    self._connection(pointer.tables),
                    set_location(self.location, pointer.tables),
                    pointer.versions,
                    pointer.release,
                    self.tuning,
                    meta=self._set_meta(pointer.tables),
                )
                searcher = view.vector_searcher()  # counts and indexes read now, not by a request
            except Exception as exc:  # versions not readable (yet): keep serving the old one
                log.warning("cannot open release %s: %s", pointer.release, exc)
                return
            if self.accept is not None and not self.accept(view):
                return  # e.g. its embedder is still loading: serve the current view meanwhile
            if searcher is not None and searcher.path == "exact":  # vectors loaded off-request
                threading.Thread(target=searcher.exact, name="enclave-exact", daemon=True).start()
            elif searcher is not None and searcher.path == "ann":  # row cache, off-request
                served = self._view.searcher_in_use() if self._view is not None else None
                previous = served.row_cache if served is not None else None
                threading.Thread(
                    target=searcher.load_row_cache,
                    args=([previous] if previous is not None else None,),  # emptied there
                    name="enclave-rows",
                    daemon=True,
                ).start()
            self._view, self._pointer, self._stamp = view, pointer, stamp
            log.info("serving release %s", pointer.release)
        finally:
            self._lock.release()

    def _adopt(self) -> None:
        """Adopt an index written before releases, unless a writer is busy (it will)."""
        if self.registry.ids() or "documents" not in self._db.list_tables().tables:
            return
        from store.db import Store
        from store.lock import WriterBusyError, WriterLock
        from store.releases import Releases

        try:
            with WriterLock(self.location, "enclave serve (adopting the index)"):
                Releases(Store(self.location, tuning=self.tuning)).adopt()
        except WriterBusyError:
            return
