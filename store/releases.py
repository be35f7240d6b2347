"""Index releases: an ingest run's result is a candidate; servers serve only the promoted one.

A release is the pair of table versions an ingest run left (documents, chunks), tagged in
both tables under its id (``r-000012``) so that no cleanup removes them, plus a record in the
registry (store/registry.py). Promoting or rolling back replaces one pointer file
(``live.json``) atomically: no data is copied or re-embedded, and a server switches to the
new release's pinned view (store/live.py) within half a second.

The writer's steps, in order (the caller holds the writer lock, store/lock.py):

1. :meth:`Releases.prepare_head` before an ingest run: adopt an index that predates releases
   (its current versions become ``r-000001``, live); then, when the head holds a release that
   is not to be built on (rejected by the gate, held by the rails, superseded, rolled back),
   restore the head to the live release, so a fixed re-run does not inherit a bad candidate.
   A pending candidate (waiting for a manual promote) and the live release are built on;
   unreleased writes of a killed run are kept, and redone by the incremental rules.
2. :meth:`Releases.begin_writes` marks the head dirty before the first write.
3. :meth:`Releases.record_candidate` after the run: when anything changed, the head's
   versions become a new candidate (its parent: the release live then); an earlier
   unpromoted candidate is superseded. Nothing changed: no release.
4. :meth:`Releases.promote` / :meth:`Releases.rollback`: the atomic switch, then retention.

Retention (:meth:`Releases.apply_retention`, after every switch): the live release, the
``keep`` most recently promoted others (rollback targets) and the newest unpromoted candidate
keep their tags; every other release loses them (``expired`` or ``superseded``) and the next
cleanup (:meth:`store.db.Store.optimize`) removes whatever only they referenced.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from enclave.errors import EnclaveError, UsageError
from store.db import CHUNKS, DOCUMENTS, Store
from store.reader import TableReader
from store.records import STATUS_EMPTY, STATUS_FAILED, STATUS_OK
from store.registry import (
    CANDIDATE,
    EXPIRED,
    PROMOTED,
    REJECTED,
    SUPERSEDED,
    HeadState,
    LivePointer,
    Registry,
    ReleaseRecord,
    now_iso,
)
from store.view import EMPTY, IndexView

#: test hook: ``ENCLAVE_PAUSE_AT=before-switch:5`` sleeps 5 s at that point of a promote
PAUSE_ENV = "ENCLAVE_PAUSE_AT"


class ReleaseGoneError(EnclaveError):
    """The release is no longer retained: its data was cleaned up."""

    status_code = 410
    error_type = "invalid_request_error"
    code = "release_gone"
    exit_code = 1


@dataclass
class HeadPrepared:
    """What :meth:`Releases.prepare_head` found and did."""

    #: the release live when the run starts (the candidate's parent)
    parent: str | None
    #: the release the head was restored from, when it was not to be built on
    restored_from: str | None = None
    adopted: str | None = None


class Releases:
    """Release bookkeeping over one index's head :class:`Store` and its :class:`Registry`."""

    def __init__(self, store: Store, registry: Registry | None = None) -> None:
        self.store = store
        self.registry = registry or Registry.at(store.root)
        self._stores: dict[str | None, Store] = {store.tables: store}

    def store_for(self, tables: str | None) -> Store:
        """The head of table set ``tables`` (store/sets.py), opened once."""
        if tables not in self._stores:
            self._stores[tables] = Store(self.store.root, tables=tables, tuning=self.store.tuning)
        return self._stores[tables]

    # -------------------------------------------------------------------- reading
    def view(self, record: ReleaseRecord) -> IndexView:
        """The pinned view of ``record`` (ReleaseGoneError once retention dropped it)."""
        if record.state in (EXPIRED, SUPERSEDED):
            raise ReleaseGoneError(
                f"release {record.id} is no longer retained ({record.state}); its data was "
                "cleaned up (release.keep)"
            )
        store = self.store_for(record.tables)
        return IndexView(store.connection, store.location, record.versions, record.id, store.tuning)

    def live_view(self) -> TableReader:
        live = self.registry.live()
        if live is None:
            return EMPTY
        store = self.store_for(live.tables)
        return IndexView(
            store.connection, store.location, live.versions, live.release, store.tuning
        )

    def counts(self, reader: TableReader) -> dict[str, int]:
        """Documents by status and chunks, counted on ``reader``'s tables."""
        out = {"documents": reader.count_documents(), "chunks": reader.count_chunks()}
        for status in (STATUS_OK, STATUS_EMPTY, STATUS_FAILED):
            out[status] = reader.count_documents(f"status = '{status}'")
        return out

    # ------------------------------------------------------------- writer steps
    def adopt(self) -> ReleaseRecord | None:
        """An index written before releases existed: its current versions become the first
        release, live. None when there is nothing to adopt."""
        if self.store.tables is not None:
            return None
        if self.registry.ids() or self.registry.live() is not None:
            return None
        if not self.store.has_tables():
            return None
        versions = self.store.head_versions()
        rec = ReleaseRecord(id=self.registry.next_id(), versions=versions, state=PROMOTED)
        rec.counts = self.counts(self.store)
        rec.promoted_at = now_iso()
        rec.promoted_by = "adopted"
        rec.note("adopted: an index written before releases")
        self.store.tag(rec.id, versions)
        self.registry.save(rec)
        self.registry.set_live(LivePointer(rec.id, dict(versions), rec.promoted_at, "adopted"))
        self.registry.set_head(HeadState(release=rec.id))
        return rec

    def prepare_head(self) -> HeadPrepared:
        """Step 1 of the module docstring; first, whatever a killed writer left half done
        is finished (a prune's emptied head is restored, a purge completed)."""
        from store.maintain import recover
        from store.purge import resume_purge

        recover(self.store, self.registry)
        resume_purge(self.store, self.registry)
        adopted = self.adopt()
        live = self.registry.live()
        out = HeadPrepared(parent=live.release if live else None)
        if adopted is not None:
            out.adopted = adopted.id
            return out
        tables = self.store.tables
        head = self.registry.head(tables)
        if head.dirty or (head.release is None and live is None):
            return out
        if live is not None and live.tables != tables:
            return out  # a set being built beside the live one (enclave reindex)
        if live is not None and head.release == live.release:
            return out
        rec = self.registry.find(head.release) if head.release else None
        if rec is not None and rec.state == CANDIDATE and not rec.held:
            return out  # a pending candidate: build on it
        self.store.restore(live.versions if live else {DOCUMENTS: None, CHUNKS: None})
        self.registry.set_head(HeadState(release=live.release if live else None), tables)
        out.restored_from = head.release
        return out

    def begin_writes(self) -> bool:
        """Mark the head dirty before a run writes; returns whether it already was (writes
        of a killed run wait in the head)."""
        head = self.registry.head(self.store.tables)
        if not head.dirty:
            self.registry.set_head(HeadState(release=head.release, dirty=True), self.store.tables)
        return head.dirty

    def end_without_changes(self) -> None:
        """A run that wrote nothing on a clean head: the head is clean again."""
        head = self.registry.head(self.store.tables)
        if head.dirty:
            self.registry.set_head(HeadState(release=head.release), self.store.tables)

    def record_candidate(self, parent: str | None, ingest: dict[str, Any]) -> ReleaseRecord:
        """Step 3: the head's versions become a new candidate."""
        versions = self.store.head_versions()
        rec = ReleaseRecord(id=self.registry.next_id(), versions=versions, parent=parent)
        rec.tables = self.store.tables
        rec.ingest = ingest
        rec.counts = self.counts(self.store)
        self.store.tag(rec.id, versions)
        for old in self.registry.records():
            if old.state in (CANDIDATE, REJECTED) and old.tables == rec.tables:
                self._drop(old, SUPERSEDED, f"superseded by {rec.id}")
        self.registry.save(rec)
        self.registry.set_head(HeadState(release=rec.id), rec.tables)
        return rec

    def record_index_release(
        self, base: ReleaseRecord, versions: dict[str, int | None]
    ) -> ReleaseRecord:
        """A release with ``base``'s rows at ``versions``, where only an index build happened
        since (store/ann.py): no gate to run, its counts are ``base``'s."""
        rec = ReleaseRecord(id=self.registry.next_id(), versions=versions, parent=base.id)
        rec.counts = dict(base.counts)
        rec.ingest = {"index_build": True, "same_rows_as": base.id}
        rec.note("vector index built", same_rows_as=base.id)
        self.store.tag(rec.id, versions)
        self.registry.save(rec)
        self.registry.set_head(HeadState(release=rec.id))
        return rec

    def move_candidate(self, rec: ReleaseRecord, versions: dict[str, int | None]) -> None:
        """A pending candidate's rows gained an index (store/ann.py): its tags move to
        ``versions``."""
        rec.versions = versions
        rec.note("vector index built")
        self.store.tag(rec.id, versions)
        self.registry.save(rec)

    def hold(self, rec: ReleaseRecord, reason: str) -> None:
        """The candidate waits: it is not promoted automatically, and the next run does not
        build on it."""
        rec.held = reason
        self.registry.save(rec)

    def reject(self, rec: ReleaseRecord, gate: dict[str, Any]) -> None:
        """The gate failed: the candidate stays readable (``promote --force``) until the next
        candidate replaces it."""
        rec.state = REJECTED
        rec.gate = gate
        rec.note("rejected by the gate")
        self.registry.save(rec)

    # ----------------------------------------------------------------- switching
    def promote(
        self, rec: ReleaseRecord, *, by: str, forced: bool = False, keep: int = 5
    ) -> ReleaseRecord:
        """Make ``rec`` live: one atomic pointer replace, then the record, then retention.
        A process killed at any point leaves the old or the new release live."""
        if rec.state in (EXPIRED, SUPERSEDED):
            raise ReleaseGoneError(
                f"release {rec.id} is {rec.state}: its data is gone and it cannot go live"
            )
        self.view(rec).count_documents()  # its versions must still open
        self.store_for(rec.tables).tag(rec.id, rec.versions)
        when = now_iso()
        _pause("before-switch")
        self.registry.set_live(LivePointer(rec.id, dict(rec.versions), when, by, rec.tables))
        _pause("after-switch")
        rec.state = PROMOTED
        rec.promoted_at = when
        rec.promoted_by = by
        rec.forced = rec.forced or forced
        rec.held = None
        rec.note("promoted", by=by, forced=forced)
        self.registry.save(rec)
        self.apply_retention(keep)
        return rec

    def rollback_target(self) -> ReleaseRecord:
        """The nearest promoted, still retained ancestor of the live release."""
        live = self.registry.live()
        if live is None:
            raise UsageError("no release is live: nothing to roll back")
        rec = self.registry.get(live.release)
        seen = {rec.id}
        while rec.parent and rec.parent not in seen:
            seen.add(rec.parent)
            parent = self.registry.find(rec.parent)
            if parent is None:
                break
            if parent.state == PROMOTED:
                return parent
            rec = parent
        raise UsageError(
            f"{live.release} has no earlier promoted release still retained to roll back to; "
            "name one with `enclave releases rollback RELEASE` (see `enclave releases list`)"
        )

    def rollback(
        self, target: ReleaseRecord | None = None, *, by: str, keep: int = 5
    ) -> tuple[str, ReleaseRecord]:
        """Make an earlier promoted release live again. Returns (was live, now live)."""
        live = self.registry.live()
        if live is None:
            raise UsageError("no release is live: nothing to roll back")
        target = target or self.rollback_target()
        if target.id == live.release:
            raise UsageError(f"{target.id} is already live")
        if target.state != PROMOTED:
            raise UsageError(
                f"{target.id} was never promoted ({target.state}); promote it instead: "
                f"`enclave releases promote {target.id}`"
            )
        was = self.registry.get(live.release)
        was.note("rolled back", to=target.id, by=by)
        self.registry.save(was)
        self.promote(target, by=by, keep=keep)
        return was.id, target

    # ----------------------------------------------------------------- retention
    def retained_ids(self, keep: int) -> set[str]:
        """The live release, the ``keep`` most recently promoted others, and the newest
        unpromoted candidate when it is newer than every promoted release."""
        records = self.registry.records()
        live = self.registry.live()
        keepers = {live.release} if live else set()
        promoted = sorted(
            (r for r in records if r.state == PROMOTED and r.id not in keepers),
            key=lambda r: r.promoted_at or "",
            reverse=True,
        )
        keepers.update(r.id for r in promoted[: max(0, keep)])
        newest: dict[str | None, str] = {}  # the newest pending candidate of each table set
        for r in records:
            if r.state in (CANDIDATE, REJECTED):
                newest[r.tables] = r.id
        keepers.update(newest.values())
        return keepers

    def apply_retention(self, keep: int) -> list[str]:
        """Untag every release outside :meth:`retained_ids`; returns their ids. The files
        only they referenced go at the next :meth:`store.db.Store.optimize`."""
        keepers = self.retained_ids(keep)
        dropped: list[str] = []
        for rec in self.registry.records():
            if rec.id in keepers or rec.state in (EXPIRED, SUPERSEDED):
                continue
            state = EXPIRED if rec.state == PROMOTED else SUPERSEDED
            self._drop(rec, state, f"dropped by retention (release.keep = {keep})")
            dropped.append(rec.id)
        known = {r.id for r in self.registry.records() if r.state not in (EXPIRED, SUPERSEDED)}
        for tag in self.store.tags():
            if tag.startswith("r-") and tag not in known:
                self.store.untag(tag)  # a tag left by a killed run
        return dropped

    def drop_unused_sets(self) -> list[str]:
        """Delete the table sets no retained release needs any more (store/sets.py)."""
        from store.sets import drop_unused_sets

        return drop_unused_sets(self.store.root, self.used_sets())

    def used_sets(self) -> set[str | None]:
        """The table sets a retained release or a writer's head still needs."""
        used: set[str | None] = {None, self.store.tables}
        live = self.registry.live()
        if live is not None:
            used.add(live.tables)
        for rec in self.registry.records():
            if rec.state not in (EXPIRED, SUPERSEDED):
                used.add(rec.tables)
        return used

    def _drop(self, rec: ReleaseRecord, state: str, why: str) -> None:
        self.store_for(rec.tables).untag(rec.id)
        rec.state = state
        rec.note(why)
        self.registry.save(rec)


def _pause(point: str) -> None:
    """The test hook of :data:`PAUSE_ENV` (crash tests kill a promote while it sleeps)."""
    spec = os.environ.get(PAUSE_ENV, "")
    name, _, seconds = spec.partition(":")
    if name == point:
        sys.stderr.write(f"paused at {point}\n")
        sys.stderr.flush()
        time.sleep(float(seconds or 30))


def open_release(
    lance_dir: Any, rid: str, *, connection: Any = None, registry: Registry | None = None
) -> IndexView:
    """The pinned view of release ``rid`` for a reader (lineage, diff), without the writer's
    head: NotFoundError for an unknown id, ReleaseGoneError when it is no longer retained."""
    from store.location import locate
    from store.sets import set_location

    location = locate(lance_dir)
    registry = registry or Registry.at(location)
    rec = registry.get(rid)
    if rec.state in (EXPIRED, SUPERSEDED):
        raise ReleaseGoneError(
            f"release {rid} is no longer retained ({rec.state}): its data was cleaned up "
            "(release.keep)"
        )
    tables = set_location(location, rec.tables)
    if connection is None or rec.tables is not None:
        connection = tables.connect()
    return IndexView(connection, tables, rec.versions, rec.id)
