"""Ray engine benchmark: the local engine and ``--engine ray`` over the same files.

    .venv/bin/python benchmarks/ray_bench.py [--corpus FOLDER] [--files 100]
        [--embedder hash|bundled] [--cpus 2] [--json]

Both engines ingest the first ``--files`` files of ``--corpus`` into fresh indexes (the
embedder loaded once beforehand, outside the timings); the Ray engine runs on a local cluster
of ``--cpus`` CPUs started before its run (the cluster's start is reported apart). Per run:
wall seconds, documents and chunks per second, and for Ray the seconds inside the cluster
(``cluster_s``: parse, chunk and embed in the Ray stages) and the chunks per second per
embedding worker (``cpus - max(1, cpus // 3)`` embedding actors beside the parse actors).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from enclave.offline import enforce_offline  # noqa: E402

enforce_offline()

from enclave.settings import EmbedderSettings, Settings  # noqa: E402
from ingest.pipeline import ingest_paths  # noqa: E402
from models.embedder import HashEmbedder  # noqa: E402
from models.loading import load_embedder  # noqa: E402

DEFAULT_CORPUS = Path("/work/shared/corpora/postgres-manual-html")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--embedder", choices=("hash", "bundled"), default="hash")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    files = sorted(p for p in args.corpus.iterdir() if p.is_file())[: args.files]
    model = "hash" if args.embedder == "hash" else "bundled"
    emb: Any = HashEmbedder() if model == "hash" else load_embedder(EmbedderSettings())
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "docs"
        docs.mkdir()
        for f in files:
            shutil.copy(f, docs / f.name)
        for engine in ("local", "ray"):
            extra: dict[str, Any] = {}
            if engine == "ray":
                import ray

                os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
                t = time.perf_counter()
                ray.init(
                    num_cpus=args.cpus,
                    include_dashboard=False,
                    log_to_driver=False,
                    runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
                )
                extra["cluster_start_s"] = round(time.perf_counter() - t, 1)
            settings = Settings(
                data_dir=Path(tmp) / engine,
                embedder={"model": model},
                ingest={"workers": args.cpus},
            )
            t = time.perf_counter()
            summary = ingest_paths(settings, [docs], embedder=emb, engine=engine)
            wall = time.perf_counter() - t
            row = {
                "engine": engine,
                "embedder": args.embedder,
                "files": len(files),
                "chunks": summary.chunks_added,
                "wall_s": round(wall, 1),
                "docs_per_s": round(len(files) / wall, 2),
                "chunks_per_s": round(summary.chunks_added / wall, 1),
                **extra,
            }
            if engine == "ray":
                cluster = summary.stages.get("cluster_s", 0.0)
                workers = max(1, args.cpus - max(1, args.cpus // 3))
                row["cluster_s"] = round(cluster, 1)
                row["embed_workers"] = workers
                row["chunks_per_s_per_embed_worker"] = round(
                    summary.chunks_added / cluster / workers, 1
                )
                import ray

                ray.shutdown()
            results.append(row)
            print(json.dumps(row), file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for row in results:
        print(row)


if __name__ == "__main__":
    main()
