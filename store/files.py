"""Whole-file storage: the small interface (:class:`RegistryFiles`) through which the release
registry, ``enclave-index.json`` and the writer lock read and write their files, and its local
implementation (:class:`LocalFiles`: each write atomic and durable). ``store/location.py``
gives an object-store one."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Protocol

from enclave.files import atomic_write


class RegistryFiles(Protocol):
    """Whole-file storage of the registry (names are '/'-separated, relative)."""

    def read(self, name: str) -> bytes | None: ...
    def write(self, name: str, data: bytes) -> None: ...
    def delete(self, name: str) -> None: ...
    def list(self, folder: str) -> list[str]: ...
    def stamp(self, name: str) -> tuple[int, int, int] | None: ...
    def local_dir(self, name: str, *, create: bool = True) -> Path: ...


class LocalFiles:
    """The registry in a local folder, each write atomic and durable."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def read(self, name: str) -> bytes | None:
        try:
            return (self.root / name).read_bytes()
        except FileNotFoundError:
            return None

    def write(self, name: str, data: bytes) -> None:
        atomic_write(self.root / name, data)

    def delete(self, name: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.root / name).unlink()

    def list(self, folder: str) -> list[str]:
        try:
            return sorted(p.name for p in (self.root / folder).iterdir() if p.is_file())
        except FileNotFoundError:
            return []

    def stamp(self, name: str) -> tuple[int, int, int] | None:
        """(inode, size, mtime_ns): changes whenever the file is replaced."""
        try:
            st = os.stat(self.root / name)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def local_dir(self, name: str, *, create: bool = True) -> Path:
        """A local folder for files written by other code (the gate's reports)."""
        path = self.root / name
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path
