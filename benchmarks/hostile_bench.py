"""Hostile-file benchmark: peak memory and commit order of ``enclave ingest`` on huge files.

    .venv/bin/python benchmarks/hostile_bench.py [--embedder bundled|hash] [--only NAME ...]
        [--work DIR] [--json]

Three scenarios, each generated in a fresh folder and ingested by ``enclave ingest FOLDER
--data-dir D --json`` in a new process, as a user runs it (default settings, the configured
embedder):

* ``one-line``: a 200 MiB text file of words on a single line;
* ``csv-1m``: a CSV of 1,000,000 rows (id, name, region, eight words of notes; about 80 MB);
* ``table+3``: a CSV of 115,000 rows (about 20,000 chunks with the bundled embedder), first
  in walk order, and three small text files after it.

For each: the wall time, the peak RSS of the largest process (``enclave ingest`` or one of its
parser workers, from ``getrusage(RUSAGE_CHILDREN)`` of a wrapper process that runs nothing
else) and the peak of the whole tree sampled every 0.2 s; the chunks and the ``truncated``
reasons of the summary. An observer process polls the index's documents table every 0.5 s
and records when each document is first readable as complete (status ``ok``): for
``table+3`` that shows whether the small files were held behind the table.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = [
    *("ledger", "vault", "quorum", "lattice", "harbor", "signal", "beacon", "cipher", "orbit"),
    *("meadow", "canyon", "prism", "tundra", "summit", "lantern", "compass", "anchor"),
    *("willow", "ember", "falcon", "river", "cobalt", "granite"),
]

WRAPPER = """
import json, resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
print(json.dumps({"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr[-4000:],
                  "peak": peak}))
"""


def one_line(folder: Path) -> None:
    rng = random.Random(0)
    block = " ".join(rng.choice(WORDS) for _ in range(100_000)) + " "
    size = 200 * 1024 * 1024
    with (folder / "one-line.txt").open("w", encoding="ascii") as fh:
        written = 0
        while written < size:
            part = block[: size - written]
            fh.write(part)
            written += len(part)


def table(path: Path, rows: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as fh:
        fh.write("id,name,region,notes\n")
        for i in range(rows):
            notes = " ".join(rng.choice(WORDS) for _ in range(8))
            fh.write(f"{i},{rng.choice(WORDS)} {rng.choice(WORDS)},{rng.choice(WORDS)},{notes}\n")


def csv_1m(folder: Path) -> None:
    table(folder / "rows.csv", 1_000_000)


def table_plus_3(folder: Path) -> None:
    table(folder / "a-table.csv", 115_000)
    for k in range(3):
        (folder / f"b-small{k}.txt").write_text(
            f"Small file {k} about the falcon river and the cobalt lantern, marker{k}.\n"
        )


SCENARIOS: dict[str, Callable[[Path], None]] = {
    "one-line": one_line,
    "csv-1m": csv_1m,
    "table+3": table_plus_3,
}


class TreePeak:
    """Samples the summed RSS of a process and all its descendants."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
                total = 0
                for p in procs:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
                self.peak = max(self.peak, total)
            except psutil.Error:
                pass
            self._stop.wait(self.interval)

    def __enter__(self) -> TreePeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class CommitWatch:
    """Polls the documents table and notes when each path is first complete (``ok``)."""

    def __init__(self, lance_dir: Path, t0: float, interval: float = 0.5) -> None:
        self.lance_dir = lance_dir
        self.t0 = t0
        self.interval = interval
        self.first_ok: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        store = None
        while not self._stop.is_set():
            try:
                if store is None and (self.lance_dir / "documents.lance").exists():
                    from store.db import Store

                    store = Store(self.lance_dir)
                if store is not None:
                    now = time.monotonic() - self.t0
                    for d in store.list_documents():
                        if d.status == "ok" and d.path not in self.first_ok:
                            self.first_ok[d.path] = round(now, 1)
            except Exception:  # a table being created or compacted: try again
                store = None
            self._stop.wait(self.interval)

    def __enter__(self) -> CommitWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run(name: str, work: Path, embedder: str) -> dict[str, Any]:
    folder = work / name / "docs"
    data = work / name / "data"
    shutil.rmtree(work / name, ignore_errors=True)
    folder.mkdir(parents=True)
    t = time.perf_counter()
    SCENARIOS[name](folder)
    gen_s = time.perf_counter() - t
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env["PYTHONPATH"] = str(ROOT)
    env["ENCLAVE_EMBEDDER__MODEL"] = embedder
    cmd = [sys.executable, "-m", "ingest.cli", "ingest", str(folder), "--data-dir", str(data),
           "--json", "--no-progress"]  # fmt: skip
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", WRAPPER, *cmd], env=env, stdout=subprocess.PIPE, text=True
    )
    with TreePeak(proc.pid) as tree, CommitWatch(data / "lancedb", t0) as watch:
        out_text, _ = proc.communicate()
        wall_s = time.monotonic() - t0
        time.sleep(1.0)  # let the watcher see the last commit
    out = json.loads(out_text)
    summary: dict[str, Any] = json.loads(out["stdout"]) if out["stdout"].strip() else {}
    committed = {Path(p).name: s for p, s in sorted(watch.first_ok.items(), key=lambda x: x[1])}
    return {
        "scenario": name,
        "embedder": embedder,
        "input_mb": round(sum(p.stat().st_size for p in folder.iterdir()) / 2**20, 1),
        "generate_s": round(gen_s, 1),
        "exit_code": out["rc"],
        "wall_s": round(wall_s, 1),
        "peak_rss_largest_process_mb": round(out["peak"] / 2**20),
        "peak_rss_tree_mb": round(tree.peak / 2**20),
        "files": summary.get("files_seen"),
        "chunks": summary.get("chunks_added"),
        "failed": summary.get("failed"),
        "truncated": summary.get("truncated"),
        "stages_s": summary.get("stages"),
        "first_readable_as_complete_s": committed,
        "stderr_tail": out["stderr"][-500:] if out["rc"] else "",
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--embedder", default="bundled", help="bundled (default) or hash")
    ap.add_argument("--only", nargs="*", choices=sorted(SCENARIOS), default=None)
    ap.add_argument("--work", type=Path, default=None, help="folder for the generated files")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="enclave-hostile-"))
    results = []
    print(f"cores {os.cpu_count()}, load average before {os.getloadavg()}", flush=True)
    for name in args.only or list(SCENARIOS):
        result = run(name, work, args.embedder)
        results.append(result)
        for key, value in result.items():
            print(f"{key:32} {value}", flush=True)
        print(flush=True)
        shutil.rmtree(work / name, ignore_errors=True)
    if args.json:
        print(json.dumps(results))
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
