"""Vector index benchmark: search latency and recall with the ANN index, the ACL prefilter,
hybrid retrieval, the build's time and memory, and a server's memory.

    .venv/bin/python benchmarks/ann_bench.py [--chunks 100000] [--queries 200] [--dir DIR]
        [--kind ivf_hnsw_sq|ivf_pq] [--ef 200] [--nprobes 20] [--refine N]
        [--vectors spectrum|uniform] [--row-cache-mb 1536] [--no-row-cache-text] [--no-flat]
        [--serve-again] [--json]

An index of ``--chunks`` chunks (384-dimension random unit vectors, ~80-word texts drawn
from a Zipf vocabulary, 10 chunks per document, 1% of the documents readable by the group
``rare``, every one by ``all``) is written straight through the store, with its full-text and
scalar indexes, and adopted as the live release. Then:

* before the build, the live release is searched by LanceDB's flat scan (``--no-flat`` skips
  it: 1.5 s a query at a million chunks);
* ``enclave index optimize`` builds the vector index in its own process (wall time and peak
  RSS reported) and publishes it as a release, promoted;
* vectors: ``--vectors spectrum`` (default) draws each axis with a spread decaying as 1/i,
  like the variance of text embeddings, so that nearest neighbours mean something;
  ``uniform`` draws iid unit vectors, where every point is nearly equidistant from every
  other: no ANN index reaches a high recall on them cheaply (the worst case, for timing);
* a server-like process (``LiveIndex`` + ``Retriever``, a stub embedder returning the
  query's vector) measures: vector search p50/p95 (k = 10) and recall@10 against an exact
  numpy ranking; hybrid retrieval (vector + full-text + RRF, rag/retrieval.py) p50; the same
  for a key of group ``rare`` (1% of the chunks), with how many queries got their full
  top_k; and its peak RSS. Its row cache (``vector_index.row_cache_mb``; 0: off) is loaded
  before the timings, as a server loads it when it starts serving a release: its size and
  load time are reported. ``--serve-again --row-cache-mb 0`` and ``--serve-again`` on the
  same ``--dir`` compare searches without and with it; ``--no-row-cache-text`` keeps it but
reads the text with each search (``vector_index.row_cache_text = false``).

Targets: 1M vector p50 <= 4 ms at recall@10 >= 0.96; hybrid p50 <= 25 ms; 100k vector p50
<= 3 ms; 1% group top_k full, p50 <= 25 ms; server RSS <= 4 GiB at 1M.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from enclave.offline import enforce_offline  # noqa: E402

enforce_offline()

DIM = 384
PER_DOC = 10
WORDS_PER_CHUNK = 80
VOCAB = [
    f"{a}{b}" for a in ("lor", "ips", "dol", "sit", "ame", "con", "adi", "eli") for b in range(2500)
]
RARE_EVERY = 100  # one document in 100 is readable by the group "rare"


#: the spread of the vectors along each of the 384 axes: ``"spectrum"`` (the default) decays
#: as 1/i, as the variance of text embeddings does, so neighbours are meaningful;
#: ``"uniform"`` (iid unit vectors) has no neighbour structure at all and is the worst case
#: of any ANN index (every point nearly equidistant)
SPREAD = {"spectrum": (np.arange(1, DIM + 1) ** -1.0).astype(np.float32), "uniform": None}
VECTORS = "spectrum"


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    spread = SPREAD[VECTORS]
    if spread is not None:
        v *= spread
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def write_index(root: Path, chunks: int) -> tuple[np.ndarray, list[str], list[str]]:
    """The index and its release r-000001 (no vector index yet); returns every vector and
    the text of each chunk's first words (the queries' source) and every chunk id."""
    import pyarrow as pa

    from store.db import Store
    from store.records import doc_id_for_path
    from store.releases import Releases
    from store.schema import chunks_schema, documents_schema

    rng = np.random.default_rng(0)
    store = Store(root / "lancedb")
    store.bind_embedder("random-384", DIM)
    weights = 1.0 / np.arange(1, len(VOCAB) + 1) ** 1.07
    weights /= weights.sum()
    vocab = np.asarray(VOCAB)
    all_vectors = np.zeros((chunks, DIM), dtype=np.float32)
    heads: list[str] = []
    all_ids: list[str] = []
    batch_docs = 5000
    n_docs = chunks // PER_DOC
    chunk_table = store.chunks_table(create=True)
    docs_table = store.documents_table()
    for start in range(0, n_docs, batch_docs):
        ids = range(start, min(n_docs, start + batch_docs))
        n = len(ids) * PER_DOC
        vectors = _unit(rng, n)
        all_vectors[start * PER_DOC : start * PER_DOC + n] = vectors
        words = vocab[rng.choice(len(VOCAB), size=(n, WORDS_PER_CHUNK), p=weights)]
        texts = [" ".join(row) for row in words]
        heads.extend(" ".join(row[:6]) for row in words)
        paths = [f"/bench/d{i % 50:02d}/doc{i:07d}.txt" for i in ids]
        doc_ids = [doc_id_for_path(p) for p in paths]
        groups = [["all", "rare"] if i % RARE_EVERY == 0 else ["all"] for i in ids]
        rows = {
            "chunk_id": [f"{d}-{k:05d}" for d in doc_ids for k in range(PER_DOC)],
            "doc_id": [d for d in doc_ids for _ in range(PER_DOC)],
            "ordinal": [k for _ in doc_ids for k in range(PER_DOC)],
            "text": texts,
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIM),
            "source": [p for p in paths for _ in range(PER_DOC)],
            "title": [p.rsplit("/", 1)[-1] for p in paths for _ in range(PER_DOC)],
            "page": [None] * n,
            "heading_path": [[] for _ in range(n)],
            "char_start": [0] * n,
            "char_end": [len(t) for t in texts],
            "tokens": [WORDS_PER_CHUNK] * n,
            "groups": [g for g in groups for _ in range(PER_DOC)],
            "flags": [[] for _ in range(n)],
        }
        chunk_table.add(pa.table(rows, schema=chunks_schema(DIM)))
        all_ids.extend(rows["chunk_id"])
        docs = {
            "doc_id": doc_ids,
            "path": paths,
            "title": [p.rsplit("/", 1)[-1] for p in paths],
            "sha256": [f"{i:064x}" for i in ids],
            "size": [1000] * len(ids),
            "mtime": [0.0] * len(ids),
            "parser": ["text"] * len(ids),
            "status": ["ok"] * len(ids),
            "error": [""] * len(ids),
            "chunk_count": [PER_DOC] * len(ids),
            "ingested_at": [""] * len(ids),
            "embedder": ["random-384"] * len(ids),
            "groups": groups,
            "quality": [None] * len(ids),
        }
        docs_table.add(pa.table(docs, schema=documents_schema()))
    store.compact()  # full-text and scalar indexes (the vector index is left to optimize)
    Releases(store).adopt()
    return all_vectors, heads, all_ids


def serve(args: argparse.Namespace) -> dict[str, Any]:
    """The server-like measurements (its own process, so that its RSS is its own)."""
    from enclave.settings import Settings
    from rag.retrieval import Retriever
    from store.ann import AnnTuning
    from store.live import LiveIndex
    from store.records import SearchFilters

    spec = json.loads(Path(args.serve).read_text())
    queries = np.load(spec["vectors"])
    texts: list[str] = spec["texts"]
    truth: list[list[str]] = spec["truth"]
    settings = Settings(
        data_dir=Path(spec["data_dir"]),
        vector_index={
            "kind": args.kind,
            "ef": args.ef,
            "nprobes": args.nprobes,
            "refine_factor": args.refine,
            "row_cache_mb": args.row_cache_mb,
            "row_cache_text": not args.no_row_cache_text,
        },
    )
    live = LiveIndex(settings.index, tuning=AnnTuning.from_settings(settings.vector_index))
    reader = live.reader()
    by_text = {t: queries[i] for i, t in enumerate(texts)}

    class Stub:
        dimension = DIM

        def embed_query(self, text: str) -> np.ndarray:
            return by_text[text]

        def embed(self, batch: list[str]) -> np.ndarray:
            return np.stack([by_text[t] for t in batch])

    retriever = Retriever(settings, live, Stub())  # type: ignore[arg-type]
    rare = SearchFilters(groups=["rare"])
    searcher = reader.vector_searcher()
    assert searcher is not None
    out: dict[str, Any] = {"release": reader.release_id, "path": searcher.path}
    started = time.perf_counter()
    cache = searcher.load_row_cache()  # the server loads it when it starts serving the release
    out["row_cache_load_s"] = round(time.perf_counter() - started, 2)
    out["row_cache_mib"] = round(cache.nbytes / 2**20, 1) if cache is not None else 0
    out["row_cache_text_mib"] = round(cache.text_bytes / 2**20, 1) if cache is not None else 0

    def timed(fn: Any) -> tuple[list[float], list[Any]]:
        for i in range(min(5, len(texts))):
            fn(i)  # warm-up: the first queries load index pages
        times, results = [], []
        for i in range(len(texts)):
            t = time.perf_counter()
            results.append(fn(i))
            times.append((time.perf_counter() - t) * 1000)
        return times, results

    vt, vres = timed(lambda i: reader.vector_search(queries[i], 10))
    recall = statistics.mean(
        len({c.chunk_id for c in r} & set(truth[i])) / 10 for i, r in enumerate(vres)
    )
    out["vector_ms"] = _stats(vt)
    out["recall_at_10"] = round(recall, 4)
    ht, _ = timed(lambda i: retriever.retrieve(texts[i]))
    out["hybrid_ms"] = _stats(ht)
    gt, gres = timed(lambda i: reader.vector_search(queries[i], 10, rare))
    out["group_vector_ms"] = _stats(gt)
    out["group_full_topk"] = sum(len(r) == 10 for r in gres) / len(gres)
    out["group_only_rare"] = all("rare" in _groups(reader, r) for r in gres[:5])
    ght, ghres = timed(lambda i: retriever.retrieve(texts[i], filters=rare))
    out["group_hybrid_ms"] = _stats(ght)
    out["group_hybrid_full_topk"] = sum(len(r.hits) == 5 for r in ghres) / len(ghres)
    out["rss_gib"] = round(_peak_rss_kib() / 2**20, 2)
    # the machine's pace during this run: one exact scan of 100k vectors (7 ms when idle)
    ref = np.random.default_rng(2).standard_normal((100_000, DIM)).astype(np.float32)
    rt, _ = timed(lambda i: ref @ queries[i])
    out["numpy_100k_ms"] = _stats(rt)
    return out


def _peak_rss_kib() -> int:
    """This process's peak RSS (VmHWM: ru_maxrss would include the parent's at the fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _groups(reader: Any, found: list[Any]) -> set[str]:
    """The groups every hit's document shares."""
    docs = reader.documents_by_id(c.doc_id for c in found)
    common: set[str] | None = None
    for doc in docs.values():
        common = set(doc.groups) if common is None else common & set(doc.groups)
    return common or set()


def _stats(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {
        "p50": round(statistics.median(ms), 2),
        "p95": round(ms[int(0.95 * (len(ms) - 1))], 2),
    }


def flat_baseline(data_dir: Path, queries: np.ndarray, n: int) -> dict[str, float]:
    from store.live import LiveIndex

    reader = LiveIndex(data_dir / "lancedb").reader()
    times = []
    for q in queries[:n]:
        t = time.perf_counter()
        reader.vector_search(q, 10)
        times.append((time.perf_counter() - t) * 1000)
    return _stats(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--kind", default="ivf_hnsw_sq")
    parser.add_argument("--ef", type=int, default=100)
    parser.add_argument("--nprobes", type=int, default=20)
    parser.add_argument("--refine", type=int, default=None, help="vector_index.refine_factor")
    parser.add_argument(
        "--row-cache-mb", type=int, default=1536, help="vector_index.row_cache_mb (0: off)"
    )
    parser.add_argument(
        "--no-row-cache-text",
        action="store_true",
        help="vector_index.row_cache_text = false (the text read with each search)",
    )
    parser.add_argument("--vectors", choices=sorted(SPREAD), default="spectrum")
    parser.add_argument("--no-flat", action="store_true")
    parser.add_argument(
        "--serve-again", action="store_true", help="only the server measurements, on --dir"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    global VECTORS
    VECTORS = args.vectors
    if args.serve_again:
        args.serve = str(args.dir / "serve.json")
    if args.serve:
        print(json.dumps(serve(args)))
        return

    root = args.dir or Path(tempfile.mkdtemp(prefix="ann-bench-"))
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    report: dict[str, Any] = {
        "vectors": args.vectors,
        "chunks": args.chunks,
        "kind": args.kind,
        "ef": args.ef,
        "nprobes": args.nprobes,
        "refine_factor": args.refine,
    }
    t = time.perf_counter()
    vectors, heads, chunk_ids = write_index(root, args.chunks)
    report["write_s"] = round(time.perf_counter() - t, 1)
    rng = np.random.default_rng(1)
    picks = rng.choice(args.chunks, size=args.queries, replace=False)
    # queries: new vectors from the same distribution, with a chunk's first words
    queries = _unit(rng, args.queries)
    texts = [f"{heads[p]} q{i}" for i, p in enumerate(picks)]
    top = np.zeros((args.queries, 10), dtype=np.int64)
    for start in range(0, args.queries, 25):  # exact top 10, 25 queries at a time
        sims = queries[start : start + 25] @ vectors.T
        part = np.argpartition(-sims, 10, axis=1)[:, :10]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1)
        top[start : start + 25] = np.take_along_axis(part, order, axis=1)
    truth = [[chunk_ids[j] for j in row] for row in top]
    del sims, vectors
    if not args.no_flat:
        report["flat_before_build_ms"] = flat_baseline(root, queries, 30)

    env = dict(
        os.environ,
        PYTHONPATH=str(ROOT),
        ENCLAVE_VECTOR_INDEX__KIND=args.kind,
        ENCLAVE_VECTOR_INDEX__ANN_MIN_ROWS="1000",
    )
    t = time.perf_counter()
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "enclave.cli",
            "index",
            "optimize",
            "--data-dir",
            str(root),
            "--json",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    report["build_wall_s"] = round(time.perf_counter() - t, 1)
    report["build"] = json.loads(built.stdout.strip().splitlines()[-1])
    # an upper bound: ru_maxrss of a child starts from this process's RSS at the fork
    report["build_peak_rss_gib_at_most"] = round(
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2
    )
    spec = root / "serve.json"
    np.save(root / "queries.npy", queries)
    spec.write_text(
        json.dumps(
            {
                "vectors": str(root / "queries.npy"),
                "texts": texts,
                "truth": truth,
                "data_dir": str(root),
            }
        )
    )
    served = subprocess.run(
        [
            sys.executable,
            __file__,
            "--serve",
            str(spec),
            "--kind",
            args.kind,
            "--ef",
            str(args.ef),
            "--nprobes",
            str(args.nprobes),
            *(["--refine", str(args.refine)] if args.refine else []),
            "--row-cache-mb",
            str(args.row_cache_mb),
            *(["--no-row-cache-text"] if args.no_row_cache_text else []),
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    report["serve"] = json.loads(served.stdout.strip().splitlines()[-1])
    report["index_gib_on_disk"] = round(
        sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2**30, 2
    )
    if args.json:
        print(json.dumps(report))
        return
    print(json.dumps(report, indent=2))
    s = report["serve"]
    big = args.chunks >= 1_000_000
    rows = [
        ("vector p50 (ms)", s["vector_ms"]["p50"], "<= 4" if big else "<= 3 (100k)"),
        ("recall@10", s["recall_at_10"], ">= 0.96"),
        ("hybrid p50 (ms)", s["hybrid_ms"]["p50"], "<= 25"),
        ("1% group vector p50 (ms)", s["group_vector_ms"]["p50"], "<= 25"),
        ("1% group hybrid p50 (ms)", s["group_hybrid_ms"]["p50"], "<= 25"),
        ("1% group top_k full (share)", s["group_full_topk"], "1.0"),
        ("server peak RSS (GiB)", s["rss_gib"], "<= 4 at 1M"),
        ("row cache (MiB)", s["row_cache_mib"], "<= row_cache_mb"),
        ("row cache load (s)", s["row_cache_load_s"], "reported"),
        ("row cache text file (MiB, disk)", s["row_cache_text_mib"], "reported"),
        ("pace: numpy 100k scan p50 (ms)", s["numpy_100k_ms"]["p50"], "7 when idle"),
        ("index build (s)", round(report["build"].get("build_s", 0), 1), "reported"),
        ("build process peak RSS <= (GiB)", report["build_peak_rss_gib_at_most"], "reported"),
    ]
    print(f"\n{'figure':32} {'measured':>10}  target")
    for name, value, target in rows:
        print(f"{name:32} {value!s:>10}  {target}")
    if args.dir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
