"""Reading BEIR-layout datasets: both corpus forms, hashes, and clear errors for bad layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from enclave.errors import UsageError
from eval.dataset import corpus_file_name, load_dataset
from eval.index import DocMapper
from eval.runner import sample_queries


def test_jsonl_dataset(jsonl_dataset: Path) -> None:
    ds = load_dataset(jsonl_dataset)
    assert ds.kind == "jsonl"
    assert len(ds.corpus) == 6 and len(ds.queries) == 8
    assert ds.qrels["q8"] == {"d-coffee": 1.0, "d-volcano": 1.0}
    assert ds.corpus["d-bees"].title == "Honey bees"
    assert ds.describe()["queries_with_answers"] == 7
    assert len(ds.hash) == 64 and ds.hash != ds.corpus_hash


def test_documents_dataset(documents_dataset: Path) -> None:
    ds = load_dataset(documents_dataset)
    assert ds.kind == "documents"
    assert "notes/d-coffee.md" in ds.corpus and "d-volcano.txt" in ds.corpus
    assert ds.qrels["q2"] == {"notes/d-coffee.md": 1.0}


def test_hash_follows_content(jsonl_dataset: Path) -> None:
    before = load_dataset(jsonl_dataset)
    with (jsonl_dataset / "queries.jsonl").open("a", encoding="utf-8") as f:
        f.write(json.dumps({"_id": "q9", "text": "extra?"}) + "\n")
    after = load_dataset(jsonl_dataset)
    assert after.corpus_hash == before.corpus_hash  # the index can be reused
    assert after.hash != before.hash


def test_mapper_by_path_suffix_and_file_name(jsonl_dataset: Path, documents_dataset: Path) -> None:
    docs = DocMapper(load_dataset(documents_dataset))
    assert docs("/srv/other/place/notes/d-coffee.md") == "notes/d-coffee.md"
    assert docs("/srv/d-volcano.txt") == "d-volcano.txt"
    assert docs("/srv/unrelated.txt") is None
    jsonl = DocMapper(load_dataset(jsonl_dataset))
    assert jsonl("/anywhere/corpus/d-chess.txt") == "d-chess"
    assert corpus_file_name("a/b c") != corpus_file_name("a/b d")
    assert "/" not in corpus_file_name("a/b c")


def test_answer_sample_is_seeded(jsonl_dataset: Path) -> None:
    ds = load_dataset(jsonl_dataset)
    a = [q.id for q in sample_queries(ds.queries, 3, seed=1)]
    b = [q.id for q in sample_queries(ds.queries, 3, seed=1)]
    assert a == b and len(a) == 3 and "q8" not in a  # q8 has no reference answers
    assert len(sample_queries(ds.queries, 100, seed=0)) == 7


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: (r / "corpus.jsonl").unlink(), "neither corpus.jsonl nor a documents/"),
        (lambda r: (r / "queries.jsonl").unlink(), "no queries.jsonl"),
        (lambda r: (r / "qrels" / "test.tsv").rename(r / "qrels" / "dev.tsv"), "found: dev.tsv"),
        (lambda r: (r / "documents").mkdir(), "both corpus.jsonl and documents/"),
        (
            lambda r: (r / "corpus.jsonl").write_text('{"_id": "a", "text": "x"}\nnot json\n'),
            r"corpus.jsonl:2: not valid JSON",
        ),
        (
            lambda r: (r / "corpus.jsonl").write_text('{"title": "x", "text": "y"}\n'),
            "missing '_id'",
        ),
        (
            lambda r: (r / "qrels" / "test.tsv").write_text("q-id\tc-id\tscore\nq1\tnope\t1\n"),
            "corpus id.* that are not passages in corpus.jsonl, e.g. 'nope'",
        ),
        (
            lambda r: (r / "qrels" / "test.tsv").write_text("q-id\tc-id\tscore\nqx\td-bees\t1\n"),
            "missing from queries.jsonl",
        ),
        (
            lambda r: (r / "qrels" / "test.tsv").write_text("h\th\th\nq1\td-bees\thigh\n"),
            "is not a number",
        ),
    ],
)
def test_bad_layouts_are_usage_errors(jsonl_dataset: Path, mutate, message: str) -> None:
    mutate(jsonl_dataset)
    with pytest.raises(UsageError, match=message):
        load_dataset(jsonl_dataset)


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="dataset folder not found"):
        load_dataset(tmp_path / "nope")


def _add_queries(root: Path, *rows: dict[str, object]) -> None:
    with (root / "queries.jsonl").open("a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def test_keys_unanswerable_and_history(jsonl_dataset: Path) -> None:
    history = [
        {"role": "user", "content": "What do bees make?"},
        {"role": "assistant", "content": "Honey."},
    ]
    _add_queries(
        jsonl_dataset,
        {"_id": "k1", "text": "How warm is lava?", "keys": ["1200 °C", "1,200 degrees"]},
        {"_id": "u1", "text": "Who wrote the Zorblax manual?", "unanswerable": True},
        {"_id": "f1", "text": "And what do they eat?", "keys": ["nectar"], "history": history},
    )
    ds = load_dataset(jsonl_dataset)
    by_id = ds.query_by_id()
    assert by_id["k1"].keys == ["1200 °C", "1,200 degrees"] and by_id["k1"].scored_by_fact
    assert by_id["u1"].unanswerable and not by_id["u1"].keys and by_id["u1"].scored_by_fact
    assert by_id["f1"].follow_up and by_id["f1"].messages() == [
        *history,
        {"role": "user", "content": "And what do they eat?"},
    ]
    described = ds.describe()
    assert (described["queries_with_keys"], described["follow_ups"]) == (2, 1)
    assert described["unanswerable"] == 1
    # queries scored by fact join the answer sample even without reference answers
    assert {"k1", "u1", "f1"} <= {q.id for q in sample_queries(ds.queries, 100, seed=0)}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"_id": "x", "text": "q", "keys": "a", "unanswerable": True}, "has no keys"),
        ({"_id": "x", "text": "q", "keys": [1]}, "'keys' must be a list of strings"),
        ({"_id": "x", "text": "q", "unanswerable": "yes"}, "must be true or false"),
        (
            {"_id": "x", "text": "q", "history": [{"role": "assistant", "content": "hi"}]},
            r"history\[0\].role must be 'user'",
        ),
        (
            {"_id": "x", "text": "q", "history": [{"role": "user", "content": "hi"}]},
            "must end with the assistant",
        ),
    ],
)
def test_bad_fact_fields_are_usage_errors(jsonl_dataset: Path, row, message: str) -> None:
    _add_queries(jsonl_dataset, row)
    with pytest.raises(UsageError, match=message):
        load_dataset(jsonl_dataset)


def test_unanswerable_question_with_qrels_is_refused(jsonl_dataset: Path) -> None:
    _add_queries(jsonl_dataset, {"_id": "u1", "text": "Zorblax?", "unanswerable": True})
    with (jsonl_dataset / "qrels" / "test.tsv").open("a", encoding="utf-8") as f:
        f.write("u1\td-bees\t1\n")
    with pytest.raises(UsageError, match="unanswerable query 'u1' has relevant documents"):
        load_dataset(jsonl_dataset)
