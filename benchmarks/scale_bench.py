"""Scale-out benchmark: the index on S3 against the same index on local disk.

    .venv/bin/python benchmarks/scale_bench.py [--corpus FOLDER] [--files 200] [--json]

A local S3-compatible server (moto's standalone server, on 127.0.0.1, in this process) holds
the ``s3://`` index. For each location (local folder, then S3):

* ingest: ``ingest_paths`` over the first ``--files`` files of ``--corpus`` into a fresh
  index with the hash embedder (384 dims): what the object store adds to writing (parsing is
  the same on both), seconds and documents per second;
* promote: five promote / rollback pairs between two releases (the pointer write, tags,
  retention), median seconds;
* follow: two LiveIndex readers (two servers) over the index; after each promote, the seconds
  until both serve the new release (they look every 0.5 s), median and max of 5;
* search: 50 vector searches on a LiveIndex's view, median milliseconds.

moto keeps objects in memory and answers from Python on the same 2 cores, so its figures are
those of a fast, local store; a real S3 bucket adds its request latency (tens of ms) to each
uncached read.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from enclave.offline import enforce_offline  # noqa: E402

enforce_offline()

from enclave.settings import Settings  # noqa: E402
from ingest.pipeline import ingest_paths  # noqa: E402
from models.embedder import HashEmbedder  # noqa: E402
from store.db import Store  # noqa: E402
from store.live import LiveIndex  # noqa: E402
from store.lock import WriterLock  # noqa: E402
from store.releases import Releases  # noqa: E402

DEFAULT_CORPUS = Path("/work/shared/corpora/postgres-manual-html")
BUCKET = "enclave-bench"


def run(location: str, root: Path, files: list[Path], endpoint: str | None) -> dict[str, Any]:
    emb = HashEmbedder()
    docs = root / "docs"
    docs.mkdir()
    for f in files:
        shutil.copy(f, docs / f.name)
    store_cfg: dict[str, Any] = {}
    if location == "s3":
        store_cfg = {"uri": f"s3://{BUCKET}/bench", "s3_endpoint": endpoint}
    settings = Settings(data_dir=root / "data", embedder={"model": "hash"}, store=store_cfg)
    t0 = time.perf_counter()
    summary = ingest_paths(settings, [docs], embedder=emb)
    ingest_s = time.perf_counter() - t0
    first = summary.release["id"]
    # a second release: 5% of the files changed
    for f in sorted(docs.iterdir())[: max(1, len(files) // 20)]:
        f.write_text(f.read_text("utf-8", errors="replace") + "\nA sentence more.\n", "utf-8")
    t1 = time.perf_counter()
    second = ingest_paths(settings, [docs], embedder=emb).release["id"]
    incremental_s = time.perf_counter() - t1
    readers = [LiveIndex(settings.index), LiveIndex(settings.index)]
    promote_s, follow_s = [], []
    for _ in range(5):
        for target in (first, second):
            t = time.perf_counter()
            with WriterLock(settings.index, "bench"):
                rels = Releases(Store(settings.index))
                rels.promote(rels.registry.get(target), by="bench")
            promote_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            while any(r.reader().release_id != target for r in readers):
                time.sleep(0.01)
            follow_s.append(time.perf_counter() - t)
    view = readers[0].reader()
    query = emb.embed_query("configuration of the server")
    search_ms = []
    for _ in range(50):
        t = time.perf_counter()
        view.vector_search(query, 10)
        search_ms.append((time.perf_counter() - t) * 1000)
    return {
        "location": location,
        "files": len(files),
        "chunks": summary.chunks_added,
        "ingest_s": round(ingest_s, 2),
        "docs_per_s": round(len(files) / ingest_s, 1),
        "incremental_5pct_s": round(incremental_s, 2),
        "promote_median_s": round(statistics.median(promote_s), 3),
        "follow_median_s": round(statistics.median(follow_s), 3),
        "follow_max_s": round(max(follow_s), 3),
        "search_median_ms": round(statistics.median(search_ms), 1),
        "index_bytes": Store(settings.index).size_bytes(),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    files = sorted(p for p in args.corpus.iterdir() if p.is_file())[: args.files]

    import logging

    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_REGION", "us-east-1")
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    results = []
    try:
        for location in ("local", "s3"):
            with tempfile.TemporaryDirectory() as tmp:
                results.append(run(location, Path(tmp), files, endpoint))
                print(json.dumps(results[-1]), file=sys.stderr)
    finally:
        server.stop()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    keys = [k for k in results[0] if k != "location"]
    print(f"{'':22}" + "".join(f"{r['location']:>12}" for r in results))
    for key in keys:
        print(f"{key:22}" + "".join(f"{r[key]!s:>12}" for r in results))


if __name__ == "__main__":
    main()
