"""The single-writer lock of an index: one ingest, promote, rollback or purge at a time.

``fcntl.flock`` on ``<lance_dir>/_enclave/write.lock``: the kernel releases it when its holder
exits, however it exits (SIGKILL included), so a lock never outlives a crashed writer and no
stale-lock recovery is needed. The holder writes its pid and command line into the file, so a
refused writer can say who holds it. A second writer is refused at once (exit code 2, HTTP
409), never queued: two runs racing over one index would each see the other's candidate.

LanceDB itself allows concurrent appends but not concurrent deletes or merges (commit
conflicts), and cleanups are safe only without another writer: this lock is what makes every
write path of Enclave single-writer.

On S3 (an ``s3://`` index, store/location.py) there is no kernel to release a lock, so the
lock is a **lease object**, ``_enclave/write.lock``, created with a conditional PUT
(``If-None-Match: *``: exactly one of two racing writers creates it). Its holder renews it
every third of ``store.lock_lease_s`` (a conditional PUT on its own ETag) from a background
thread and deletes it on release. A writer that finds the object refuses (exit 2, 409),
naming the holder's host, pid and command, unless the lease lapsed (not renewed for
``lock_lease_s``, judged by the store's own clock: the object's Last-Modified against the
Date of the store's answer, so the hosts' clocks do not matter); a lapsed lease is taken
over with a PUT conditional on its ETag, which again only one writer wins. A writer killed
on S3 therefore blocks the next one for at most ``lock_lease_s``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

from enclave.errors import EnclaveError
from store.location import IndexLocation, locate
from store.registry import REGISTRY_DIR

log = logging.getLogger(__name__)

LOCK_FILE = "write.lock"


class WriterBusyError(EnclaveError):
    """Another process writes to this index (ingest, promote, rollback or purge)."""

    status_code = 409
    error_type = "invalid_request_error"
    code = "writer_busy"
    exit_code = 2


def lock_path(lance_dir: IndexLocation | Path | str) -> Path:
    return locate(lance_dir).local_path / REGISTRY_DIR / LOCK_FILE


class WriterLock:
    """``with WriterLock(lance_dir, "enclave ingest"):`` holds the index's writer lock, or
    raises :class:`WriterBusyError` naming the holder. Re-entrant within one thread; another
    thread of the same process is refused like another process."""

    _held: ClassVar[dict[tuple[str, int], int]] = {}

    def __init__(self, lance_dir: IndexLocation | Path | str, what: str = "") -> None:
        self.location = locate(lance_dir)
        argv = [os.path.basename(sys.argv[0]), *sys.argv[1:]] if sys.argv else []
        self.what = (what or " ".join(argv))[:300]
        self._fd: int | None = None
        self._lease: S3Lease | None = None
        self._nested = False
        if self.location.is_remote:
            self.path = Path(self.location.key(f"{REGISTRY_DIR}/{LOCK_FILE}"))
            self._id = f"{self.location.uri}/{REGISTRY_DIR}/{LOCK_FILE}"
        else:
            self.path = lock_path(self.location)
            self._id = os.path.abspath(self.path)

    def _key(self) -> tuple[str, int]:
        return (self._id, threading.get_ident())

    def acquire(self) -> None:
        key = self._key()
        if key in WriterLock._held:
            WriterLock._held[key] += 1
            self._nested = True
            return
        if self.location.is_remote:
            lease = S3Lease(self.location, self.what)
            lease.acquire()
            self._lease = lease
            WriterLock._held[key] = 1
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise WriterBusyError(
                f"another Enclave process is writing to this index ({holder}); only one "
                "ingest, promote, rollback or purge runs at a time. Wait for it to finish "
                "and run the command again."
            ) from None
        os.ftruncate(fd, 0)
        info = {"pid": os.getpid(), "command": self.what}
        os.pwrite(fd, (json.dumps(info) + "\n").encode("utf-8"), 0)
        self._fd = fd
        WriterLock._held[key] = 1

    def release(self) -> None:
        key = self._key()
        if self._nested:
            WriterLock._held[key] -= 1
            self._nested = False
            return
        if self._lease is not None:
            WriterLock._held.pop(key, None)
            self._lease.release()
            self._lease = None
            return
        if self._fd is None:
            return
        WriterLock._held.pop(key, None)
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        raw = os.pread(fd, 4096, 0).decode("utf-8", errors="replace").strip()
        info = json.loads(raw) if raw else {}
    except (OSError, ValueError):
        info = {}
    if not info:
        return "holder unknown"
    return f"pid {info.get('pid')}: {info.get('command') or '?'}"


class S3Lease:
    """The writer lock of an index on S3: a lease object created by a conditional PUT,
    renewed in the background, deleted on release (see the module's docstring)."""

    def __init__(self, location: IndexLocation, what: str) -> None:
        self.location = location
        self.what = what
        self.lease_s = float(location.s3.lease_s)
        self.key = location.key(f"{REGISTRY_DIR}/{LOCK_FILE}")
        self._etag: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    def _body(self) -> bytes:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "command": self.what,
            "lease_s": self.lease_s,
        }
        return (json.dumps(info) + "\n").encode("utf-8")

    def acquire(self) -> None:
        from botocore.exceptions import ClientError

        self.location.check()
        client = self.location.client()
        bucket = self.location.bucket
        try:
            resp = client.put_object(
                Bucket=bucket, Key=self.key, Body=self._body(), IfNoneMatch="*"
            )
        except ClientError as exc:
            if not _precondition(exc):
                raise
            resp = self._take_over_lapsed(client, bucket)
        self._etag = str(resp["ETag"])
        self._thread = threading.Thread(target=self._renew, name="enclave-lease", daemon=True)
        self._thread.start()

    def _take_over_lapsed(self, client: Any, bucket: str) -> Any:
        from botocore.exceptions import ClientError

        try:
            held = client.get_object(Bucket=bucket, Key=self.key)
        except client.exceptions.NoSuchKey:
            # released in between: try once more to create it
            try:
                return client.put_object(
                    Bucket=bucket, Key=self.key, Body=self._body(), IfNoneMatch="*"
                )
            except ClientError as exc:
                if _precondition(exc):
                    raise self._busy("holder unknown", None) from None
                raise
        raw = held["Body"].read().decode("utf-8", errors="replace")
        try:
            info = json.loads(raw) if raw.strip() else {}
        except ValueError:
            info = {}
        holder = "holder unknown"
        if info:
            holder = f"host {info.get('host', '?')}, pid {info.get('pid', '?')}"
            holder += f": {info.get('command') or '?'}"
        lease_s = float(info.get("lease_s") or self.lease_s)
        now = _server_time(held) or held["LastModified"]
        age = (now - held["LastModified"]).total_seconds()
        if age < lease_s:
            raise self._busy(holder, lease_s - age)
        try:
            resp = client.put_object(
                Bucket=bucket, Key=self.key, Body=self._body(), IfMatch=held["ETag"]
            )
        except ClientError as exc:
            if _precondition(exc):  # another writer took it over first
                raise self._busy("a writer that took over a lapsed lease", None) from None
            raise
        log.warning(
            "took over the writer lease of %s, not renewed for %.0f s (the writer died)",
            holder,
            age,
        )
        return resp

    def _busy(self, holder: str, left_s: float | None) -> WriterBusyError:
        until = "" if left_s is None else f"; its lease lapses in {left_s:.0f} s unless renewed"
        return WriterBusyError(
            f"another Enclave process is writing to this index ({holder}{until}); only one "
            "ingest, promote, rollback or purge runs at a time. Wait for it to finish and run "
            "the command again."
        )

    def _renew(self) -> None:
        from botocore.exceptions import ClientError

        client = self.location.client()
        while not self._stop.wait(self.lease_s / 3):
            try:
                resp = client.put_object(
                    Bucket=self.location.bucket, Key=self.key, Body=self._body(), IfMatch=self._etag
                )
                self._etag = str(resp["ETag"])
            except ClientError as exc:
                if _precondition(exc) or "NoSuchKey" in str(exc):
                    self.lost = True
                    log.error(
                        "the writer lease on %s was taken over by another writer (not "
                        "renewed for %.0f s); stop this process",
                        self.location.uri,
                        self.lease_s,
                    )
                    return
                log.warning("cannot renew the writer lease (will retry): %s", exc)
            except Exception as exc:  # the store is unreachable for a moment
                log.warning("cannot renew the writer lease (will retry): %s", exc)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.lost or self._etag is None:
            return
        with contextlib.suppress(Exception):
            self.location.client().delete_object(
                Bucket=self.location.bucket, Key=self.key, IfMatch=self._etag
            )
        self._etag = None


def _precondition(exc: Any) -> bool:
    code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
    return code in ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


def _server_time(resp: Any) -> Any:
    from email.utils import parsedate_to_datetime

    date = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        return parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        return None
