"""Find the files to ingest: files and folders, include/exclude globs, symlink-loop safe.

Globs follow gitignore habits and are matched against the path relative to the root the user
gave (for a file given directly, its name):

* ``*`` and ``?`` stay inside one path segment, ``[abc]`` is a character class;
* ``**`` matches any number of segments, including none (``**/.git/**`` matches ``.git/config``);
* a pattern without ``/`` matches the name at any depth (``*.pdf`` == ``**/*.pdf``);
* a pattern ending in ``/`` matches a folder and everything below it (``build/``).

A folder matched by an exclude pattern is not descended into. Unreadable files and folders are
reported with a reason, never silently dropped.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from enclave.errors import UsageError
from store.records import doc_id_for_path, normalise_path


@dataclass
class WalkedFile:
    """A regular file found under a root (not yet hashed)."""

    path: str  # normalised absolute path
    doc_id: str
    size: int
    mtime: float


@dataclass
class WalkIssue:
    """Something under a root that could not be read."""

    path: str
    error: str
    is_file: bool = True


@lru_cache(maxsize=512)
def compile_glob(pattern: str) -> re.Pattern[str]:
    """Translate one gitignore-style glob into an anchored regular expression."""
    pat = pattern.strip().replace("\\", "/")
    if not pat:
        raise UsageError("empty glob pattern")
    dir_only = pat.endswith("/")
    pat = pat.rstrip("/")
    anchored = pat.startswith("/")
    pat = pat.lstrip("/")
    if not anchored and "/" not in pat:
        pat = "**/" + pat
    if dir_only:
        pat = pat + "/**"
    out: list[str] = []
    i = 0
    n = len(pat)
    while i < n:
        c = pat[i]
        if c == "*":
            if pat.startswith("**", i):
                before_ok = i == 0 or pat[i - 1] == "/"
                after = i + 2
                if before_ok and after < n and pat[after] == "/":
                    out.append("(?:.*/)?")  # "**/": zero or more whole segments
                    i = after + 1
                    continue
                if before_ok and after == n:
                    out.append(".*")  # trailing "**": everything below
                    i = after
                    continue
                out.append("[^/]*")  # "**" inside a segment acts like "*"
                i = after
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pat.find(
                "]", i + 2 if pat.startswith("[!", i) or pat.startswith("[^", i) else i + 1
            )
            if j == -1:
                out.append(re.escape(c))
            else:
                body = pat[i + 1 : j]
                if body.startswith(("!", "^")):
                    body = "^" + body[1:]
                body = body.replace("\\", "\\\\")
                out.append("[" + body + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    try:
        return re.compile("".join(out) + r"\Z", re.DOTALL)
    except re.error as exc:
        raise UsageError(f"invalid glob pattern {pattern!r}: {exc}") from exc


class GlobFilter:
    """Include/exclude decisions on root-relative, '/'-separated paths."""

    def __init__(self, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> None:
        self.include = [compile_glob(p) for p in include]
        self.exclude = [compile_glob(p) for p in exclude]

    def excluded_dir(self, rel: str) -> bool:
        """A folder is skipped when an exclude pattern matches it or anything inside it."""
        return any(rx.match(rel) or rx.match(rel + "/") for rx in self.exclude)

    def excluded_file(self, rel: str) -> bool:
        return any(rx.match(rel) for rx in self.exclude)

    def wanted_file(self, rel: str) -> bool:
        if any(rx.match(rel) for rx in self.exclude):
            return False
        return not self.include or any(rx.match(rel) for rx in self.include)


def check_roots(paths: Sequence[str | Path]) -> list[str]:
    """Normalised roots; a missing path is a usage error (exit code 2)."""
    if not paths:
        raise UsageError("give at least one file or folder to ingest")
    roots: list[str] = []
    for p in paths:
        raw = os.fspath(p)
        if "\x00" in raw:
            raise UsageError("path contains a NUL character")
        if not os.path.exists(raw):
            raise UsageError(f"no such file or folder: {raw}")
        roots.append(normalise_path(raw))
    return roots


def walk(
    roots: Sequence[str],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    extensions: frozenset[str] | None = None,
    skipped: dict[str, int] | None = None,
) -> Iterator[WalkedFile | WalkIssue]:
    """Yield every wanted regular file under ``roots`` (sorted, each file once) and every
    unreadable entry as a :class:`WalkIssue`.

    ``extensions`` (lower-case, with the dot) limits folder walks to supported files; a file
    named directly is always yielded so that an unsupported one is reported, not ignored.
    ``skipped["unsupported"]`` (when given) counts the files a folder walk passed over for
    their extension. Symlinks are followed, but a folder already visited (by device and inode)
    is not entered again, so link loops end.
    """
    filt = GlobFilter(include, exclude)
    seen_files: set[str] = set()
    seen_dirs: set[tuple[int, int]] = set()
    for root in roots:
        try:
            st = os.stat(root)
        except OSError as exc:
            yield WalkIssue(root, _reason(exc), is_file=False)
            continue
        if stat.S_ISDIR(st.st_mode):
            yield from _walk_dir(root, filt, extensions, seen_files, seen_dirs, skipped)
        elif stat.S_ISREG(st.st_mode):
            if root in seen_files:
                continue
            seen_files.add(root)
            if not filt.wanted_file(os.path.basename(root)):
                continue
            item = _file(root, st)
            yield item if item is not None else WalkIssue(root, "permission denied")
        else:
            yield WalkIssue(root, "not a regular file or folder")


def _walk_dir(
    root: str,
    filt: GlobFilter,
    extensions: frozenset[str] | None,
    seen_files: set[str],
    seen_dirs: set[tuple[int, int]],
    skipped: dict[str, int] | None,
) -> Iterator[WalkedFile | WalkIssue]:
    # depth-first, sorted, iterative (no recursion limit on deep trees)
    stack: list[tuple[str, str]] = [(root, "")]
    while stack:
        folder, rel = stack.pop()
        try:
            dst = os.stat(folder)
        except OSError as exc:
            yield WalkIssue(folder, _reason(exc), is_file=False)
            continue
        key = (dst.st_dev, dst.st_ino)
        if key in seen_dirs:
            continue  # a symlink loop or a folder reached twice
        seen_dirs.add(key)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            yield WalkIssue(normalise_path(folder), _reason(exc), is_file=False)
            continue
        subdirs: list[tuple[str, str]] = []
        for entry in entries:
            child_rel = f"{rel}/{entry.name}" if rel else entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=True)
                is_file = not is_dir and entry.is_file(follow_symlinks=True)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    continue  # a link that points at itself: as good as dangling
                yield WalkIssue(normalise_path(entry.path), _reason(exc))
                continue
            if is_dir:
                if not filt.excluded_dir(child_rel):
                    subdirs.append((entry.path, child_rel))
                continue
            if not is_file:
                if entry.is_symlink() and not os.path.exists(entry.path):
                    continue  # a dangling link is not a document
                continue  # sockets, fifos, devices
            if extensions is not None and os.path.splitext(entry.name)[1].lower() not in extensions:
                if skipped is not None and not filt.excluded_file(child_rel):
                    skipped["unsupported"] = skipped.get("unsupported", 0) + 1
                continue
            if not filt.wanted_file(child_rel):
                continue
            path = normalise_path(entry.path)
            if path in seen_files:
                continue
            seen_files.add(path)
            try:
                st = os.stat(path)
            except OSError as exc:
                yield WalkIssue(path, _reason(exc))
                continue
            item = _file(path, st)
            if item is not None:
                yield item
            else:
                yield WalkIssue(path, "permission denied")
        stack.extend(reversed(subdirs))


def _file(path: str, st: os.stat_result) -> WalkedFile | None:
    if not os.access(path, os.R_OK):
        return None
    return WalkedFile(path=path, doc_id=doc_id_for_path(path), size=st.st_size, mtime=st.st_mtime)


def _reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    return f"cannot read: {exc.strerror or exc}"


def is_under(path: str, root: str) -> bool:
    """Whether normalised ``path`` is ``root`` or lies below it."""
    return path == root or path.startswith(root.rstrip("/") + "/")
