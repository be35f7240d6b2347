"""Answers measured by their facts, with the bundled models (all-MiniLM-L6-v2, SmolLM2-135M)
over real LanceDB: the small golden set in tests/fixtures/answers_golden (manual pages with
key facts, a follow-up, an unanswerable question) through ``enclave eval``'s harness and its
gate; the model's own end-of-turn strings; generated answers free of markup debris."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from enclave.settings import GeneratorSettings, Settings
from eval.harness import EvalOptions, run_eval
from rag.support import quote_in_passage

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "answers_golden"
GATE = """
[min]
"answers.key_fact_accuracy" = 0.75
"answers.followup_key_fact_accuracy" = 0.6
"answers.unanswerable_abstention" = 0.8
"answers.supported_citation_rate" = 0.95
"answers.faithfulness" = 1.0
[max]
"answers.answerable_abstention" = 0.1
"""


@pytest.fixture(scope="module")
def bundled_generator() -> Iterator[Any]:
    from models.loading import load_generator

    gen = load_generator(GeneratorSettings(n_ctx=2048, n_threads=1))
    yield gen
    gen.close()


@pytest.fixture(scope="module")
def golden_run(
    tmp_path_factory: pytest.TempPathFactory, bundled_embedder: Any, bundled_generator: Any
) -> Any:
    root = tmp_path_factory.mktemp("golden")
    gate = root / "gate.toml"
    gate.write_text(GATE, encoding="utf-8")
    settings = Settings(data_dir=root / "data", generator={"n_ctx": 2048, "n_threads": 1})
    return run_eval(
        settings,
        EvalOptions(dataset_dir=GOLDEN, out_dir=root / "out", answers=6, gate=gate, progress=False),
        embedder=bundled_embedder,
        generator=bundled_generator,
    )


def test_key_facts_abstention_and_follow_ups_pass_the_gate(golden_run: Any) -> None:
    report = golden_run.report
    assert report["answer_mode"] == "extract"  # auto with the 135M model
    answers = report["metrics"]["answers"]
    assert answers["count"] == 6 and answers["errors"] == 0
    assert answers["key_fact_accuracy"] == 1.0 and answers["key_fact_ceiling"] == 1.0
    assert answers["followup_key_fact_accuracy"] == 1.0
    assert answers["unanswerable_abstention"] == 1.0
    assert answers["answerable_abstention"] == 0.0
    assert golden_run.gate is not None and golden_run.gate.passed, golden_run.gate


def test_every_answer_is_quotes_cited_by_construction(golden_run: Any) -> None:
    docs = {p.name: p.read_text("utf-8") for p in (GOLDEN / "documents").iterdir()}
    for row in golden_run.report["answers"]:
        if row["unanswerable"]:
            assert row["abstained"] and row["verified"] == []
            continue
        assert row["supported_citation"] and row["faithfulness"] == 1.0
        lines = row["answer"].splitlines()
        assert lines
        for line in lines:
            m = re.fullmatch(r"(?:.+: )?“(.+)” \[(\d+)\]", line)
            assert m, line
            quote = m.group(1)
            # the quoted words are a document's own (markup aside)
            assert any(
                quote_in_passage(quote, re.sub(r"<[^>]+>|`", " ", text)) for text in docs.values()
            ), quote


def test_end_of_turn_strings_come_from_the_gguf(bundled_generator: Any) -> None:
    assert "<|im_end|>" in bundled_generator.end_of_turn_strings()
    assert bundled_generator.parameter_count() < 1_000_000_000
    rendered = bundled_generator.render([{"role": "user", "content": "hi"}])
    assert rendered.startswith("<|im_start|>") and rendered.endswith("<|im_start|>assistant\n")


def test_generated_answers_have_no_markup_debris(
    golden_run: Any, bundled_embedder: Any, bundled_generator: Any
) -> None:
    from rag.service import RagService
    from store.db import Store

    index_dir = Path(golden_run.report["index"]["dir"])
    settings = Settings(
        data_dir=index_dir,
        generator={"n_ctx": 2048, "n_threads": 1, "max_tokens": 48},
        answer={"mode": "generate"},
    )
    rag = RagService(settings, Store(settings.lance_dir), bundled_embedder, bundled_generator)
    for question in (
        "Which harborctl option rebuilds the index files?",
        "How much memory does Harbor use for its shared page cache by default?",
    ):
        answer = rag.answer([{"role": "user", "content": question}], temperature=0.0)
        assert answer.mode == "generate" and answer.usage.completion_tokens > 0
        for debris in ("</", "<|", "```", "<pre"):
            assert debris not in answer.text, answer.text
        assert answer.verified  # a supported sentence, or the quotes it fell back to
