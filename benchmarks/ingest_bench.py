"""Ingestion benchmark: end-to-end throughput, stage times, peak memory, the embedder alone on
the same chunks, and an unchanged re-run.

    .venv/bin/python benchmarks/ingest_bench.py FOLDER [--data-dir D] [--limit N] [--json]

* the embedder is loaded first and timed apart; the end-to-end figure is ``ingest_paths`` over
  a fresh index with that embedder (parse workers, chunking, embedding, writes, optimize);
* "embedder alone" replays exactly the batches the pipeline embedded, with a fresh timing,
  in the same process right after the run;
* peak RSS is sampled every 0.1 s over this process and all its children (parser workers);
* the re-run is ``enclave ingest FOLDER --data-dir D --json`` in a new process over the
  unchanged corpus (interpreter start and imports included), plus its in-process figure.

``--limit N`` ingests the first N supported files (sorted by path) through a folder of symlinks
(followed with ``ingest.follow_external_links``: they point out of that folder).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from enclave.offline import enforce_offline  # noqa: E402

enforce_offline()

from enclave.settings import load_settings  # noqa: E402
from models.embedder import Embedder, Vectors  # noqa: E402
from models.loading import load_embedder  # noqa: E402


class RecordingEmbedder(Embedder):
    """Delegates to a real embedder and records every ``embed`` call's texts."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.name = inner.name
        self.dimension = inner.dimension
        self.max_tokens = inner.max_tokens
        self.batch_size = inner.batch_size
        self.calls: list[list[str]] = []

    def embed_batch(self, texts: Sequence[str]) -> Vectors:
        return self.inner.embed_batch(texts)

    def embed(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(list(texts))
        return self.inner.embed(texts)

    def token_spans(self, text: str) -> list[tuple[int, int]]:
        return self.inner.token_spans(text)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)


class PeakRSS:
    """Samples the RSS of this process plus all its descendants."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            total = 0
            try:
                procs = [me, *me.children(recursive=True)]
            except psutil.Error:
                procs = [me]
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    total += p.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def subset(folder: Path, limit: int, into: Path) -> Path:
    from ingest.parse import SUPPORTED_EXTENSIONS

    files = sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS
    )[:limit]
    into.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        (into / f"{i:05d}-{f.name}").symlink_to(f)
    return into


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--limit", type=int, default=0, help="only the first N files")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="enclave-bench-"))
    data_dir = args.data_dir or tmp / "data"
    if data_dir.exists() and any(data_dir.iterdir()):
        sys.exit(f"--data-dir {data_dir} is not empty: the benchmark needs a fresh index")
    folder = args.folder.resolve()
    if args.limit:
        folder = subset(folder, args.limit, tmp / "subset")
    from ingest.parse import SUPPORTED_EXTENSIONS

    files = [
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS
    ]
    input_bytes = sum(p.stat().st_size for p in files)

    follow = bool(args.limit)  # the subset's links point out of its folder
    settings = load_settings(
        overrides={"data_dir": str(data_dir), "ingest": {"follow_external_links": follow}}
    )
    t = time.perf_counter()
    inner = load_embedder(settings.embedder)
    load_s = time.perf_counter() - t
    embedder = RecordingEmbedder(inner)

    from ingest.pipeline import ingest_paths

    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with PeakRSS() as rss:
        t = time.perf_counter()
        summary = ingest_paths(settings, [folder], embedder=embedder)
        e2e_s = time.perf_counter() - t
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    child1 = resource.getrusage(resource.RUSAGE_CHILDREN)

    # the embedder alone on exactly the same batches
    t = time.perf_counter()
    for texts in embedder.calls:
        vecs = inner.embed(texts)
        assert isinstance(vecs, np.ndarray)
    embed_alone_s = time.perf_counter() - t
    chunks = sum(len(c) for c in embedder.calls)

    # unchanged re-run, as a user runs it
    exe = ROOT / ".venv" / "bin" / "enclave"
    cmd = [str(exe) if exe.exists() else "enclave", "ingest", str(folder), "--data-dir",
           str(data_dir), "--json", *(["--follow-links"] if follow else [])]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    rerun_s = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    rerun_cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rerun: dict[str, Any] = json.loads(proc.stdout) if proc.stdout.strip() else {}

    d = summary.to_dict()
    out: dict[str, Any] = {
        "folder": str(args.folder),
        "files": len(files),
        "input_mb": round(input_bytes / 1e6, 2),
        "ingested": d["ingested"],
        "failed": len(d["failed"]),
        "chunks": d["chunks_added"],
        "embedder_load_s": round(load_s, 2),
        "end_to_end_s": round(e2e_s, 2),
        "docs_per_s": round(len(files) / e2e_s, 2),
        "chunks_per_s": round(d["chunks_added"] / e2e_s, 2),
        "mb_per_s": round(input_bytes / 1e6 / e2e_s, 3),
        "stages_s": d["stages"],
        "parser_workers_cpu_s": round(
            (child1.ru_utime - child0.ru_utime) + (child1.ru_stime - child0.ru_stime), 2
        ),
        "main_process_cpu_s": round(
            (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime), 2
        ),
        "peak_rss_mb": round(rss.peak / 2**20, 1),
        "embedder_alone_s": round(embed_alone_s, 2),
        "embedder_alone_chunks_per_s": round(chunks / embed_alone_s, 2) if embed_alone_s else 0,
        "ratio_end_to_end_over_embedder": round(e2e_s / embed_alone_s, 3) if embed_alone_s else 0,
        "rerun_wall_s": round(rerun_s, 2),
        "rerun_cpu_s": round(rerun_cpu_s, 2),
        "rerun_in_process_s": rerun.get("seconds"),
        "rerun_unchanged": rerun.get("unchanged"),
        "rerun_exit_code": proc.returncode,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "cores": os.cpu_count(),
    }
    for key, value in out.items():
        print(f"{key:32} {value}")
    if args.json:
        print(json.dumps(out))
    if args.data_dir is None:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
