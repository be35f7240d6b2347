"""Change detection: what a run has to do with each file, decided before any file is read.

Incremental rules (per file, keyed by its normalised path):

* same size and mtime as the stored row: unchanged, the file is not even read
  (``ingest.rehash`` forces hashing);
* otherwise the file is hashed (ingest/produce.py); the same sha256 means unchanged (only the
  row's mtime moves);
* a changed file is parsed again and its chunks replaced (``Store.replace_documents`` deletes
  before adding and writes the row last, so an interrupted run is redone, never doubled);
* a file that failed before is retried when it changes, and also when it did not change if
  the failure was transient (:data:`RETRY_MARKERS`): a parser timeout, a permission problem
  or a vanished file;
* ``prune`` deletes the documents under the given roots whose files are gone (ingest/write.py).

An index is bound to one embedder (``label@fingerprint``; the fingerprint decides). A run with
another embedder is refused before any work, and the configured embedder's identity is found
without loading it whenever that can be told cheaply.

The snapshot quick path (:func:`unchanged_run`): a run with nothing to do is decided from
``ingest-snapshot.json`` (ingest/snapshot.py) without opening LanceDB; anything the snapshot
cannot vouch for takes the full path. After a full run :func:`leave_snapshot` writes the
snapshot the next run reads.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from enclave.settings import Settings
from ingest.snapshot import index_signature, live_release, load_snapshot, write_snapshot
from ingest.summary import IngestSummary
from ingest.walk import WalkedFile, WalkIssue, WalkItem, WalkSkip, is_under, walk
from store.records import (
    STATUS_FAILED,
    STATUS_OK,
    DocumentRecord,
    fs_path,
    read_index_meta,
)

if TYPE_CHECKING:
    from enclave.security.policy import AclPolicy
    from models.embedder import Embedder
    from store.db import Store

#: failures whose cause may have gone away without the file changing
RETRY_MARKERS = ("timed out", "permission denied", "file not found", "incomplete: its chunks")


def retryable(error: str) -> bool:
    """Whether a stored failure is retried even when its file did not change."""
    low = error.lower()
    return any(m in low for m in RETRY_MARKERS)


@dataclass
class Decision:
    """What to do with one walked file, from its stored row alone."""

    file: WalkedFile
    old: DocumentRecord | None
    must_hash: bool  # size/mtime changed, new file, or rehash
    retry: bool = False  # a failed file retried although unchanged


def decide(f: WalkedFile, old: DocumentRecord | None, *, rehash: bool) -> Decision:
    if old is None:
        return Decision(f, None, must_hash=True)
    same_stat = old.size == f.size and old.mtime == f.mtime
    retry = old.status == STATUS_FAILED and retryable(old.error)
    if same_stat and not rehash:
        return Decision(f, old, must_hash=False, retry=retry)
    return Decision(f, old, must_hash=True, retry=retry)


@dataclass
class Plan:
    """The walk of a full run: a decision per supported file, and what could not be walked."""

    decisions: list[Decision] = field(default_factory=list)
    #: files the walk could not read (or roots it could not list), in walk order
    issues: list[WalkIssue] = field(default_factory=list)
    #: every path the walk met, decided or not (prune leaves these alone)
    seen: set[str] = field(default_factory=set)
    #: files left out, by reason ("unsupported", ...)
    skipped: dict[str, int] = field(default_factory=dict)
    #: entries left out on purpose, each with its reason (links out of the roots, FIFOs, ...)
    skips: list[WalkSkip] = field(default_factory=list)

    @property
    def files_seen(self) -> int:
        return len(self.decisions) + sum(1 for i in self.issues if i.is_file)


def plan(
    settings: Settings,
    roots: list[str],
    state: dict[str, DocumentRecord],
    force: frozenset[str] = frozenset(),
) -> Plan:
    """Walk ``roots`` and decide each file against its stored row in ``state``; the documents
    in ``force`` (ids) are parsed again whatever their row says (``enclave quarantine``)."""
    out = Plan()
    for item in walk_supported(settings, roots, out.skipped):
        if isinstance(item, WalkSkip):
            out.skips.append(item)
            continue
        out.seen.add(item.path)
        if isinstance(item, WalkIssue):
            out.issues.append(item)
            continue
        if item.doc_id in force:
            out.decisions.append(Decision(item, state.get(item.path), must_hash=True, retry=True))
            continue
        out.decisions.append(decide(item, state.get(item.path), rehash=settings.ingest.rehash))
    return out


def walk_supported(
    settings: Settings, roots: list[str], skipped: dict[str, int]
) -> Iterator[WalkItem]:
    """The files of a run: under ``roots``, of a supported format, through the include and
    exclude globs (``skipped`` counts the rest by reason), links out of the roots followed
    only under ``ingest.follow_external_links``."""
    from ingest.parse import SUPPORTED_EXTENSIONS

    ing = settings.ingest
    return walk(
        roots,
        include=ing.include,
        exclude=ing.exclude,
        extensions=SUPPORTED_EXTENSIONS,
        skipped=skipped,
        follow_external_links=ing.follow_external_links,
    )


def expected_embedder_name(settings: Settings, bound: str | None = None) -> str | None:
    """The identity the configured embedder will have on an index bound to ``bound`` (None: a
    new index), found without loading it (None when it cannot be told cheaply; the index is
    then checked when the embedder loads). Under ``embedder.variant = "auto"`` the variant is
    the one ``bound`` records (models/variants.py)."""
    model = settings.embedder.model
    from models.embedder import HashEmbedder, hash_dimension, is_hash_model

    if is_hash_model(model):
        return HashEmbedder(dimension=hash_dimension(model)).name
    from models.bundled import resolve_embedder

    path = resolve_embedder(model)  # ConfigError when the model is not installed
    try:
        from models import embedder as embedder_module
        from models.variants import resolve_variant, variant_name

        identity: str = embedder_module._model_identity(str(path))
        return variant_name(identity, resolve_variant(settings.embedder, bound))
    except Exception:  # the identity helper changed: fall back to the check at load time
        return None


def same_embedder(bound: str, expected: str) -> bool:
    """Names are ``label@fingerprint[+variant]``; the fingerprint (config and weight sizes)
    and the variant (``+int8-onnx-v1``, none for fp32) decide, not the label."""
    return bound.rsplit("@", 1)[-1] == expected.rsplit("@", 1)[-1]


def unchanged_run(
    settings: Settings,
    roots: list[str],
    *,
    prune: bool,
    groups: list[str] | None,
    policy: AclPolicy,
    embedder: Embedder | None,
) -> IngestSummary | None:
    """The summary of a run with nothing to do, decided from the snapshot without opening
    LanceDB; None when the snapshot cannot tell (then the full path runs)."""
    if settings.ingest.rehash or groups is not None or policy.rules:
        return None
    t0 = time.perf_counter()
    from store.sets import active_tables, set_location

    tables = set_location(settings.index, active_tables(settings.index))
    snapshot = load_snapshot(settings.data_dir, settings.index, tables)
    if snapshot is None:
        return None
    bound = str(read_index_meta(tables).get("embedder") or "")
    expected = embedder.name if embedder is not None else expected_embedder_name(settings, bound)
    if not bound or (expected and not same_embedder(bound, expected)):
        return None  # the full path explains the mismatch
    setup_s = time.perf_counter() - t0
    tw = time.perf_counter()
    summary = IngestSummary(data_dir=str(settings.data_dir), embedder=bound)
    seen: set[str] = set()
    skipped: dict[str, int] = {}
    for item in walk_supported(settings, roots, skipped):
        if isinstance(item, WalkSkip):
            summary.skipped.append({"path": item.path, "reason": item.reason})
            continue
        if isinstance(item, WalkIssue):
            return None
        entry = snapshot.docs.get(item.path)
        if entry is None or entry.retry or (entry.size, entry.mtime) != (item.size, item.mtime):
            return None
        seen.add(item.path)
        summary.unchanged += 1
        if entry.status != STATUS_OK:
            summary.previously_failed += 1
    if prune and any(
        path not in seen and any(is_under(path, r) for r in roots) and not _surely_exists(path)
        for path in snapshot.docs
    ):
        return None
    summary.files_seen = summary.unchanged
    summary.skipped_unsupported = skipped.get("unsupported", 0)
    summary.stages = {"walk_s": time.perf_counter() - tw, "setup_s": setup_s}
    summary.from_snapshot = True
    summary.release = no_release(snapshot.live)
    summary.seconds = time.perf_counter() - t0
    return summary


def no_release(live: str | None) -> dict[str, object]:
    """The summary's ``release`` object of a run that changed nothing."""
    return {
        "id": None,
        "state": None,
        "promoted": False,
        "blocked": False,
        "reason": "nothing changed: no new release",
        "live": live,
    }


def _surely_exists(key: str) -> bool:
    """Whether the file of a stored key exists. An escaped key (a name that is not UTF-8,
    store.records.path_key) can be read two ways and the snapshot has no document ids to tell
    them apart: such a doubt answers False, so the full path decides."""
    return fs_path(key) == key and os.path.exists(key)


def leave_snapshot(
    settings: Settings,
    store: Store,
    read: tuple[str | None, dict[str, DocumentRecord]] | None,
) -> None:
    """Leave the snapshot of the documents table for the next run (ingest/snapshot.py):
    the rows read at the start when nothing was written (``read``), else read again. It is
    written only when the index did not move while its rows were read."""
    if read is None:
        signature = index_signature(store.location)
        state = store.documents_state()
    else:
        signature, state = read
    if signature is not None and index_signature(store.location) == signature:
        write_snapshot(
            settings.data_dir, signature, state, retryable, live=live_release(store.root)
        )
