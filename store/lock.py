"""The single-writer lock of an index: one ingest, promote, rollback or purge at a time.

``fcntl.flock`` on ``<lance_dir>/_enclave/write.lock``: the kernel releases it when its holder
exits, however it exits (SIGKILL included), so a lock never outlives a crashed writer and no
stale-lock recovery is needed. The holder writes its pid and command line into the file, so a
refused writer can say who holds it. A second writer is refused at once (exit code 2, HTTP
409), never queued: two runs racing over one index would each see the other's candidate.

LanceDB itself allows concurrent appends but not concurrent deletes or merges (commit
conflicts), and cleanups are safe only without another writer: this lock is what makes every
write path of Enclave single-writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import ClassVar

from enclave.errors import EnclaveError
from store.registry import REGISTRY_DIR

LOCK_FILE = "write.lock"


class WriterBusyError(EnclaveError):
    """Another process writes to this index (ingest, promote, rollback or purge)."""

    status_code = 409
    error_type = "invalid_request_error"
    code = "writer_busy"
    exit_code = 2


def lock_path(lance_dir: Path | str) -> Path:
    return Path(lance_dir) / REGISTRY_DIR / LOCK_FILE


class WriterLock:
    """``with WriterLock(lance_dir, "enclave ingest"):`` holds the index's writer lock, or
    raises :class:`WriterBusyError` naming the holder. Re-entrant within one thread; another
    thread of the same process is refused like another process."""

    _held: ClassVar[dict[tuple[str, int], int]] = {}

    def __init__(self, lance_dir: Path | str, what: str = "") -> None:
        self.path = lock_path(lance_dir)
        argv = [os.path.basename(sys.argv[0]), *sys.argv[1:]] if sys.argv else []
        self.what = (what or " ".join(argv))[:300]
        self._fd: int | None = None
        self._nested = False

    def _key(self) -> tuple[str, int]:
        return (os.path.abspath(self.path), threading.get_ident())

    def acquire(self) -> None:
        key = self._key()
        if key in WriterLock._held:
            WriterLock._held[key] += 1
            self._nested = True
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
