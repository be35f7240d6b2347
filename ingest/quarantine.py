"""``enclave quarantine list|release|retry``: documents kept out for their parse quality.

An ingest run scores every parsed document (ingest/quality.py) and quarantines one below
``quality.min_score``: a document row with status ``quarantined``, the reason, the score and
the signals, and **no chunks**. Every read path (search, chat, the documents listing, lineage,
the evaluation) reads chunks or rows of a promoted release, so a quarantined document can be
listed with its reason but never serve a passage.

* ``list``: the quarantined documents of the live release (``--release`` another one, or
  ``head`` for what the writer holds, a candidate waiting included).
* ``release DOC...``: let these documents in despite their score. Under the writer lock, each
  file is parsed again and indexed, and its row records the admission (the file's sha256, when,
  by whom): later runs keep admitting that same file and score it again only once it changes.
  The change is a candidate release like any ingest, through the rails and the gate
  (``release.auto_promote``). Audited (``cli:quarantine release``).
* ``retry DOC...`` (or ``--all``): parse them again now, scored as usual (after installing
  Tesseract, say): a document that now passes is indexed, one that does not stays quarantined
  with its new reason. A candidate release too.

A document is named by its id or its path; ``--all`` takes every quarantined document of the
head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from enclave.errors import UsageError
from enclave.settings import Settings
from ingest.promotion import ReleaseHooks
from ingest.summary import IngestSummary
from store.location import IndexLocation
from store.records import STATUS_QUARANTINED, DocumentRecord, fs_path_for, normalise_path
from store.sets import active_tables


def quarantine_row(doc: DocumentRecord, *, signals: bool = True) -> dict[str, Any]:
    """A quarantined document as ``list`` and ``enclave status`` show it."""
    out: dict[str, Any] = {
        "id": doc.doc_id,
        "path": doc.path,
        "title": doc.title,
        "reason": doc.error,
        "score": doc.quality_score,
        "parser": doc.parser,
        "ingested_at": doc.ingested_at,
    }
    if signals:
        out["signals"] = dict(doc.quality.get("signals") or {})
    return out


def _lance_dir(settings: Settings) -> IndexLocation:
    """The index (``store.uri`` or ``<data_dir>/lancedb``); a local one must exist."""
    location = settings.index
    if not location.is_remote and not location.local_path.is_dir():
        raise UsageError(
            f"no index in {settings.data_dir}: run `enclave ingest PATH --data-dir "
            f"{settings.data_dir}`"
        )
    return location


def list_quarantined(settings: Settings, release: str = "live") -> dict[str, Any]:
    """The quarantined documents of a release (``live`` by default, ``head`` for the
    writer's head: a waiting candidate and the last run included)."""
    from store.db import Store
    from store.releases import Releases

    location = _lance_dir(settings)
    store = Store(location, tables=active_tables(location))
    rels = Releases(store)
    if release == "head":
        reader: Any = store
        name: str | None = "head"
    elif release == "live":
        reader = rels.live_view()
        live = rels.registry.live()
        name = live.release if live else None
    else:
        rec = rels.registry.resolve(release)
        reader, name = rels.view(rec), rec.id
    docs = [d for d in reader.list_documents() if d.status == STATUS_QUARANTINED]
    return {"release": name, "quarantined": [quarantine_row(d) for d in docs]}


def resolve(settings: Settings, refs: list[str], *, every: bool = False) -> list[DocumentRecord]:
    """The quarantined documents of the head named by ``refs`` (ids or paths), or all of
    them. UsageError for a name that matches no document, or one not quarantined."""
    from store.db import Store

    location = _lance_dir(settings)
    store = Store(location, tables=active_tables(location))
    state = store.documents_state()
    if every:
        return [d for d in state.values() if d.status == STATUS_QUARANTINED]
    if not refs:
        raise UsageError("name the documents (id or path), or give --all")
    by_id = {d.doc_id: d for d in state.values()}
    out: list[DocumentRecord] = []
    for ref in refs:
        doc = by_id.get(ref) or state.get(ref) or state.get(normalise_path(ref))
        if doc is None:
            raise UsageError(f"no document {ref!r} in the index")
        if doc.status != STATUS_QUARANTINED:
            raise UsageError(f"{doc.path} is not quarantined (status {doc.status})")
        if doc not in out:
            out.append(doc)
    return out


def reparse(
    settings: Settings,
    docs: list[DocumentRecord],
    *,
    admit: bool,
    hooks: ReleaseHooks | None = None,
) -> IngestSummary:
    """Parse ``docs`` again through the ingest pipeline (the writer lock, a candidate release,
    the rails, the gate, the switch); ``admit`` indexes them whatever their score."""
    from ingest.pipeline import ingest_paths
    from ingest.promotion import audit

    ids = frozenset(d.doc_id for d in docs)
    command = "release" if admit else "retry"
    paths = [fs_path_for(d.path, d.doc_id) for d in docs]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise UsageError(f"the file is gone: {missing[0]} (`enclave ingest --prune` removes it)")
    summary = ingest_paths(
        settings,
        paths,
        force=ids,
        admit=ids if admit else frozenset(),
        by=f"enclave quarantine {command}",
        hooks=hooks,
    )
    audit(
        settings,
        f"cli:quarantine {command}",
        "ok",
        {
            "documents": sorted(ids),
            "release": (summary.release or {}).get("id"),
            "still_quarantined": len(summary.quarantined),
        },
    )
    return summary
