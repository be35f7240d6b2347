"""A release's pinned, read-only view of the index.

An :class:`IndexView` opens both tables at the versions a release recorded
(``open_table(name, version=N)``): what it reads never changes, whatever a writer does to the
head meanwhile, and a LanceDB read never checks for newer versions. Opening one costs about a
millisecond, and views share their connection; a view stays readable for as long as its
release keeps its tags (store/releases.py), since cleanups never remove a tagged version.

:data:`EMPTY` reads as an index with nothing in it: what a server serves before any release.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from store.ann import DEFAULT_TUNING, AnnTuning
from store.location import IndexLocation, locate
from store.reader import TableReader
from store.records import read_index_meta

DOCUMENTS = "documents"
CHUNKS = "chunks"


class IndexView(TableReader):
    """The documents and chunks tables of one release, pinned at its versions."""

    def __init__(
        self,
        connection: Any,
        lance_dir: IndexLocation | Path | str,
        versions: Mapping[str, int | None],
        release_id: str | None,
        tuning: AnnTuning = DEFAULT_TUNING,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        self.location = locate(lance_dir)
        self.path = self.location.local_root
        self.tuning = tuning
        self.release_id = release_id
        self.versions: dict[str, int | None] = {
            DOCUMENTS: versions.get(DOCUMENTS),
            CHUNKS: versions.get(CHUNKS),
        }
        self._docs = _pinned(connection, DOCUMENTS, self.versions[DOCUMENTS])
        self._chunks_table = _pinned(connection, CHUNKS, self.versions[CHUNKS])
        #: the table set's ``enclave-index.json`` (embedder, dimension, build settings)
        self.meta: dict[str, Any] = dict(read_index_meta(self.location) if meta is None else meta)
        self._dimension = self.meta.get("dimension")

    def _documents(self) -> Any | None:
        return self._docs

    def _chunks(self) -> Any | None:
        return self._chunks_table

    def _chunks_version(self, table: Any) -> int:
        pinned = self.versions[CHUNKS]  # opened at it: it never changes
        return int(table.version) if pinned is None else int(pinned)

    @property
    def dimension(self) -> int | None:
        return int(self._dimension) if self._dimension else None

    @property
    def embedder_name(self) -> str | None:
        """The embedder the release's tables were built with (their table set's)."""
        name = self.meta.get("embedder")
        return str(name) if name else None

    def __repr__(self) -> str:
        return f"IndexView({self.release_id!r}, {self.versions})"


class EmptyView(TableReader):
    """No release yet: no documents, no chunks."""

    release_id = None

    def __init__(self) -> None:
        self.versions: dict[str, int | None] = {DOCUMENTS: None, CHUNKS: None}

    def _documents(self) -> Any | None:
        return None

    def _chunks(self) -> Any | None:
        return None

    @property
    def dimension(self) -> int | None:
        return None

    embedder_name = None
    meta: dict[str, Any] = {}  # noqa: RUF012 - read only


EMPTY = EmptyView()


def _pinned(connection: Any, name: str, version: int | None) -> Any | None:
    if version is None:
        return None
    return connection.open_table(name, version=int(version))
