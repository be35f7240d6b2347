"""Purge: a document that must go (a legal request, a leaked secret) leaves every release.

Deleting rows in LanceDB only marks them deleted: their text stays in the data files, in the
full-text index's postings, and in every older version that still references those files.
A purge therefore, for the head and for every retained release (the live one first, so that
it leaves what is served at once):

1. restores that release's versions on the head (no data copied);
2. rewrites the fragments that hold the document's rows: their other rows are appended as a
   new fragment, then every row of the old fragments is deleted, which drops those
   fragments (and their files) from the version; fragments without the document stay shared;
3. rebuilds the full-text index and the scalar indexes from the remaining rows, and drops
   the vector index (it holds the rows' quantized vectors): that release is searched exactly
   or by a flat scan until ``enclave index optimize`` builds the index again (store/ann.py);
4. moves the release's tags (and the live pointer, for the live release) to the new versions.

Then every purged version is restored once more, in a row at the end of the history, and
every version older than the first of them is removed: the versions that still referenced the
document's files (the release's old ones, and the steps in between) go, and with them every
file holding its text. What the index directory keeps afterwards never held the document.
Text outside the index (the gate's kept reports) is the caller's to clean.

A purge waits for a running vector index build to finish (the build would commit an index of
the rows being purged) and holds the build lock while it runs.

A marker (``_enclave/purge.json``) names the documents while a purge runs; a purge killed half
way is finished by the next writer (:func:`resume_purge`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from store.ann import DOCUMENT_INDEXES, BuildLock, forget_indexed_values
from store.db import CHUNKS, DOCUMENTS, Store
from store.lock import WriterBusyError
from store.maintain import fragment_rows, rewrite_fragments
from store.records import DocumentRecord
from store.registry import EXPIRED, SUPERSEDED, LivePointer, Registry, ReleaseRecord, now_iso
from store.schema import HEX_ID, sql_str

PURGE_FILE = "purge.json"


def _purge_file(tables: str | None) -> str:
    """The marker of a purge of one table set (store/sets.py): each set is purged apart."""
    return PURGE_FILE if tables is None else f"purge-{tables}.json"


def _of_set(store: Store, registry: Registry) -> list[ReleaseRecord]:
    """The retained releases whose tables are ``store``'s."""
    return [
        r
        for r in registry.records()
        if r.state not in (EXPIRED, SUPERSEDED) and r.tables == store.tables
    ]


#: the tag that keeps the head's versions from before a purge until the purge has finished
HEAD_TAG = "purge-head"
#: a pause between the purge's rewrites and the restores after them, so the cleanup's
#: cut-off (by version timestamp) falls cleanly between the two
SETTLE_S = 0.1
#: how long a purge waits for a running vector index build to finish
BUILD_WAIT_S = 900.0


@dataclass
class PurgeResult:
    doc_ids: list[str]
    #: every document row found, in any release, before the purge
    documents: list[DocumentRecord] = field(default_factory=list)
    #: release id -> chunks removed from it
    releases: dict[str, int] = field(default_factory=dict)
    head_chunks: int = 0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "doc_ids": self.doc_ids,
            "paths": sorted({d.path for d in self.documents}),
            "releases": self.releases,
            "head_chunks": self.head_chunks,
            "seconds": round(self.seconds, 3),
        }


def _pred(doc_ids: list[str]) -> str:
    return "doc_id IN (" + ", ".join(sql_str(d) for d in doc_ids) + ")"


def rewrite_without(table: Any, predicate: str) -> int:
    """Rewrite the fragments of ``table``'s head holding rows that match ``predicate`` so
    that those rows are gone from its files; returns how many rows matched."""
    found = fragment_rows(table, predicate)
    if not found:
        return 0
    rewrite_fragments(table, found, exclude=predicate)
    return sum(live for live, _ in found.values())


def purge_documents(store: Store, registry: Registry, doc_ids: list[str]) -> PurgeResult:
    """Remove ``doc_ids`` from the head and every retained release (module docstring).
    The caller holds the writer lock."""
    started = time.perf_counter()
    ids = sorted({d for d in doc_ids if HEX_ID.match(d)})
    result = PurgeResult(doc_ids=ids)
    if not ids:
        return result
    build = BuildLock(store.root, "purge")
    if not build.acquire(BUILD_WAIT_S):  # a build running now would index purged rows
        raise WriterBusyError(
            "a vector index build is running (enclave index optimize); the purge waits for "
            f"it at most {BUILD_WAIT_S:.0f} s. Run the purge again once it has finished."
        )
    try:
        return _purge(store, registry, ids, result, started)
    finally:
        build.release()


def _purge(
    store: Store, registry: Registry, ids: list[str], result: PurgeResult, started: float
) -> PurgeResult:
    from store.maintain import recover

    recover(store, registry)  # a prune killed half way left the head empty
    local = not store.location.is_remote  # no index builds on object storage (store/ann.py)
    head = _start(store, registry, ids)
    pred = _pred(ids)
    live = registry.live()
    records = _of_set(store, registry)
    records.sort(key=lambda r: (live is None or r.id != live.release, r.id))
    seen: dict[str, DocumentRecord] = {}
    purged: dict[tuple[int | None, int | None], dict[str, int | None]] = {}

    def purge_version(versions: dict[str, int | None]) -> tuple[dict[str, int | None], int]:
        """Returns the purged versions and how many rows (documents and chunks) went."""
        key = (versions.get(DOCUMENTS), versions.get(CHUNKS))
        if key in purged:
            return purged[key], 0
        store.restore(versions)
        docs = store.documents_table()
        for row in docs.search().where(pred).limit(None).to_arrow().to_pylist():
            seen.setdefault(row["doc_id"], DocumentRecord.from_row(row))
        removed = rewrite_without(docs, pred)
        if removed:
            forget_indexed_values(docs, DOCUMENT_INDEXES, rebuild=local)
        chunks = store.chunks_table()
        if chunks is not None and versions.get(CHUNKS) is not None:
            gone = rewrite_without(chunks, pred)
            if gone:
                store.rebuild_fts()
                forget_indexed_values(chunks, rebuild=local)
            removed += gone
        purged[key] = store.head_versions()
        return purged[key], removed

    for rec in records:
        new, removed = purge_version(dict(rec.versions))
        result.releases[rec.id] = removed
        _move(store, registry, rec.id, new, live)
        if removed:
            rec.note("purged", doc_ids=ids, rows=removed)
        rec.versions = new
        registry.save(rec)
    new_head, result.head_chunks = purge_version(dict(head))
    result.documents = sorted(seen.values(), key=lambda d: d.path)

    time.sleep(SETTLE_S)
    _rematerialize(store, registry, new_head)
    registry.files.delete(_purge_file(store.tables))
    result.seconds = time.perf_counter() - started
    return result


def _move(
    store: Store,
    registry: Registry,
    rid: str,
    versions: dict[str, int | None],
    live: LivePointer | None,
) -> None:
    store.tag(rid, versions)
    if live is not None and live.release == rid:
        registry.set_live(
            LivePointer(rid, dict(versions), live.promoted_at, live.promoted_by, live.tables)
        )


def _rematerialize(store: Store, registry: Registry, head: dict[str, int | None]) -> None:
    """Restore every retained release's versions again, in a row, then the head's, and
    remove every version older than the first of them (every file of the old versions)."""
    live = registry.live()
    records = _of_set(store, registry)
    done: dict[tuple[int | None, int | None], dict[str, int | None]] = {}
    for rec in records:
        key = (rec.versions.get(DOCUMENTS), rec.versions.get(CHUNKS))
        if key not in done:
            store.restore(rec.versions)
            done[key] = store.head_versions()
        new = done[key]
        _move(store, registry, rec.id, new, live)
        rec.versions = new
        registry.save(rec)
    store.restore(head)
    store.untag(HEAD_TAG)
    store.optimize()


def _start(store: Store, registry: Registry, ids: list[str]) -> dict[str, int | None]:
    """Write the marker and protect the head's versions (a resumed purge reads them from
    the tag); returns the head's versions from before the purge."""
    tags = store.tags()
    if HEAD_TAG in tags:  # resuming: the head from before the first attempt
        head: dict[str, int | None] = {DOCUMENTS: None, CHUNKS: None}
        head.update(tags[HEAD_TAG])
    else:
        head = store.head_versions()
        store.tag(HEAD_TAG, head)
    data = {"doc_ids": ids, "head": head, "at": now_iso()}
    registry.files.write(_purge_file(store.tables), json.dumps(data).encode())
    return head


def pending_purge(registry: Registry, tables: str | None = None) -> list[str]:
    """The documents of a purge of set ``tables`` that was killed half way (empty when
    none)."""
    data = registry.files.read(_purge_file(tables))
    if data is None:
        return []
    try:
        return [str(d) for d in json.loads(data).get("doc_ids") or []]
    except ValueError:
        return []


def resume_purge(store: Store, registry: Registry) -> PurgeResult | None:
    """Finish a purge killed half way; None when there is none."""
    ids = pending_purge(registry, store.tables)
    return purge_documents(store, registry, ids) if ids else None
