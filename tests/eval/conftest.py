"""Small evaluation datasets written into tmp_path; no test reads data outside it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

PASSAGES: dict[str, tuple[str, str]] = {
    "d-volcano": (
        "Volcanoes of Iceland",
        "Iceland sits on the Mid-Atlantic Ridge. The volcano Eyjafjallajokull erupted in 2010 "
        "and its ash cloud closed European airspace for six days. Hekla is another active "
        "volcano in the south of the island.",
    ),
    "d-coffee": (
        "Coffee roasting",
        "Coffee beans are roasted at temperatures between 190 and 240 degrees Celsius. Light "
        "roasts keep more acidity, while dark roasts taste bitter and smoky. The first crack "
        "is a popping sound that marks a light roast.",
    ),
    "d-lighthouse": (
        "The lighthouse keeper",
        "Martha Quill kept the Gull Rock lighthouse for forty years. Every night she climbed "
        "the one hundred and twelve steps to light the lamp. Her logbook recorded each ship "
        "that passed the rock.",
    ),
    "d-bees": (
        "Honey bees",
        "A honey bee colony has one queen, thousands of female workers and a few hundred male "
        "drones. Workers perform the waggle dance to tell other bees the direction of flowers. "
        "Bees make honey from nectar.",
    ),
    "d-chess": (
        "Chess openings",
        "The Sicilian Defence begins with the moves e4 c5. It is the most popular response to "
        "the king's pawn opening. The Queen's Gambit starts with d4 d5 c4.",
    ),
    "d-trains": (
        "Night trains",
        "The night train from Vienna to Paris leaves at eight in the evening and arrives the "
        "next morning. Passengers sleep in couchettes or private sleeper cabins.",
    ),
}

QUERIES: list[tuple[str, str, list[str], list[str]]] = [
    ("q1", "Which Icelandic volcano erupted in 2010?", ["Eyjafjallajokull"], ["d-volcano"]),
    ("q2", "At what temperature are coffee beans roasted?", ["190 to 240 degrees"], ["d-coffee"]),
    ("q3", "Who kept the Gull Rock lighthouse?", ["Martha Quill"], ["d-lighthouse"]),
    ("q4", "How do bees tell others where flowers are?", ["the waggle dance"], ["d-bees"]),
    ("q5", "What moves begin the Sicilian Defence?", ["e4 c5"], ["d-chess"]),
    ("q6", "When does the night train from Vienna leave?", ["eight in the evening"], ["d-trains"]),
    ("q7", "How many steps did Martha climb each night?", ["112"], ["d-lighthouse"]),
    ("q8", "What do roasts and volcanoes have in common?", [], ["d-coffee", "d-volcano"]),
]


def write_jsonl_dataset(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with (root / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for pid, (title, text) in PASSAGES.items():
            f.write(json.dumps({"_id": pid, "title": title, "text": text}) + "\n")
    _write_queries(root, {pid: pid for pid in PASSAGES})
    return root


def write_documents_dataset(root: Path) -> Path:
    """The same corpus as real files (text and markdown, one in a sub-folder)."""
    docs = root / "documents"
    (docs / "notes").mkdir(parents=True, exist_ok=True)
    names: dict[str, str] = {}
    for i, (pid, (title, text)) in enumerate(PASSAGES.items()):
        if i % 2:
            rel = f"notes/{pid}.md"
            (docs / rel).write_text(f"# {title}\n\n{text}\n", encoding="utf-8")
        else:
            rel = f"{pid}.txt"
            (docs / rel).write_text(f"{title}\n\n{text}\n", encoding="utf-8")
        names[pid] = rel
    _write_queries(root, names)
    return root


def _write_queries(root: Path, names: dict[str, str]) -> None:
    with (root / "queries.jsonl").open("w", encoding="utf-8") as f:
        for qid, text, answers, _ in QUERIES:
            row: dict[str, object] = {"_id": qid, "text": text}
            if answers:
                row["answers"] = answers
            f.write(json.dumps(row) + "\n")
    (root / "qrels").mkdir(exist_ok=True)
    lines = ["query-id\tcorpus-id\tscore"]
    for qid, _, _, rel in QUERIES:
        lines += [f"{qid}\t{names[d]}\t1" for d in rel]
    (root / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.fixture
def jsonl_dataset(tmp_path: Path) -> Path:
    return write_jsonl_dataset(tmp_path / "golden-jsonl")


@pytest.fixture
def documents_dataset(tmp_path: Path) -> Path:
    return write_documents_dataset(tmp_path / "golden-docs")
