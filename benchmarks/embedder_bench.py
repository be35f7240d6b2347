"""Embedder variants: int8 (ONNX Runtime) against fp32 (sentence-transformers) on the bundled
all-MiniLM-L6-v2, each figure printed beside its target.

    .venv/bin/python benchmarks/embedder_bench.py CORPUS [--speed-chunks 256] [--rounds 5]
        [--cosine-chunks 3000] [--dataset DIR ...] [--data-dir D] [--threads 0] [--json]

* chunks: Enclave's own parser, cleaner and chunker (200-token chunks, 30 overlap, as
  ``enclave ingest`` makes them) over the files of CORPUS (e.g. the PostgreSQL manual's HTML),
  taken in a fixed shuffled order;
* speed: ``--rounds`` interleaved rounds (fp32, int8, fp32, int8, ...) over the same
  ``--speed-chunks`` chunks in model batches of ``embedder.batch_size`` (32), after a warm-up
  batch each; chunks/s per round, the median of each and the median of the per-round ratios
  (target: int8 >= 1.8x fp32). Twice: over full chunks (at least 90% of
  ``ingest.chunk_tokens``: the anchor's 200-token chunks) and over chunks as ingestion makes
  them (every length, sorted by length as the pipeline sorts them before batching);
* cosine: int8 against fp32 vectors of ``--cosine-chunks`` chunks (min, p1, p5, mean), all of
  them and the full ones alone (anchor: min >= 0.988 on 200-token chunks);
* recall (one per ``--dataset``, a BEIR-shaped folder as ``enclave eval`` reads): each variant
  ingests the corpus into its own evaluation index (``<data-dir>/<variant>/eval/<key>``, kept
  and reused), then recall@10 of the server's hybrid retrieval (what ``enclave eval
  --no-answers`` reports) and of dense retrieval alone (exact cosine, no full text: the
  embedder's own share); target: int8 within 0.5 point of fp32.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from enclave.offline import enforce_offline  # noqa: E402

enforce_offline()

from enclave.settings import load_settings  # noqa: E402
from models.embedder import Embedder  # noqa: E402
from models.loading import load_embedder  # noqa: E402

SPEED_TARGET = 1.8
RECALL_TOLERANCE = 0.005
SUFFIXES = {".html", ".htm", ".txt", ".md", ".pdf", ".docx"}


def make_chunks(corpus: Path, embedder: Embedder, want: int, seed: int = 0) -> list[str]:
    """Up to ``want`` chunk texts (what ingestion embeds) from the files of ``corpus``."""
    from enclave.settings import IngestSettings
    from ingest.chunk import Chunker, chunk_document
    from ingest.clean import clean_document
    from ingest.parse import parse_file

    files = sorted(p for p in corpus.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)
    random.Random(seed).shuffle(files)
    ingest = IngestSettings()
    chunker = Chunker(embedder, ingest.chunk_tokens, ingest.chunk_overlap)
    out: list[str] = []
    for i, path in enumerate(files):
        try:
            cleaned = clean_document(parse_file(str(path), ingest))
            out.extend(c.embed_text for c in chunk_document(cleaned, f"doc{i}", chunker))
        except Exception as exc:  # a file that does not parse is skipped, as ingest would
            print(f"  skipped {path.name}: {exc}", file=sys.stderr)
        if len(out) >= want:
            break
    return out[:want]


def speed(embedders: dict[str, Embedder], chunks: list[str], rounds: int) -> dict[str, Any]:
    """Interleaved rounds over the same chunks; chunks/s per round and variant."""
    for emb in embedders.values():
        emb.embed(chunks[: emb.batch_size])  # warm-up
    rates: dict[str, list[float]] = {name: [] for name in embedders}
    loads: list[float] = []
    for _ in range(rounds):
        loads.append(os.getloadavg()[0])
        for name, emb in embedders.items():
            t0 = time.perf_counter()
            emb.embed(chunks)
            rates[name].append(len(chunks) / (time.perf_counter() - t0))
    ratios = [i / f for i, f in zip(rates["int8"], rates["fp32"], strict=True)]
    return {
        "chunks": len(chunks),
        "rounds": rounds,
        "chunks_per_s": {k: [round(x, 2) for x in v] for k, v in rates.items()},
        "median_chunks_per_s": {k: round(float(np.median(v)), 2) for k, v in rates.items()},
        "ratios": [round(r, 3) for r in ratios],
        "median_ratio": round(float(np.median(ratios)), 3),
        "load_average_1m": [round(x, 2) for x in loads],
    }


def cosine(embedders: dict[str, Embedder], chunks: list[str], full_at: int) -> dict[str, Any]:
    """Cosine of int8 to fp32 vectors over every chunk, and over full chunks alone (at least
    ``full_at`` tokens: the anchor's 200-token chunks)."""
    ref = embedders["fp32"].embed(chunks).astype(np.float64)
    got = embedders["int8"].embed(chunks).astype(np.float64)
    cos = (ref * got).sum(axis=1)
    full = np.asarray([embedders["fp32"].count_tokens(c) >= full_at for c in chunks])

    def stats(c: Any) -> dict[str, Any]:
        return {
            "chunks": len(c),
            "min": round(float(c.min()), 4),
            "p1": round(float(np.percentile(c, 1)), 4),
            "p5": round(float(np.percentile(c, 5)), 4),
            "mean": round(float(c.mean()), 4),
            "below_0.98": int((c < 0.98).sum()),
        }

    return {"all": stats(cos), "full": stats(cos[full]) if full.any() else None}


def recall(
    dataset_dir: Path, embedders: dict[str, Embedder], data_dir: Path, threads: int
) -> dict[str, Any]:
    """recall@10 (hybrid, as ``enclave eval --no-answers``; and dense alone) per variant."""
    from eval.dataset import load_dataset
    from eval.index import build_index
    from eval.retrieval_metrics import dedupe_ranking, score_retrieval
    from eval.runner import chunk_depth, retrieve_local

    dataset = load_dataset(dataset_dir)
    out: dict[str, Any] = {"dataset": str(dataset_dir)}
    for name, emb in embedders.items():
        settings = load_settings(overrides={"data_dir": str(data_dir / name)})
        t0 = time.perf_counter()
        index = build_index(dataset, settings, emb, progress=False)
        built_s = time.perf_counter() - t0
        scored = [q for q in dataset.queries if q.id in dataset.qrels]
        hybrid = retrieve_local(
            scored, index.store, emb, index.settings, index.mapper, depth=10, threads=threads
        )
        vecs = emb.embed([q.text for q in scored])
        exact = index.store.exact_index()
        dense: dict[str, list[str]] = {}
        for q, hits in zip(scored, exact.search(vecs, chunk_depth(settings, 10)), strict=True):
            dense[q.id] = dedupe_ranking([index.mapper(h.source) for h in hits])[:10]
        h_scores = score_retrieval(hybrid.run, dataset.qrels, depth=10)
        d_scores = score_retrieval(dense, dataset.qrels, depth=10)
        out[name] = {
            "embedder": emb.name,
            "queries": len(scored),
            "chunks": index.store.count_chunks(),
            "index_reused": index.reused,
            "index_seconds": round(built_s, 1),
            "hybrid_recall@10": round(h_scores.mean_recall(10), 4),
            "dense_recall@10": round(d_scores.mean_recall(10), 4),
        }
    for kind in ("hybrid_recall@10", "dense_recall@10"):
        out[f"{kind}_delta"] = round(out["int8"][kind] - out["fp32"][kind], 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus", type=Path, help="folder of documents to cut into chunks")
    ap.add_argument("--speed-chunks", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cosine-chunks", type=int, default=3000)
    ap.add_argument("--dataset", type=Path, action="append", default=[])
    ap.add_argument("--data-dir", type=Path, default=Path("enclave-data/bench-embedder"))
    ap.add_argument("--threads", type=int, default=0, help="embedder threads; 0 = all cores")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    base = load_settings().embedder  # enclave.toml and ENCLAVE_EMBEDDER__* apply (cache_dir)
    t0 = time.perf_counter()
    fp32 = load_embedder(base.model_copy(update={"variant": "fp32", "threads": args.threads}))
    fp32_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    int8 = load_embedder(base.model_copy(update={"variant": "int8", "threads": args.threads}))
    int8_load = time.perf_counter() - t0
    embedders: dict[str, Embedder] = {"fp32": fp32, "int8": int8}
    report: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d"),
        "cpu_count": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "embedders": {k: e.name for k, e in embedders.items()},
        "load_seconds": {"fp32": round(fp32_load, 2), "int8": round(int8_load, 2)},
    }
    need = max(args.cosine_chunks, 0 if args.skip_speed else args.speed_chunks * 4)
    chunks = make_chunks(args.corpus, fp32, need)
    tokens = {c: fp32.count_tokens(c) for c in chunks}
    report["chunk_tokens_mean"] = (
        round(float(np.mean(list(tokens.values()))), 1) if tokens else None
    )
    # full chunks: at least 90% of ingest.chunk_tokens
    full_at = int(0.9 * load_settings().ingest.chunk_tokens)
    if not args.skip_speed:
        # full chunks, and chunks as ingestion embeds them: every length, sorted by length as
        # the pipeline sorts them before batching
        full = [c for c in chunks if tokens[c] >= full_at][: args.speed_chunks]
        mixed = sorted(chunks[: args.speed_chunks], key=len)
        report["speed"] = {
            "full": speed(embedders, full, args.rounds),
            "as_ingested": speed(embedders, mixed, args.rounds),
        }
        report["speed"]["full"]["tokens_mean"] = round(float(np.mean([tokens[c] for c in full])), 1)
        report["speed"]["as_ingested"]["tokens_mean"] = round(
            float(np.mean([tokens[c] for c in mixed])), 1
        )
    if args.cosine_chunks:
        report["cosine"] = cosine(embedders, chunks[: args.cosine_chunks], full_at)
    report["recall"] = [
        recall(d, embedders, args.data_dir, threads=max(1, args.threads or 2)) for d in args.dataset
    ]
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    if args.json:
        print(json.dumps(report, indent=2))
        return
    _print(report)


def _print(r: dict[str, Any]) -> None:
    print(f"embedders: {r['embedders']['fp32']} (fp32) / {r['embedders']['int8']} (int8)")
    print(f"load: fp32 {r['load_seconds']['fp32']} s, int8 {r['load_seconds']['int8']} s")
    print(f"chunks: {r['chunk_tokens_mean']} tokens on average")
    for kind, label in (("full", "full chunks"), ("as_ingested", "chunks as ingested")):
        if kind not in r.get("speed", {}):
            continue
        s = r["speed"][kind]
        med = s["median_chunks_per_s"]
        verdict = "meets" if s["median_ratio"] >= SPEED_TARGET else "MISSES"
        print(
            f"speed, {s['chunks']} {label} ({s['tokens_mean']} tokens) x {s['rounds']} "
            f"interleaved rounds: fp32 {med['fp32']} chunks/s, int8 {med['int8']} chunks/s; "
            f"int8/fp32 {s['median_ratio']}x (rounds {s['ratios']}) | target >= {SPEED_TARGET}x: "
            f"{verdict}"
        )
        print(f"  1-min load average per round: {s['load_average_1m']}")
    for kind, label in (("full", "full chunks"), ("all", "chunks as ingested")):
        c = r.get("cosine", {}).get(kind)
        if c:
            print(
                f"cosine int8 vs fp32, {c['chunks']} {label}: min {c['min']}, p1 {c['p1']}, "
                f"p5 {c['p5']}, mean {c['mean']}, {c['below_0.98']} below 0.98 | anchor: "
                "min >= 0.988 on 200-token chunks"
            )
    for rec in r["recall"]:
        print(f"recall@10 on {rec['dataset']}:")
        for kind in ("hybrid_recall@10", "dense_recall@10"):
            delta = rec[f"{kind}_delta"]
            verdict = "meets" if delta >= -RECALL_TOLERANCE else "MISSES"
            print(
                f"  {kind.split('_')[0]}: fp32 {rec['fp32'][kind]}, int8 {rec['int8'][kind]}, "
                f"delta {delta:+.4f} | target: int8 within {RECALL_TOLERANCE} of fp32: {verdict}"
            )
        for v in ("fp32", "int8"):
            e = rec[v]
            how = "reused" if e["index_reused"] else f"built in {e['index_seconds']} s"
            print(f"  {v} index: {e['chunks']} chunks, {e['queries']} queries, {how}")
    print(f"load average at start / end: {r['load_average_at_start']} / {r['load_average_at_end']}")


if __name__ == "__main__":
    main()
