"""Two versions of a small document set for the release tests (local and S3): ``SET_A``, then
``SET_B`` (two files removed, one changed, two added); each text is one sentence led by
``Marker <name> <version>`` (an answer can quote it) over words the parse-quality check
admits."""

from __future__ import annotations

import random
from pathlib import Path

SET_A = {f"a{i}.txt": "one" for i in range(8)}
SET_B = {**{k: v for k, v in SET_A.items() if k not in ("a0.txt", "a1.txt")},
         "a2.txt": "two", "b0.txt": "one", "b1.txt": "one"}  # fmt: skip


def text_for(name: str, version: str, words: list[str], count: int) -> str:
    rng = random.Random(name)
    body = " ".join(rng.choice(words) for _ in range(count))
    return f"Marker {name} {version} {body}.\n"


def write_set(folder: Path, docs: dict[str, str], words: list[str], count: int) -> None:
    """Make ``folder`` hold exactly ``docs`` (name -> version); files whose text is already
    right are left alone (their mtime too)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.txt"):
        if old.name not in docs:
            old.unlink()
    for name, version in docs.items():
        path = folder / name
        text = text_for(name, version, words, count)
        if not path.exists() or path.read_text() != text:
            path.write_text(text, encoding="utf-8")
