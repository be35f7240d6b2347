"""What one ingest run did, and the record of the last run that ``enclave status`` shows.

:class:`IngestSummary` is filled by the stages of a run (ingest/write.py counts a file once it
is safely written) or, for a run with nothing to do, by the snapshot quick path
(ingest/changes.py). :meth:`IngestSummary.to_dict` is the ``--json`` contract: ``files_seen``,
``ingested``, ``unchanged``, ``updated``, ``deleted``, ``failed`` (``path`` and ``error`` per
file), ``chunks_added``, ``chunks_deleted`` and ``seconds``; the other keys are extras allowed
beyond it.

Every finished run leaves ``<data_dir>/last-ingest.json`` (:data:`LAST_INGEST_FILE`): when it
finished, over which roots, and its summary. It is replaced atomically, and a run that cannot
write it goes on: the record is informational, never needed to ingest.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from enclave.settings import Settings
from store.records import path_key

LAST_INGEST_FILE = "last-ingest.json"


@dataclass
class IngestSummary:
    """What one ingest run did. :meth:`to_dict` is the ``--json`` contract."""

    files_seen: int = 0
    ingested: int = 0
    unchanged: int = 0
    updated: int = 0
    deleted: int = 0
    failed: list[dict[str, str]] = field(default_factory=list)
    chunks_added: int = 0
    chunks_deleted: int = 0
    seconds: float = 0.0
    # extras (allowed beyond the contract)
    empty: int = 0
    previously_failed: int = 0
    skipped_unsupported: int = 0
    #: entries left out on purpose, with their reason: symbolic links out of the roots,
    #: broken links, FIFOs, sockets and devices (``{"path", "reason"}``; no document row)
    skipped: list[dict[str, str]] = field(default_factory=list)
    #: documents indexed only in part (``ingest.max_chunks_per_document``), with the reason
    #: (``{"path", "reason"}``; the document row keeps it as its ``error``, status ``ok``)
    truncated: list[dict[str, str]] = field(default_factory=list)
    #: documents kept out of the index for their parse quality (ingest/quality.py), with the
    #: reason and the score (``{"path", "reason", "score"}``; row status ``quarantined``)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    #: documents indexed despite a low score because a quarantine release admitted them
    admitted: list[dict[str, Any]] = field(default_factory=list)
    redacted: dict[str, int] = field(default_factory=dict)
    flagged_chunks: int = 0
    embedder: str = ""
    data_dir: str = ""
    stages: dict[str, float] = field(default_factory=dict)
    #: nothing to do, decided from the snapshot without opening LanceDB (ingest/snapshot.py)
    from_snapshot: bool = False
    #: the release this run made and what became of it (ingest/promotion.py ``Outcome``):
    #: ``id`` (None when nothing changed), ``state``, ``promoted``, ``blocked``, ``reason``,
    #: ``live`` (the release live after the run)
    release: dict[str, Any] = field(default_factory=dict)
    #: index upkeep (store/ann.py): ``scalar_built``, ``vector_due`` (a build the run left to
    #: the background), ``vector_build_s`` (one it ran itself), ``background_build_pid``
    index: dict[str, Any] = field(default_factory=dict)
    #: the engine that parsed and embedded, when not the local one: ``{"name": "ray",
    #: "documents_sent", "address", "cpus"}`` (ingest/ray_engine.py)
    engine: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def release_blocked(self) -> bool:
        """The run's candidate was held by the rails or rejected by the gate."""
        return bool(self.release.get("blocked"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "files_seen": self.files_seen,
            "ingested": self.ingested,
            "unchanged": self.unchanged,
            "updated": self.updated,
            "deleted": self.deleted,
            "failed": [dict(f) for f in self.failed],
            "chunks_added": self.chunks_added,
            "chunks_deleted": self.chunks_deleted,
            "seconds": round(self.seconds, 3),
            "empty": self.empty,
            "previously_failed": self.previously_failed,
            "skipped_unsupported": self.skipped_unsupported,
            "skipped": [dict(s) for s in self.skipped],
            "truncated": [dict(t) for t in self.truncated],
            "quarantined": [dict(q) for q in self.quarantined],
            "admitted": [dict(a) for a in self.admitted],
            "redacted": dict(self.redacted),
            "flagged_chunks": self.flagged_chunks,
            "embedder": self.embedder,
            "data_dir": self.data_dir,
            "stages": {k: round(v, 3) for k, v in self.stages.items()},
            "from_snapshot": self.from_snapshot,
            "release": dict(self.release),
            "index": dict(self.index),
            **({"engine": dict(self.engine)} if self.engine else {}),
        }


def now_iso() -> str:
    """The current UTC time, to the second (``ingested_at``, ``finished_at``)."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_last_ingest(settings: Settings, roots: list[str], summary: IngestSummary) -> None:
    """The record ``enclave status`` shows: when the last run finished, over what, and its
    summary."""
    path = Path(settings.data_dir) / LAST_INGEST_FILE
    keys = [path_key(r) for r in roots]
    data = {"finished_at": now_iso(), "roots": keys, "summary": summary.to_dict()}
    with contextlib.suppress(OSError):
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2), "utf-8")
        os.replace(tmp, path)


def read_last_ingest(data_dir: Path | str) -> dict[str, Any] | None:
    """The record the last finished ingest run left in ``data_dir``, if any."""
    try:
        data: dict[str, Any] = json.loads((Path(data_dir) / LAST_INGEST_FILE).read_text("utf-8"))
        return data
    except (OSError, ValueError):
        return None
