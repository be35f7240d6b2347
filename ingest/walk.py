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

from enclave.errors import UsageError
from store.records import doc_id_for_path, normalise_path, path_key, real_path


@dataclass
class WalkedFile:
    """A regular file found under a root (not yet hashed)."""

    path: str  # the document's key: store.records.normalise_path (valid UTF-8)
    doc_id: str
    size: int
    mtime: float
    #: the real path as the operating system spells it, to open the file (differs from
    #: ``path`` only for names that are not UTF-8; store.records.path_key)
    fs_path: str = ""

    def __post_init__(self) -> None:
        if not self.fs_path:
            self.fs_path = self.path


@dataclass
class WalkIssue:
    """Something under a root that could not be read."""

    path: str
    error: str
    is_file: bool = True
    #: the document id of a file (from its real path's bytes); empty for folders
    doc_id: str = ""


@dataclass
class WalkSkip:
    """Something under a root that is deliberately not ingested, and why (listed in the
    summary's ``skipped``, never a document row)."""

    path: str
    reason: str


#: what the walk yields
WalkItem = WalkedFile | WalkIssue | WalkSkip


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


def check_roots(paths: Sequence[str | bytes | os.PathLike[str] | os.PathLike[bytes]]) -> list[str]:
    """The roots as real paths (absolute, symlinks resolved, spelled as the operating system
    spells them: see :func:`store.records.real_path`); a missing path is a usage error (exit
    code 2)."""
    if not paths:
        raise UsageError("give at least one file or folder to ingest")
    roots: list[str] = []
    for p in paths:
        raw = os.fsdecode(os.fspath(p))
        if "\x00" in raw:
            raise UsageError("path contains a NUL character")
        if not os.path.exists(raw):
            raise UsageError(f"no such file or folder: {path_key(raw)}")
        roots.append(real_path(raw))
    return roots


def walk(
    roots: Sequence[str],
    *,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    extensions: frozenset[str] | None = None,
    skipped: dict[str, int] | None = None,
    follow_external_links: bool = False,
) -> Iterator[WalkItem]:
    """Yield every wanted regular file under ``roots`` (sorted, each file once), every
    unreadable entry as a :class:`WalkIssue` and every entry left out on purpose as a
    :class:`WalkSkip` with its reason.

    ``roots`` are real paths (:func:`check_roots`). ``extensions`` (lower-case, with the dot)
    limits folder walks to supported files; a file named directly is always yielded so that an
    unsupported one is reported, not ignored. ``skipped["unsupported"]`` (when given) counts
    the files a folder walk passed over for their extension.

    Symbolic links: a link whose target lies inside one of the roots is followed (a folder
    already visited, by device and inode, is not entered again, so link loops end; a file
    reached twice is yielded once, under its real path). A link whose target lies outside
    every root is a :class:`WalkSkip` ("symbolic link to a file|folder outside the ingested
    folders") unless ``follow_external_links``; a broken link and a link loop are skipped with
    that reason. FIFOs, sockets and devices are never opened: they are skipped with their
    kind. Nothing matched by an exclude glob is reported.
    """
    filt = GlobFilter(include, exclude)
    seen_files: set[str] = set()
    seen_dirs: set[tuple[int, int]] = set()
    ctx = _Walk(
        filt, extensions, seen_files, seen_dirs, skipped, list(roots), follow_external_links
    )
    for root in roots:
        try:
            st = os.stat(root)
        except OSError as exc:
            yield WalkIssue(path_key(root), _reason(exc), is_file=False)
            continue
        if stat.S_ISDIR(st.st_mode):
            yield from ctx.walk_dir(root)
        elif stat.S_ISREG(st.st_mode):
            if root in seen_files:
                continue
            seen_files.add(root)
            if not filt.wanted_file(path_key(os.path.basename(root))):
                continue
            yield _file(root, st)
        else:
            yield WalkIssue(path_key(root), f"not a regular file or folder ({_kind(st.st_mode)})")


@dataclass
class _Walk:
    """The state of one walk (see :func:`walk`)."""

    filt: GlobFilter
    extensions: frozenset[str] | None
    seen_files: set[str]
    seen_dirs: set[tuple[int, int]]
    skipped: dict[str, int] | None
    roots: list[str]
    follow_external_links: bool

    def inside(self, real: str) -> bool:
        """Whether a real path lies in one of the roots."""
        return any(_is_under_real(real, r) for r in self.roots)

    def walk_dir(self, root: str) -> Iterator[WalkItem]:
        # depth-first, sorted, iterative (no recursion limit on deep trees)
        stack: list[tuple[str, str]] = [(root, "")]
        while stack:
            folder, rel = stack.pop()
            try:
                dst = os.stat(folder)
            except OSError as exc:
                yield WalkIssue(path_key(folder), _reason(exc), is_file=False)
                continue
            key = (dst.st_dev, dst.st_ino)
            if key in self.seen_dirs:
                continue  # a symlink loop or a folder reached twice
            self.seen_dirs.add(key)
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as exc:
                yield WalkIssue(normalise_path(folder), _reason(exc), is_file=False)
                continue
            subdirs: list[tuple[str, str]] = []
            for entry in entries:
                child_rel = f"{rel}/{path_key(entry.name)}" if rel else path_key(entry.name)
                found = self._entry(entry, child_rel, subdirs)
                if found is not None:
                    yield found
            stack.extend(reversed(subdirs))

    def _entry(
        self, entry: os.DirEntry[str], rel: str, subdirs: list[tuple[str, str]]
    ) -> WalkItem | None:
        """What one folder entry is: a file, an issue, a skip, or nothing (a sub-folder is
        appended to ``subdirs``)."""
        filt = self.filt
        try:
            link = entry.is_symlink()
            is_dir = entry.is_dir(follow_symlinks=True)
            is_file = not is_dir and entry.is_file(follow_symlinks=True)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return (
                    None
                    if filt.excluded_file(rel)
                    else WalkSkip(_here(entry), "symbolic link loop")
                )
            return WalkIssue(
                normalise_path(entry.path), _reason(exc), doc_id=doc_id_for_path(entry.path)
            )
        excluded = filt.excluded_dir(rel) if is_dir else filt.excluded_file(rel)
        if link:
            if excluded:
                return None
            if not os.path.exists(entry.path):
                return WalkSkip(_here(entry), "broken symbolic link")
            target = real_path(entry.path)
            if not self.follow_external_links and not self.inside(target):
                what = "folder" if is_dir else "file" if is_file else "special file"
                return WalkSkip(
                    _here(entry),
                    f"symbolic link to a {what} outside the ingested folders "
                    f"({path_key(target)}); not followed (ingest.follow_external_links, "
                    "--follow-links)",
                )
        if is_dir:
            if not excluded:
                subdirs.append((entry.path, rel))
            return None
        if not is_file:
            if excluded:
                return None
            try:
                mode = os.stat(entry.path).st_mode
            except OSError:
                return WalkSkip(_here(entry), "broken symbolic link")
            return WalkSkip(_here(entry), f"not a regular file ({_kind(mode)})")
        ext = os.path.splitext(entry.name)[1].lower()
        if self.extensions is not None and ext not in self.extensions:
            if self.skipped is not None and not excluded:
                self.skipped["unsupported"] = self.skipped.get("unsupported", 0) + 1
            return None
        if not filt.wanted_file(rel):
            return None
        real = real_path(entry.path)
        if real in self.seen_files:
            return None
        self.seen_files.add(real)
        try:
            st = os.stat(real)
        except OSError as exc:
            return WalkIssue(path_key(real), _reason(exc), doc_id=doc_id_for_path(real))
        return _file(real, st)


def _here(entry: os.DirEntry[str]) -> str:
    """The key of a folder entry where it was met (its own location, not a link's target)."""
    return path_key(os.path.abspath(entry.path))


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "FIFO"
    if stat.S_ISSOCK(mode):
        return "socket"
    if stat.S_ISCHR(mode):
        return "character device"
    if stat.S_ISBLK(mode):
        return "block device"
    return "special file"


def _file(real: str, st: os.stat_result) -> WalkedFile | WalkIssue:
    key = path_key(real)
    doc_id = doc_id_for_path(real)
    if not os.access(real, os.R_OK):
        return WalkIssue(key, "permission denied", doc_id=doc_id)
    return WalkedFile(path=key, doc_id=doc_id, size=st.st_size, mtime=st.st_mtime, fs_path=real)


def _reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, FileNotFoundError):
        return "file not found"
    return f"cannot read: {exc.strerror or exc}"


def _is_under_real(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def is_under(path: str, root: str) -> bool:
    """Whether the key ``path`` is ``root`` or lies below it (``root`` a key or a real path)."""
    return _is_under_real(path, path_key(root))
