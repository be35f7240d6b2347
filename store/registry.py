"""The release registry: one small JSON file per release, the live pointer, the head's state.

It lives with the index, under ``<lance_dir>/_enclave/`` (so that several servers over one
index agree on what is live)::

    releases/r-000012.json   one ReleaseRecord per release, written atomically
    live.json                the pointer servers follow: release id + both tables' versions
    head.json                what the writer's head holds: a release's content, or unreleased
                             writes ("dirty")
    reports/r-000012/        the gate's report.json, .md and .html for that release
    write.lock               the single-writer lock (store/lock.py)

Every write replaces a whole file (temporary file, fsync, rename, fsync of the folder), so a
reader sees the old or the new content, never a mix, and a process killed at any point leaves
whole files. All file access goes through :class:`RegistryFiles`, a small interface another
storage (an object store) can implement.

A record's ``state`` is its lifecycle: ``candidate`` (recorded, not promoted; ``held`` says
why the rails kept it back), ``rejected`` (the gate failed), ``promoted`` (live now or
before), ``superseded`` (a later candidate replaced it unpromoted) and ``expired`` (retention
dropped its tags: its data is gone). Whether a release is live is the pointer's word alone:
:meth:`Registry.status_of` says ``live``, ``retained`` (promoted, still readable), or the
record's state.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from enclave.errors import NotFoundError, UsageError
from store.files import RegistryFiles

if TYPE_CHECKING:
    from store.location import IndexLocation

REGISTRY_DIR = "_enclave"
LIVE_FILE = "live.json"
HEAD_FILE = "head.json"
RELEASES = "releases"
REPORTS = "reports"

CANDIDATE = "candidate"
REJECTED = "rejected"
PROMOTED = "promoted"
SUPERSEDED = "superseded"
EXPIRED = "expired"

_ID = re.compile(r"^r-(\d{6,})$")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def release_id(number: int) -> str:
    return f"r-{number:06d}"


def release_number(rid: str) -> int:
    m = _ID.match(rid)
    if not m:
        raise UsageError(f"not a release id: {rid[:40]!r} (expected r-000012)")
    return int(m.group(1))


@dataclass
class ReleaseRecord:
    """One release: the pair of table versions and what is known about it."""

    id: str
    versions: dict[str, int | None]
    created_at: str = field(default_factory=now_iso)
    state: str = CANDIDATE
    #: the release the candidate was built on (the live one then), None for the first
    parent: str | None = None
    #: documents, chunks, failed documents (counted on the release's own tables)
    counts: dict[str, int] = field(default_factory=dict)
    #: the ingest run's summary (the --json object) that made it
    ingest: dict[str, Any] = field(default_factory=dict)
    #: the rails' verdict: {"ok", "reasons", "removed", "removed_share", "failure_jump"}
    rails: dict[str, Any] | None = None
    #: why the candidate waits instead of going live (rails, a configured gate never run)
    held: str | None = None
    #: the gate's verdict: {"passed", "failures", "metrics", "report"}
    gate: dict[str, Any] | None = None
    promoted_at: str | None = None
    promoted_by: str | None = None
    forced: bool = False
    #: what happened to it later: rollbacks, purges, expiry (time and what)
    events: list[dict[str, Any]] = field(default_factory=list)
    #: the table set holding its tables (store/sets.py): None for the root set
    tables: str | None = None

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), indent=2, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> ReleaseRecord:
        raw = json.loads(data)
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def note(self, what: str, **extra: Any) -> None:
        self.events.append({"at": now_iso(), "what": what, **extra})


@dataclass(frozen=True)
class LivePointer:
    """What servers serve: a release and its versions (enough to open the view alone)."""

    release: str
    versions: dict[str, int | None]
    promoted_at: str
    promoted_by: str = ""
    #: the table set of the release (store/sets.py): None for the root set
    tables: str | None = None

    def to_json(self) -> bytes:
        data = asdict(self)
        if data["tables"] is None:
            del data["tables"]  # the pointer of an index with one set reads as before
        return (json.dumps(data, sort_keys=True) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> LivePointer:
        raw = json.loads(data)
        return cls(
            release=str(raw["release"]),
            versions={k: (None if v is None else int(v)) for k, v in raw["versions"].items()},
            promoted_at=str(raw.get("promoted_at") or ""),
            promoted_by=str(raw.get("promoted_by") or ""),
            tables=raw.get("tables") or None,
        )


@dataclass
class HeadState:
    """What the writer's head holds: the content of ``release`` (None: nothing released
    yet), plus unreleased writes when ``dirty`` (a run wrote, or was killed while writing)."""

    release: str | None = None
    dirty: bool = False


def _head_file(tables: str | None) -> str:
    return HEAD_FILE if tables is None else f"heads/{tables}.json"


class Registry:
    """Records, the live pointer and the head state of one index."""

    def __init__(self, files: RegistryFiles) -> None:
        self.files = files

    @classmethod
    def at(cls, lance_dir: IndexLocation | Path | str) -> Registry:
        from store.location import locate

        return cls(locate(lance_dir).files(REGISTRY_DIR))

    # ------------------------------------------------------------------ records
    def ids(self) -> list[str]:
        names = [n[:-5] for n in self.files.list(RELEASES) if n.endswith(".json")]
        return sorted((n for n in names if _ID.match(n)), key=release_number)

    def records(self) -> list[ReleaseRecord]:
        out = []
        for rid in self.ids():
            rec = self.find(rid)
            if rec is not None:
                out.append(rec)
        return out

    def find(self, rid: str) -> ReleaseRecord | None:
        data = self.files.read(f"{RELEASES}/{rid}.json")
        return None if data is None else ReleaseRecord.from_json(data)

    def get(self, rid: str) -> ReleaseRecord:
        rec = self.find(rid)
        if rec is None:
            raise NotFoundError(f"no release {rid[:40]!r} (see `enclave releases list`)")
        return rec

    def save(self, record: ReleaseRecord) -> None:
        release_number(record.id)
        self.files.write(f"{RELEASES}/{record.id}.json", record.to_json())

    def next_id(self) -> str:
        ids = self.ids()
        return release_id(release_number(ids[-1]) + 1 if ids else 1)

    def resolve(self, ref: str) -> ReleaseRecord:
        """A release by id (``r-000012``), number (``12``), ``live``, ``candidate`` (the
        newest candidate) or ``previous`` (what a rollback would make live)."""
        ref = ref.strip()
        if ref == "live":
            live = self.live()
            if live is None:
                raise NotFoundError("no release is live yet")
            return self.get(live.release)
        if ref == "candidate":
            for rec in reversed(self.records()):
                if rec.state == CANDIDATE:
                    return rec
            raise NotFoundError("no candidate release waits")
        if ref.isdigit():
            ref = release_id(int(ref))
        return self.get(ref)

    # ---------------------------------------------------------------- pointers
    def live(self) -> LivePointer | None:
        data = self.files.read(LIVE_FILE)
        return None if data is None else LivePointer.from_json(data)

    def set_live(self, pointer: LivePointer) -> None:
        """The switch: one atomic replace of ``live.json``."""
        self.files.write(LIVE_FILE, pointer.to_json())

    def live_stamp(self) -> tuple[int, int, int] | None:
        return self.files.stamp(LIVE_FILE)

    def head(self, tables: str | None = None) -> HeadState:
        """What the head of table set ``tables`` holds (each set has its own head)."""
        data = self.files.read(_head_file(tables))
        if data is None:
            return HeadState()
        raw = json.loads(data)
        return HeadState(release=raw.get("release"), dirty=bool(raw.get("dirty")))

    def set_head(self, state: HeadState, tables: str | None = None) -> None:
        self.files.write(_head_file(tables), (json.dumps(asdict(state)) + "\n").encode("utf-8"))

    # -------------------------------------------------------------------- views
    def status_of(self, record: ReleaseRecord, live: LivePointer | None = None) -> str:
        """``live``, ``retained`` (promoted, readable), or the record's own state."""
        if live is not None and live.release == record.id:
            return "live"
        if record.state == PROMOTED:
            return "retained"
        return record.state

    def report_dir(self, rid: str) -> Path:
        """The folder the gate's reports of ``rid`` are kept in."""
        return self.files.local_dir(f"{REPORTS}/{rid}")

    def report_path(self, rid: str) -> Path | None:
        """The gate's report.json of ``rid``, when one was kept."""
        path = self.files.local_dir(f"{REPORTS}/{rid}", create=False) / "report.json"
        return path if path.is_file() else None

    def reports_root(self) -> Path:
        return self.files.local_dir(REPORTS, create=False)
