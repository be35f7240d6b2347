"""Small file helpers: atomic private writes and an advisory inter-process lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from enclave.files import atomic_write
from enclave.files import fsync_dir as fsync_dir  # for the audit log and key

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and parents) if missing; a new leaf directory is owner-only."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(path, PRIVATE_DIR_MODE)


def atomic_write_text(
    path: Path, text: str, *, mode: int = PRIVATE_FILE_MODE, durable: bool = True
) -> None:
    """Write ``text`` to ``path`` atomically with ``mode`` (enclave/files.py)."""
    atomic_write(path, text.encode("utf-8"), mode=mode, durable=durable)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path`` (created 0600 if missing), across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, PRIVATE_FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
