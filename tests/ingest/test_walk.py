"""The walk: globs, folders, symlink loops, unreadable entries."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from enclave.errors import UsageError
from ingest.walk import GlobFilter, WalkedFile, WalkIssue, check_roots, compile_glob, walk
from store.records import doc_id_for_path, normalise_path


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("*.pdf", "a.pdf", True),
        ("*.pdf", "deep/er/a.pdf", True),
        ("*.pdf", "a.pdfx", False),
        ("/*.pdf", "a.pdf", True),
        ("/*.pdf", "sub/a.pdf", False),
        ("docs/*.md", "docs/a.md", True),
        ("docs/*.md", "docs/sub/a.md", False),
        ("docs/**/*.md", "docs/a.md", True),
        ("docs/**/*.md", "docs/x/y/a.md", True),
        ("**/.git/**", ".git/config", True),
        ("**/.git/**", "src/.git/objects/ab", True),
        ("**/.git/**", "src/git/objects", False),
        ("**/~$*", "team/~$report.docx", True),
        ("build/", "build/out.txt", True),
        ("build/", "x/build/out.txt", True),
        ("build/", "builder/out.txt", False),
        ("report-?.txt", "report-1.txt", True),
        ("report-?.txt", "report-12.txt", False),
        ("[ab]*.txt", "b1.txt", True),
        ("[!ab]*.txt", "b1.txt", False),
        ("private/**", "private/x/y.txt", True),
    ],
)
def test_glob_semantics(pattern: str, path: str, matches: bool) -> None:
    assert bool(compile_glob(pattern).match(path)) is matches


def test_excluded_folder_is_not_entered() -> None:
    f = GlobFilter(exclude=["**/.git/**", "build/"])
    assert f.excluded_dir(".git")
    assert f.excluded_dir("a/b/.git")
    assert f.excluded_dir("build")
    assert not f.excluded_dir("src")
    assert f.wanted_file("src/a.txt")


def _tree(root: Path) -> None:
    (root / "a").mkdir(parents=True)
    (root / "a" / "one.txt").write_text("one")
    (root / "a" / "two.md").write_text("two")
    (root / "a" / "skip.bin").write_text("binary")
    (root / "b" / "deep").mkdir(parents=True)
    (root / "b" / "deep" / "three.txt").write_text("three")
    (root / ".git").mkdir()
    (root / ".git" / "config.txt").write_text("git")


def _paths(items: list[WalkedFile | WalkIssue], root: Path) -> list[str]:
    base = normalise_path(root)
    return [i.path[len(base) + 1 :] for i in items if isinstance(i, WalkedFile)]


def test_walk_folder_with_filters(tmp_path: Path) -> None:
    _tree(tmp_path / "r")
    exts = frozenset({".txt", ".md"})
    root = normalise_path(tmp_path / "r")
    items = list(walk([root], exclude=["**/.git/**"], extensions=exts))
    assert _paths(items, tmp_path / "r") == ["a/one.txt", "a/two.md", "b/deep/three.txt"]
    first = items[0]
    assert isinstance(first, WalkedFile)
    assert first.doc_id == doc_id_for_path(first.path)
    assert first.size == 3
    only_md = list(walk([root], include=["*.md"], exclude=["**/.git/**"], extensions=exts))
    assert _paths(only_md, tmp_path / "r") == ["a/two.md"]
    no_b = list(walk([root], exclude=["**/.git/**", "b/"], extensions=exts))
    assert _paths(no_b, tmp_path / "r") == ["a/one.txt", "a/two.md"]


def test_file_given_directly_is_always_reported(tmp_path: Path) -> None:
    _tree(tmp_path / "r")
    binary = normalise_path(tmp_path / "r" / "a" / "skip.bin")
    items = list(walk([binary], extensions=frozenset({".txt"})))
    assert [i.path for i in items] == [binary]


def test_symlink_loops_end_and_files_come_once(tmp_path: Path) -> None:
    _tree(tmp_path / "r")
    os.symlink(tmp_path / "r", tmp_path / "r" / "a" / "loop")  # a/loop -> r (a cycle)
    os.symlink(tmp_path / "r" / "a", tmp_path / "r" / "alias")  # a second way into a/
    os.symlink(tmp_path / "r" / "self", tmp_path / "r" / "self")  # a link to itself
    items = list(walk([normalise_path(tmp_path / "r")], extensions=frozenset({".txt", ".md"})))
    paths = [i.path for i in items if isinstance(i, WalkedFile)]
    assert len(paths) == len(set(paths)) == 4  # one, two, three and .git/config.txt
    assert not [i for i in items if isinstance(i, WalkIssue)]


def test_unreadable_file_is_reported_with_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _tree(tmp_path / "r")
    locked = normalise_path(tmp_path / "r" / "a" / "one.txt")
    real_access = os.access
    # the tests run as root, which reads anything: simulate a file without read permission
    monkeypatch.setattr(
        "ingest.walk.os.access", lambda p, mode: p != locked and real_access(p, mode)
    )
    items = list(walk([normalise_path(tmp_path / "r")], extensions=frozenset({".txt", ".md"})))
    issues = [i for i in items if isinstance(i, WalkIssue)]
    assert [(i.path, i.error) for i in issues] == [(locked, "permission denied")]
    assert locked not in [i.path for i in items if isinstance(i, WalkedFile)]


def test_missing_root_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such file or folder"):
        check_roots([tmp_path / "nope"])
    with pytest.raises(UsageError):
        check_roots([])


def test_bad_glob_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        compile_glob("   ")
