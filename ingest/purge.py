"""``enclave purge``: a document that must go leaves every release and every file.

The store's purge (store/purge.py) removes the document from the head and from every retained
release, physically. Files outside the index that may quote it (the gate's kept reports and
other evaluation reports) are cleaned by the ``scrub`` hook the evaluation package lends
(ingest/promotion.py :class:`ReleaseHooks`). The purge is audited (``cli:purge``, or the
HTTP request's own record for ``DELETE /v1/documents/{id}``).

An evaluation index under ``<data_dir>/eval/`` (built by ``enclave eval`` from a golden set's
``documents/``) that holds the file is a cache: it is deleted, and the next evaluation builds
it again.

What a purge cannot reach: an audit log written with ``security.audit_questions = "full"``
keeps the questions people asked (its hash chain forbids rewriting it), and copies made
outside the data directory.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from enclave.errors import NotFoundError
from enclave.settings import Settings
from ingest.promotion import ReleaseHooks, audit
from ingest.snapshot import forget_snapshot
from store.lock import WriterLock
from store.records import doc_id_for_path
from store.schema import HEX_ID


def resolve_targets(target: str) -> list[str]:
    """A document id (24 hex) or a file path (its id, whether or not the file still exists)."""
    if HEX_ID.match(target) and not Path(target).exists():
        return [target]
    return [doc_id_for_path(target)]


def held_anywhere(store: Any, registry: Any, doc_ids: list[str]) -> bool:
    """Whether the head or any retained release has a row of ``doc_ids`` (no write)."""
    from store.registry import EXPIRED, SUPERSEDED
    from store.view import IndexView

    if store.has_tables() and store.documents_by_id(doc_ids):
        return True
    from store.releases import Releases

    releases = Releases(store, registry)
    for rec in registry.records():
        if rec.state in (EXPIRED, SUPERSEDED):
            continue
        held = releases.store_for(rec.tables)
        view = IndexView(held.connection, held.location, rec.versions, rec.id)
        if view.documents_by_id(doc_ids):
            return True
    return False


def drop_eval_indexes(settings: Settings, paths: set[str]) -> list[str]:
    """Delete the evaluation indexes (caches) that hold one of ``paths``."""
    from store.db import Store

    dropped: list[str] = []
    root = Path(settings.data_dir) / "eval"
    for marker in sorted(root.glob("*/eval-index.json")) if root.is_dir() else []:
        lance = marker.parent / "lancedb"
        if lance.is_dir() and paths & set(Store(lance).documents_state()):
            shutil.rmtree(marker.parent)
            dropped.append(str(marker.parent))
    return dropped


def _vector_index_due(settings: Settings, store: Any) -> bool:
    from store.ann import AnnTuning, vector_index_due

    table = store.chunks_table()
    return table is not None and bool(
        vector_index_due(table, AnnTuning.from_settings(settings.vector_index))
    )


def _rebuild(settings: Settings) -> dict[str, Any]:
    """The vector index again after a purge: in the background, or now (vector_index.background)."""
    from store.index_build import optimize, start_background_build

    if settings.vector_index.background:
        return {"background_build_pid": start_background_build(settings)}
    return optimize(settings)


def purge(
    settings: Settings,
    target: str,
    *,
    hooks: ReleaseHooks | None,
    by: str = "enclave purge",
    audited: bool = True,
) -> dict[str, Any]:
    """Purge the document ``target`` names (module docstring); NotFoundError when no
    retained release nor the head holds it."""
    from store.db import Store
    from store.purge import purge_documents
    from store.registry import Registry
    from store.releases import Releases
    from store.sets import active_tables

    ids = resolve_targets(target)
    with WriterLock(settings.index, by):
        live_set = active_tables(settings.index)
        store = Store(settings.index, tables=live_set)
        registry = Registry.at(settings.index)
        if not held_anywhere(store, registry, ids):
            raise NotFoundError(f"no release holds a document {target[:200]!r}")
        result = purge_documents(store, registry, ids)  # the live set first
        releases = Releases(store, registry)
        for tables in sorted(releases.used_sets() - {live_set}, key=str):
            other = purge_documents(releases.store_for(tables), registry, ids)
            result.releases.update(other.releases)
            known = {d.doc_id for d in result.documents}
            result.documents += [d for d in other.documents if d.doc_id not in known]
        forget_snapshot(settings.data_dir)
        scrubbed = hooks.scrub(settings, result.documents) if hooks and hooks.scrub else []
        dropped = drop_eval_indexes(settings, {d.path for d in result.documents})
        due = _vector_index_due(settings, store)
    out = {**result.to_dict(), "scrubbed_files": scrubbed, "eval_indexes_deleted": dropped}
    if due:  # the purge dropped the vector index: built again without the purged rows
        out["index_build"] = _rebuild(settings)
    if audited:
        audit(settings, "cli:purge", "ok", {"doc_ids": result.doc_ids,
                                             "releases": sorted(result.releases)})  # fmt: skip
    return out
