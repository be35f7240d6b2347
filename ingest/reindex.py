"""``enclave reindex``: a complete new index beside the live one, served only once promoted.

Changing the embedder, the chunk size or the parser settings changes every chunk. A re-index
builds the whole corpus again into a **new table set** (store/sets.py) while servers keep
serving the live release from its own tables:

1. under the writer lock (an ingest or ``enclave sync`` waits meanwhile), a new set
   ``<index>/sets/t-00000N/`` is bound to the configured embedder and chunking;
2. an ordinary ingest run (ingest/pipeline.py) over the roots writes it, with the progress
   and ETA lines of any ingest; every document keeps the groups the live release gave it
   (``--groups`` of earlier runs), an ACL policy with rules recomputes them as always;
3. its release is a candidate like any other: the rails compare it with the live release,
   the gate scores its own tables (with its own embedder), and ``release.auto_promote``
   promotes it, a switch of one pointer. A server that follows the pointer loads the new
   set's embedder first (store/live.py, server/state.py), then serves it; a rollback
   switches back the same way while the old set is retained (``release.keep``).

The roots are the PATHs given, else ``sync.roots``, else those of the last ingest run.

A re-index needs a local index: on an ``s3://`` index (``store.uri``) it refuses with a usage
error (store/sets.py), and the way to re-embed there is a new ``store.uri`` prefix.

**Drift.** Each table set records what it was built with (``build`` in its
``enclave-index.json``: the embedder, the chunking, the parse settings; ingest/embed.py).
:func:`build_drift` tells what the configured settings would build differently from the live
release's set; ``enclave sync`` starts a re-index on its own when they differ
(``sync.reindex = "auto"``, ingest/sync.py), and :func:`as_built` gives the settings that
keep writing the live set as it was built until that re-index is promoted. Settings a set
does not record (an index from before they were recorded) are not compared.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enclave.errors import UsageError
from enclave.settings import Settings

if TYPE_CHECKING:
    from ingest.progress import Progress
    from ingest.promotion import ReleaseHooks


#: a running re-index job is reported at least this often (``enclave sync``'s heartbeat)
HEARTBEAT_S = 30.0


@dataclass(frozen=True)
class Drift:
    """The configured settings would build the index differently from the live release's
    table set (module docstring)."""

    #: the live release and its table set
    release: str
    tables: str | None
    #: what differs, in words (``chunk_tokens 200 -> 120``)
    changes: tuple[str, ...]
    #: what the live set was built with (its ``build`` record) and its embedder's name
    built: dict[str, Any]
    bound: str

    @property
    def key(self) -> str:
        """Tells one target apart from another: the same changes to the same table set (not
        the release: every ordinary run that goes live makes a new one)."""
        return json.dumps([self.tables, self.changes])


def build_drift(settings: Settings) -> Drift | None:
    """What ``settings`` would build differently from the live release's table set; None when
    nothing differs, or no release is live. Read from two small files, without LanceDB or
    the embedder (its identity is told from the model's files; a model that is not installed
    raises ConfigError)."""
    from ingest.changes import expected_embedder_name, same_embedder
    from ingest.embed import build_settings
    from store.records import read_index_meta
    from store.registry import Registry
    from store.sets import set_location

    live = Registry.at(settings.index).live()
    if live is None:
        return None
    meta = read_index_meta(set_location(settings.index, live.tables))
    bound = str(meta.get("embedder") or "")
    built: dict[str, Any] = dict(meta.get("build") or {})
    changes: list[str] = []
    if bound:
        expected = expected_embedder_name(settings, bound)
        if expected and not same_embedder(bound, expected):
            changes.append(f"embedder {bound} -> {expected}")
    wanted = build_settings(settings)
    for key in ("chunk_tokens", "chunk_overlap"):
        if key in built and built[key] != wanted[key]:
            changes.append(f"{key} {built[key]} -> {wanted[key]}")
    parse_now: dict[str, Any] = dict(wanted["parse"])  # type: ignore[call-overload]
    for key, was in dict(built.get("parse") or {}).items():
        if key in parse_now and parse_now[key] != was:
            changes.append(f"{key} {was} -> {parse_now[key]}")
    if not changes:
        return None
    return Drift(live.release, live.tables, tuple(changes), built, bound)


def reindex_job(
    settings: Settings,
    roots: list[str],
    drift: Drift,
    *,
    hooks: ReleaseHooks | None,
    report: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """:func:`reindex` for ``drift``, as ``enclave sync`` runs it: ``report`` receives the job
    (at least every :data:`HEARTBEAT_S` seconds, so a long gate run is no silence)
    (state ``running`` with the progress and ETA of the run, then ``live``, ``candidate`` or
    ``rejected`` with the release, or ``waiting``/``failed`` with what was raised, which is
    raised again) each time it changes. Returns what :func:`reindex` returns."""
    from store.lock import WriterBusyError
    from store.registry import now_iso

    started = time.perf_counter()
    job: dict[str, Any] = {
        "state": "running",
        "from": drift.release,
        "changes": list(drift.changes),
        "started_at": now_iso(),
        "progress": None,
    }
    report(job)

    def progress(line: dict[str, Any]) -> None:
        job["progress"] = line.get("progress")
        report(job)

    done = threading.Event()

    def heartbeat() -> None:  # the gate after the files reports no progress lines
        while not done.wait(HEARTBEAT_S):
            report(job)

    beat = threading.Thread(target=heartbeat, name="reindex-heartbeat", daemon=True)
    beat.start()
    try:
        out = reindex(settings, [Path(r) for r in roots], hooks=hooks, progress=progress)
    except WriterBusyError:
        job["state"] = "waiting"  # another writer came first: tried again
        report(job)
        raise
    except Exception as exc:
        job.update(state="failed", error=getattr(exc, "message", str(exc)))
        report(job)
        raise
    finally:
        done.set()
    rel = out.get("release") or {}
    job.update(
        state="live" if rel.get("promoted") else str(rel.get("state")),
        release=rel.get("id"),
        tables=out["reindex"]["tables"],
        reason=rel.get("reason"),
        finished_at=now_iso(),
        seconds=round(time.perf_counter() - started, 3),
    )
    report(job)
    return out


def as_built(settings: Settings, drift: Drift) -> Settings:
    """``settings`` with what the live set was built with (its embedder, chunking and parse
    settings) in place of the configured ones: an ordinary run keeps the live set consistent
    while its re-index is pending or was not promoted. The embedder's runtime settings
    (threads, batch size, device, cache) stay the configured ones."""
    built = drift.built
    update: dict[str, Any] = {}
    if isinstance(built.get("embedder"), dict):
        emb = built["embedder"]
        keep = {k: emb[k] for k in ("model", "variant") if k in emb}
        update["embedder"] = settings.embedder.model_copy(update=keep)
    ingest_over: dict[str, Any] = {
        k: built[k] for k in ("chunk_tokens", "chunk_overlap") if k in built
    }
    parse = dict(built.get("parse") or {})
    ingest_over.update({k: parse[k] for k in ("ocr", "ocr_languages", "ocr_dpi") if k in parse})
    if ingest_over:
        update["ingest"] = settings.ingest.model_copy(update=ingest_over)
    if "redact_pii" in parse:
        update["security"] = settings.security.model_copy(
            update={"redact_pii": parse["redact_pii"]}
        )
    return settings.model_copy(update=update)


def reindex_roots(settings: Settings, paths: list[Path] | None) -> list[str]:
    """The folders to re-index (module docstring); UsageError when none is known."""
    from ingest.summary import read_last_ingest

    if paths:
        return [str(p) for p in paths]
    if settings.sync.roots:
        return [str(p) for p in settings.sync.roots]
    last = read_last_ingest(settings.data_dir)
    if last and last.get("roots"):
        return [str(r) for r in last["roots"]]
    raise UsageError(
        "which folders? give them (`enclave reindex PATH...`) or set sync.roots; no earlier "
        "ingest run recorded its folders"
    )


def reindex(
    settings: Settings,
    paths: list[Path] | None = None,
    *,
    hooks: ReleaseHooks | None = None,
    progress: Progress = False,
) -> dict[str, Any]:
    """Build a new table set from the roots as a candidate release (module docstring);
    returns the ingest summary with ``reindex``: the set and what changed."""
    from ingest.embed import build_settings
    from ingest.pipeline import ingest_paths
    from store.lock import WriterLock
    from store.registry import Registry
    from store.releases import open_release
    from store.sets import new_set_id, require_local_sets, set_location

    lance = settings.index
    require_local_sets(lance, "`enclave reindex`")
    roots = reindex_roots(settings, paths)
    with WriterLock(lance, "enclave reindex"):
        registry = Registry.at(lance)
        live = registry.live()
        if live is None:
            raise UsageError(
                "no release is live: there is nothing to re-index; run `enclave ingest PATH` first"
            )
        view = open_release(lance, live.release, registry=registry)
        groups = {d.path: list(d.groups) for d in view.list_documents() if d.groups}
        before = dict(view.meta)
        settings = _keep_variant(settings, before.get("embedder"))
        tables = new_set_id(lance, [r.tables for r in registry.records()])
        summary = ingest_paths(
            settings,
            roots,
            table_set=tables,
            inherit_groups=groups,
            hooks=hooks,
            progress=progress,
        )
    from store.records import read_index_meta

    after = read_index_meta(set_location(lance, tables))
    out = summary.to_dict()
    out["reindex"] = {
        "tables": tables,
        "roots": roots,
        "from": {
            "release": live.release,
            "tables": live.tables,
            "embedder": before.get("embedder"),
            "build": before.get("build"),
        },
        "to": {
            "embedder": after.get("embedder"),
            "build": after.get("build") or build_settings(settings),
        },
    }
    return out


def _keep_variant(settings: Settings, live: object) -> Settings:
    """Under ``embedder.variant = "auto"``, a re-index of the same model keeps the live set's
    variant (a new chunk size does not switch fp32 to int8); another model gets the default
    variant of a new index. An explicit variant is used as it is."""
    from models.variants import for_index, same_model

    if not isinstance(live, str) or not same_model(live, settings.embedder):
        return settings
    return settings.model_copy(update={"embedder": for_index(settings.embedder, live)})
