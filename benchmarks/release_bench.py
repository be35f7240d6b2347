"""Release benchmark: promote and rollback latency at scale, the release bookkeeping's share of
an ingest run, and the disk an index takes after many small releases.

    .venv/bin/python benchmarks/release_bench.py [--chunks 100000] [--corpus FOLDER]
        [--files 400] [--embedder hash|bundled] [--rounds 20] [--share 0.05] [--keep 5]
        [--only latency,bookkeeping,disk] [--json]

* latency: an index of ``--chunks`` chunks (384-dimension random unit vectors, ~120-word
  texts, 10 per document) written straight through the store with its full-text index; a
  second release changing 5% of the documents; then ``Releases.promote`` and
  ``Releases.rollback`` five times each (the pointer switch, the tags and retention), and
  how long a server's LiveIndex takes to serve the new release (it looks every 0.5 s);
* bookkeeping: ``ingest_paths`` over the first ``--files`` files of ``--corpus`` (a fresh
  index), then again after 5% of the files changed; the share of each run's time spent in
  release bookkeeping (``stages.release_s``: preparing the head, recording the candidate,
  tags, rails, promotion, retention) and in the prune that removes dropped versions
  (``stages.prune_s``);
* disk: the same corpus, ``--rounds`` runs each changing ``--share`` of the files (one
  sentence appended), promoted at once with ``release.keep = --keep``; the index's size
  after each run against its size after the first, with the hash embedder at 384
  dimensions (the bundled model's width) unless ``--embedder bundled``.

Targets: promote and rollback < 1 s at 100k chunks; bookkeeping < 5% of a run; disk after
20 runs of 5% <= 2x one release.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
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

from enclave.settings import Settings  # noqa: E402
from models.embedder import Embedder, HashEmbedder  # noqa: E402
from store.db import Store  # noqa: E402
from store.live import LiveIndex  # noqa: E402
from store.records import ChunkRecord, DocumentRecord, doc_id_for_path  # noqa: E402
from store.releases import Releases  # noqa: E402

DEFAULT_CORPUS = Path("/work/shared/corpora/postgres-manual-html")
WORDS = [
    f"{a}{b}" for a in ("lor", "ips", "dol", "sit", "ame", "con", "adi", "eli") for b in range(600)
]
PER_DOC = 10
DIM = 384


# ------------------------------------------------------------------------------ latency
def _documents(ids: range | list[int], generation: int, rng: np.random.Generator,
               words: random.Random) -> tuple[list[DocumentRecord], list[ChunkRecord]]:  # fmt: skip
    docs, chunks = [], []
    for i in ids:
        path = f"/bench/doc{i:06d}.txt"
        doc_id = doc_id_for_path(path)
        vectors = rng.standard_normal((PER_DOC, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        docs.append(DocumentRecord(doc_id, path, sha256=f"{i}-{generation}", chunk_count=PER_DOC))
        for k in range(PER_DOC):
            text = " ".join(words.choice(WORDS) for _ in range(120))
            chunks.append(ChunkRecord(f"{doc_id}-{k:05d}", doc_id, k, text, vectors[k], path))
    return docs, chunks


def _write(store: Store, releases: Releases, ids: range | list[int], generation: int,
           rng: np.random.Generator, words: random.Random) -> Any:  # fmt: skip
    prepared = releases.prepare_head()
    releases.begin_writes()
    ids = list(ids)
    for start in range(0, len(ids), 500):
        docs, chunks = _documents(ids[start : start + 500], generation, rng, words)
        store.replace_documents(docs, chunks)
    store.compact()
    return releases.record_candidate(prepared.parent, {})


def bench_latency(root: Path, chunks: int, keep: int) -> dict[str, Any]:
    rng, words = np.random.default_rng(0), random.Random(0)
    store = Store(root / "lancedb")
    store.bind_embedder("random-384", DIM)
    releases = Releases(store)
    n_docs = chunks // PER_DOC
    t0 = time.perf_counter()
    first = _write(store, releases, range(n_docs), 0, rng, words)
    build_s = time.perf_counter() - t0
    releases.promote(first, by="bench", keep=keep)
    changed = random.Random(1).sample(range(n_docs), n_docs // 20)
    second = _write(store, releases, changed, 1, rng, words)
    live = LiveIndex(store.path)
    promote, rollback, served = [], [], []
    for _ in range(5):
        t = time.perf_counter()
        releases.promote(releases.registry.get(second.id), by="bench", keep=keep)
        promote.append(time.perf_counter() - t)
        served.append(_until_served(live, second.id, t))
        t = time.perf_counter()
        releases.rollback(by="bench", keep=keep)
        rollback.append(time.perf_counter() - t)
        served.append(_until_served(live, first.id, t))
    return {
        "chunks": store.count_chunks(),
        "build_s": round(build_s, 1),
        "promote_s": {"median": _r(statistics.median(promote)), "max": _r(max(promote))},
        "rollback_s": {"median": _r(statistics.median(rollback)), "max": _r(max(rollback))},
        "served_after_s": {"median": _r(statistics.median(served)), "max": _r(max(served))},
        "index_mb": round(store.size_bytes() / 1e6, 1),
    }


def _until_served(live: LiveIndex, release: str, since: float) -> float:
    while live.reader().release_id != release:
        time.sleep(0.01)
    return time.perf_counter() - since


def _r(x: float) -> float:
    return round(x, 4)


# ------------------------------------------------------------------ ingest-level figures
def _slice(corpus: Path, files: int, into: Path) -> list[Path]:
    """Copies of the first ``files`` files of ``corpus`` (sorted), which the runs change."""
    into.mkdir(parents=True, exist_ok=True)
    picked = sorted(p for p in corpus.rglob("*") if p.is_file())[:files]
    out = []
    for p in picked:
        dest = into / p.relative_to(corpus)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(p, dest)
        out.append(dest)
    return out


def _change(paths: list[Path], share: float, round_: int) -> None:
    rng = random.Random(round_)
    for path in rng.sample(paths, max(1, int(len(paths) * share))):
        text = path.read_text("utf-8", errors="replace")
        marker = f"<p>Revision {round_}: release benchmark note {rng.random():.6f}.</p>"
        if "</body>" in text:
            text = text.replace("</body>", marker + "</body>", 1)
        else:
            text += "\n" + marker + "\n"
        path.write_text(text, "utf-8")


def _embedder(kind: str) -> Embedder:
    if kind == "bundled":
        from enclave.settings import EmbedderSettings
        from models.loading import load_embedder

        return load_embedder(EmbedderSettings())
    return HashEmbedder(dimension=DIM)


def bench_bookkeeping(root: Path, corpus: Path, files: int, embedder: Embedder) -> dict[str, Any]:
    from ingest.pipeline import ingest_paths

    paths = _slice(corpus, files, root / "docs")
    settings = Settings(data_dir=root / "data")
    runs = {}
    for label in ("first", "5% changed"):
        if label != "first":
            _change(paths, 0.05, 1)
        summary = ingest_paths(settings, [root / "docs"], embedder=embedder).to_dict()
        stages = summary["stages"]
        release_s = float(stages.get("release_s", 0.0))
        prune_s = float(stages.get("prune_s", 0.0))
        runs[label] = {
            "seconds": summary["seconds"],
            "chunks_added": summary["chunks_added"],
            "release_s": round(release_s, 3),
            "prune_s": round(prune_s, 3),
            "share": round(release_s / summary["seconds"], 4),
            "share_with_prune": round((release_s + prune_s) / summary["seconds"], 4),
            "release": summary["release"]["id"],
        }
    return {"files": len(paths), "embedder": embedder.name, "runs": runs}


def bench_disk(root: Path, corpus: Path, files: int, embedder: Embedder, rounds: int,
               share: float, keep: int) -> dict[str, Any]:  # fmt: skip
    from ingest.pipeline import ingest_paths

    paths = _slice(corpus, files, root / "docs")
    settings = Settings(data_dir=root / "data", release={"keep": keep})
    ingest_paths(settings, [root / "docs"], embedder=embedder)
    store = Store(settings.lance_dir)
    one = store.size_bytes()
    sizes = []
    for round_ in range(1, rounds + 1):
        _change(paths, share, round_)
        summary = ingest_paths(settings, [root / "docs"], embedder=embedder)
        assert summary.release.get("promoted"), summary.release
        sizes.append(store.size_bytes())
    return {
        "files": len(paths),
        "chunks": store.count_chunks(),
        "embedder": embedder.name,
        "keep": keep,
        "one_release_mb": round(one / 1e6, 2),
        "after_mb": round(sizes[-1] / 1e6, 2),
        "ratio_after": round(sizes[-1] / one, 3),
        "ratio_peak": round(max(sizes) / one, 3),
        "ratios": [round(s / one, 2) for s in sizes],
    }


# --------------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--files", type=int, default=400)
    ap.add_argument("--embedder", choices=("hash", "bundled"), default="hash")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--share", type=float, default=0.05)
    ap.add_argument("--keep", type=int, default=5)
    ap.add_argument("--only", default="latency,bookkeeping,disk")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    parts = set(args.only.split(","))
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="release-bench-") as tmp:
        root = Path(tmp)
        if "latency" in parts:
            out["latency"] = bench_latency(root / "latency", args.chunks, args.keep)
        embedder = _embedder(args.embedder) if parts & {"bookkeeping", "disk"} else None
        if "bookkeeping" in parts and embedder is not None:
            out["bookkeeping"] = bench_bookkeeping(root / "bk", args.corpus, args.files, embedder)
        if "disk" in parts and embedder is not None:
            out["disk"] = bench_disk(root / "disk", args.corpus, args.files, embedder,
                                     args.rounds, args.share, args.keep)  # fmt: skip
    if args.json:
        print(json.dumps(out))
        return
    report(out, args)


def report(out: dict[str, Any], args: argparse.Namespace) -> None:
    lines = []
    if "latency" in out:
        lat = out["latency"]
        lines += [
            f"latency ({lat['chunks']:,} chunks, index {lat['index_mb']} MB, built in "
            f"{lat['build_s']} s):",
            f"  promote   median {lat['promote_s']['median']:.4f} s, max "
            f"{lat['promote_s']['max']:.4f} s   (target < 1 s)",
            f"  rollback  median {lat['rollback_s']['median']:.4f} s, max "
            f"{lat['rollback_s']['max']:.4f} s   (target < 1 s)",
            f"  a server serves it after: median {lat['served_after_s']['median']:.3f} s, max "
            f"{lat['served_after_s']['max']:.3f} s   (target < 2 s)",
        ]
    if "bookkeeping" in out:
        bk = out["bookkeeping"]
        lines.append(f"bookkeeping ({bk['files']} files, embedder {bk['embedder']}):")
        for label, run in bk["runs"].items():
            lines.append(
                f"  {label:11} run {run['seconds']:.1f} s, {run['chunks_added']} chunks; "
                f"release bookkeeping {run['release_s']:.3f} s = {run['share']:.2%} "
                f"(with the prune {run['share_with_prune']:.2%})   (target < 5%)"
            )
    if "disk" in out:
        d = out["disk"]
        lines += [
            f"disk ({d['files']} files, {d['chunks']} chunks, embedder {d['embedder']}, "
            f"{args.rounds} runs x {args.share:.0%} changed, keep {d['keep']}):",
            f"  one release {d['one_release_mb']} MB; after {args.rounds} runs "
            f"{d['after_mb']} MB = {d['ratio_after']:.2f}x (peak {d['ratio_peak']:.2f}x)"
            "   (target <= 2x)",
            f"  per run: {' '.join(str(r) for r in d['ratios'])}",
        ]
    print("\n".join(lines))


if __name__ == "__main__":
    main()
