"""Sync benchmark: change-to-answer latency on a watched folder, and the CPU an idle
``enclave sync`` costs.

    .venv/bin/python benchmarks/sync_bench.py [--files 1000] [--edits 5] [--deletes 3]
        [--embedder hash|bundled] [--debounce 1.0] [--idle-s 60] [--rescan 120] [--json]

A folder of ``--files`` text files (about 1 KB each) is ingested once; then a real
``enclave sync`` process (its own interpreter, as in production) watches it while a server
(uvicorn in this process, the fake generator) serves the live release. Each edit writes a
new code word into one file; each deletion removes one file. The latency is the time from
the write (or unlink) to the first ``/v1/search`` (polled every 50 ms) whose answer shows the
change: the watcher, the debounce (``--debounce``, ``sync.debounce_s``), the incremental
ingest run with its release (rails, promotion), and the server following the pointer.

Then the sync process is left alone for ``--idle-s`` seconds, and its CPU time
(``/proc/PID/stat``: user + system) over that window is reported per minute.

Target: every change answered within 10 s on a 1,000-file share.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

WORDS = [f"w{a}{b}" for a in "bcdfghklmnprstvz" for b in range(60)]


def make_corpus(folder: Path, n: int) -> None:
    rng = random.Random(7)
    folder.mkdir(parents=True)
    for i in range(n):
        sub = folder / f"dept{i % 20:02d}"
        sub.mkdir(exist_ok=True)
        text = " ".join(rng.choice(WORDS) for _ in range(150))
        (sub / f"doc{i:04d}.txt").write_text(f"Document {i}. {text}\n", "utf-8")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick


def serve(settings: Any) -> tuple[str, Any]:
    import uvicorn

    from models.generator import FakeGenerator
    from server.app import create_app

    app = create_app(settings, generator=FakeGenerator())
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    return f"http://127.0.0.1:{port}", server


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--edits", type=int, default=5)
    ap.add_argument("--deletes", type=int, default=3)
    ap.add_argument("--embedder", default="hash")
    ap.add_argument("--debounce", type=float, default=1.0)
    ap.add_argument("--idle-s", type=float, default=60.0)
    ap.add_argument("--rescan", type=float, default=120.0, help="sync.rescan_interval_s")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import httpx

    from enclave.settings import Settings
    from ingest.pipeline import ingest_paths

    work = Path(tempfile.mkdtemp(prefix="enclave-sync-bench-"))
    docs, data = work / "docs", work / "data"
    try:
        make_corpus(docs, args.files)
        settings = Settings(
            data_dir=data,
            embedder={"model": args.embedder},
            security={"auth": False, "audit": False},
            retrieval={"min_similarity": 0.0},
        )
        t0 = time.perf_counter()
        ingest_paths(settings, [docs])
        first_s = time.perf_counter() - t0
        base, server = serve(settings)
        while httpx.get(base + "/readyz", timeout=30).status_code != 200:
            time.sleep(0.1)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "ENCLAVE_EMBEDDER__MODEL": args.embedder,
               "ENCLAVE_SECURITY__AUDIT": "false"}  # fmt: skip
        cmd = [sys.executable, "-m", "enclave.cli", "sync", str(docs), "-d", str(data),
               "--debounce", str(args.debounce), "--rescan", str(args.rescan)]  # fmt: skip
        proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL, cwd=work)
        try:
            state = data / "sync-state.json"

            def ready() -> bool:  # the catch-up run done, LanceDB and the embedder loaded
                s = json.loads(state.read_text()) if state.is_file() else {}
                return bool(s.get("runs")) and s.get("state") == "watching"

            while not ready():
                time.sleep(0.1)
            time.sleep(1.0)

            def hits(word: str) -> set[str]:
                body = httpx.post(base + "/v1/search", json={"query": word, "top_k": 5},
                                  timeout=30).json()  # fmt: skip
                return {h["source"] for h in body["results"] if word in h["text"]}

            def timed(change: Any, done: Any) -> float:
                start = time.perf_counter()
                change()
                while not done():
                    if time.perf_counter() - start > 120:
                        return float("inf")
                    time.sleep(0.05)
                return time.perf_counter() - start

            files = sorted(docs.rglob("*.txt"))
            rng = random.Random(11)
            edits, deletes = [], []
            for k in range(args.edits):
                f = rng.choice(files)
                word = f"zulu{k}x{rng.randrange(10**6)}"
                edits.append(
                    timed(
                        lambda f=f, word=word: f.write_text(f"Edited. The word is {word}.\n"),
                        lambda f=f, word=word: hits(word) == {str(f)},
                    )
                )
                time.sleep(1.0)
            for _ in range(args.deletes):
                f = rng.choice([x for x in files if x.exists()])
                head = f.read_text().split()[1]  # "N." : the document's own number
                word = f"Document {head}"
                deletes.append(
                    timed(
                        f.unlink,
                        lambda f=f, word=word: str(f)
                        not in {h["source"] for h in httpx.post(
                            base + "/v1/search", json={"query": word, "top_k": 50}, timeout=30
                        ).json()["results"]},
                    )
                )  # fmt: skip
                time.sleep(1.0)
            time.sleep(3.0)
            c0, w0 = cpu_seconds(proc.pid), time.perf_counter()
            time.sleep(args.idle_s)
            idle = (cpu_seconds(proc.pid) - c0) / ((time.perf_counter() - w0) / 60.0)
            out = {
                "files": args.files,
                "embedder": args.embedder,
                "debounce_s": args.debounce,
                "first_ingest_s": round(first_s, 2),
                "edit_to_answer_s": [round(x, 2) for x in edits],
                "delete_to_answer_s": [round(x, 2) for x in deletes],
                "median_s": round(statistics.median(edits + deletes), 2),
                "max_s": round(max(edits + deletes), 2),
                "idle_cpu_s_per_min": round(idle, 3),
                "idle_window_s": args.idle_s,
                "rescan_interval_s": args.rescan,
                "load_average": os.getloadavg(),
            }
        finally:
            proc.terminate()
            proc.wait(30)
            server.should_exit = True
        if args.json:
            print(json.dumps(out))
        else:
            for key, value in out.items():
                print(f"{key:>22}: {value}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
