"""Server benchmarks: generation through the server vs raw llama-cpp-python, retrieval latency
at 10k and 100k chunks, time to first token with the system prompt warm vs cold, and
throughput / p95 latency with 4 and 16 concurrent clients.

    .venv/bin/python benchmarks/server_bench.py [--quick] [--json out.json]

Everything runs in one process, on the bundled models, against a real uvicorn on loopback.
Retrieval-scale tables are synthetic: chunk texts are 120-word samples of the words of the
PostgreSQL manual in ../shared (random words if absent); vectors are random unit vectors (the
query vector too), so the figures measure LanceDB search + full-text + fusion, not the
embedder.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from enclave.native import preload_generator_runtime
from enclave.offline import enforce_offline

enforce_offline()
preload_generator_runtime()

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from enclave.settings import Settings  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "corpora" / "postgres-manual-html"

DOCS = {
    "falcon.md": "# Project Falcon\n\nProject Falcon is the internal codename for the new "
    "billing platform. The Falcon launch date is 14 March 2027 and its budget is 3.2 million "
    "euros. The project lead is Ingrid Maelstrom. The main risk is the migration of legacy "
    "invoices from the mainframe, which holds eleven years of records.\n",
    "leave.txt": "Employee leave policy.\n\nEvery employee receives 27 days of paid annual "
    "leave. Unused leave can be carried over until the end of April of the following year. "
    "Parental leave is 16 weeks at full pay. Sick leave needs a doctor's note after three "
    "days.\n",
    "security.md": "# Security handbook\n\nLaptops must use full-disk encryption. Passwords "
    "must be at least 14 characters long. Report phishing emails to the security desk at "
    "extension 4242. Visitors must be escorted at all times in the data centre.\n",
}
QUESTIONS = [
    "When is the launch date of Project Falcon and what is its budget?",
    "How many days of paid annual leave do employees get?",
    "How long must passwords be, and where do I report phishing?",
    "Who leads Project Falcon and what is the main risk?",
    "How long is parental leave?",
    "What must laptops use?",
]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def load_avg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


# ------------------------------------------------------------------------------ raw llama.cpp
def raw_stream(llm: Any, messages: list[dict[str, str]], max_tokens: int) -> dict[str, float]:
    """One streamed chat completion straight through llama-cpp-python, in a short-lived thread.

    llama.cpp's CPU backend runs on OpenMP, which keeps a thread pool per calling thread while
    that thread lives. Two pools on 2 cores make the OpenMP runtime throttle its spinning and
    every generation in the process decodes 2-3x slower; the server runs each generation in a
    thread of its own, so the raw comparison does the same.
    """
    out: list[dict[str, float]] = []
    worker = threading.Thread(target=lambda: out.append(_raw_stream(llm, messages, max_tokens)))
    worker.start()
    worker.join()
    return out[0]


def _raw_stream(llm: Any, messages: list[dict[str, str]], max_tokens: int) -> dict[str, float]:
    started = time.perf_counter()
    first: float | None = None
    last = started
    tokens = 0
    for chunk in llm.create_chat_completion(
        messages=messages, max_tokens=max_tokens, temperature=0.0, stream=True, seed=0
    ):
        delta = chunk["choices"][0]["delta"].get("content")
        if delta:
            tokens += 1
            now = time.perf_counter()
            if first is None:
                first = now
            last = now
    first = first or last
    decode = (tokens - 1) / (last - first) if tokens > 1 and last > first else float("nan")
    return {
        "ttft_s": first - started,
        "tokens": tokens,
        "decode_tok_s": decode,
        "total_s": last - started,
    }


def server_stream(base: str, question: str, max_tokens: int) -> dict[str, float]:
    """One streamed answer through the server (SSE), timed on the client."""
    body = {
        "model": "x",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "stream": True,
        "temperature": 0.0,
    }
    started = time.perf_counter()
    first: float | None = None
    last = started
    pieces = 0
    usage: dict[str, int] = {}
    with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=600) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                usage = event["usage"]
            delta = event["choices"][0]["delta"].get("content") if event.get("choices") else None
            if delta:
                pieces += 1
                now = time.perf_counter()
                if first is None:
                    first = now
                last = now
    first = first or last
    tokens = usage.get("completion_tokens", pieces)
    decode = (tokens - 1) / (last - first) if tokens > 1 and last > first else float("nan")
    return {
        "ttft_s": first - started,
        "tokens": tokens,
        "decode_tok_s": decode,
        "total_s": last - started,
    }


# ------------------------------------------------------------------------------ server
class Live:
    def __init__(self, app: Any) -> None:
        import socket

        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="error"))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> Live:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        while httpx.get(self.base + "/readyz").status_code != 200:
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def build_index(root: Path, embedder: Any) -> Settings:
    from ingest.pipeline import ingest_paths

    docs = root / "docs"
    docs.mkdir(parents=True)
    for name, text in DOCS.items():
        (docs / name).write_text(text, encoding="utf-8")
    settings = Settings(
        data_dir=root / "data",
        generator={"n_ctx": 2048, "max_tokens": 256},
        retrieval={"top_k": 3},
        server={"queue_size": 8},
        security={"auth": False},  # a loopback bench: keys are not what it measures
    )
    ingest_paths(settings, [docs], embedder=embedder)
    return settings


def bench_generation(report: dict[str, Any], rounds: int, max_tokens: int) -> None:
    from llama_cpp import Llama

    from models.bundled import bundled_generator_path
    from models.loading import load_embedder, load_generator
    from server.app import create_app
    from store.db import Store

    root = Path(tempfile.mkdtemp(prefix="enclave-bench-"))
    embedder = load_embedder(Settings().embedder)
    settings = build_index(root, embedder)
    gen = load_generator(settings.generator)
    threads = getattr(gen, "n_threads", 2)
    batch_threads = getattr(gen, "n_threads_batch", threads)
    raw = Llama(
        model_path=str(bundled_generator_path()),
        n_ctx=2048,
        n_threads=threads,
        n_threads_batch=batch_threads,
        verbose=False,
        seed=0,
    )
    app = create_app(settings, generator=gen, embedder=embedder, store=Store(settings.lance_dir))
    rag = app.state.enclave.services.rag
    question = "Describe Project Falcon in detail: purpose, launch date, budget, lead and risks."
    messages = rag.prepare([{"role": "user", "content": question}], max_tokens=max_tokens).messages
    with Live(app) as live:
        server_stream(live.base, QUESTIONS[0], 8)  # warm both paths once
        raw_stream(raw, messages, 8)
        srv_runs, raw_runs = [], []
        for _ in range(rounds):
            srv_runs.append(server_stream(live.base, question, max_tokens))
            raw_runs.append(raw_stream(raw, messages, max_tokens))
        srv = statistics.median(r["decode_tok_s"] for r in srv_runs)
        rw = statistics.median(r["decode_tok_s"] for r in raw_runs)
        report["generation"] = {
            "rounds": rounds,
            "threads": threads,
            "threads_batch": batch_threads,
            "prompt_tokens": gen.count_chat_tokens(messages),
            "server_decode_tok_s": round(srv, 1),
            "raw_decode_tok_s": round(rw, 1),
            "ratio": round(srv / rw, 3),
            "server_tokens": [r["tokens"] for r in srv_runs],
            "raw_tokens": [r["tokens"] for r in raw_runs],
            "server_end_to_end_tok_s": round(
                statistics.median(r["tokens"] / r["total_s"] for r in srv_runs), 1
            ),
            "raw_end_to_end_tok_s": round(
                statistics.median(r["tokens"] / r["total_s"] for r in raw_runs), 1
            ),
        }
        print("generation", report["generation"], flush=True)

        # time to first token, system prompt cold vs warm (server's generator, in-process)
        from models.generator import Generator

        def ttft(g: Generator, msgs: list[dict[str, str]]) -> float:
            started = time.perf_counter()
            events = g.stream(msgs, max_tokens=4, temperature=0.0)
            try:
                for ev in events:
                    if ev.delta or ev.finish_reason:
                        break
                return time.perf_counter() - started
            finally:
                close = getattr(events, "close", None)
                if close is not None:
                    close()

        cold, warm = [], []
        other = [
            {"role": "system", "content": "You are a poet. " * 40},
            {"role": "user", "content": "Write a haiku about snow."},
        ]
        for i in range(rounds):
            q = QUESTIONS[(i + 1) % len(QUESTIONS)]
            msgs = rag.prepare([{"role": "user", "content": q}], max_tokens=64).messages
            ttft(gen, other)  # evicts the RAG system prompt from the KV cache
            cold.append(ttft(gen, msgs))
            q2 = QUESTIONS[(i + 2) % len(QUESTIONS)]
            msgs2 = rag.prepare([{"role": "user", "content": q2}], max_tokens=64).messages
            warm.append(ttft(gen, msgs2))  # same system prompt, other sources and question
        sys_tokens = gen.count_chat_tokens([{"role": "system", "content": msgs[0]["content"]}])
        report["ttft"] = {
            "system_prompt_tokens": sys_tokens,
            "rag_prompt_tokens": gen.count_chat_tokens(msgs2),
            "cold_s_median": round(statistics.median(cold), 3),
            "warm_s_median": round(statistics.median(warm), 3),
        }
        print("ttft", report["ttft"], flush=True)

        # concurrency: non-streaming requests, each client sends its share back to back
        for clients, per_client in ((4, 3), (16, 1)):
            latencies: list[float] = []
            statuses: dict[int, int] = {}
            lock = threading.Lock()

            def client(
                i: int,
                per_client: int = per_client,
                lock: threading.Lock = lock,
                statuses: dict[int, int] = statuses,
                latencies: list[float] = latencies,
            ) -> None:
                with httpx.Client(timeout=600) as c:
                    for j in range(per_client):
                        q = QUESTIONS[(i + j) % len(QUESTIONS)]
                        t0 = time.perf_counter()
                        r = c.post(
                            live.base + "/v1/chat/completions",
                            json={
                                "model": "x",
                                "max_tokens": 32,
                                "messages": [{"role": "user", "content": q}],
                            },
                        )
                        dt = time.perf_counter() - t0
                        with lock:
                            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                            if r.status_code == 200:
                                latencies.append(dt)

            started = time.perf_counter()
            workers = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            wall = time.perf_counter() - started
            report[f"concurrency_{clients}"] = {
                "requests": clients * per_client,
                "statuses": statuses,
                "answers_per_s": round(len(latencies) / wall, 3),
                "p50_s": round(pct(latencies, 0.5), 2),
                "p95_s": round(pct(latencies, 0.95), 2),
                "wall_s": round(wall, 1),
            }
            print(f"concurrency {clients}", report[f"concurrency_{clients}"], flush=True)
    raw.close()
    gen.close()


# ------------------------------------------------------------------------------ retrieval
def vocabulary() -> list[str]:
    words: list[str] = []
    if SHARED.is_dir():
        for f in sorted(SHARED.glob("*.html"))[:80]:
            text = re.sub(r"<[^>]+>", " ", f.read_text("utf-8", errors="replace"))
            words.extend(w.lower() for w in re.findall(r"[A-Za-z]{3,}", text))
    if len(words) < 1000:
        rng = random.Random(1)
        words = [
            "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
            for _ in range(20000)
        ]
    return words


class RandomQueryEmbedder:
    """Stands in for the embedder: random unit query vectors (the chunks' are random too)."""

    name = "random-384"
    dimension = 384
    max_tokens = 256

    def __init__(self) -> None:
        self.rng = np.random.default_rng(7)

    def embed_query(self, text: str) -> Any:
        v = self.rng.standard_normal(self.dimension).astype(np.float32)
        return v / np.linalg.norm(v)


def bench_retrieval(report: dict[str, Any], sizes: list[int], queries: int) -> None:
    from rag.service import RagService
    from store.db import Store
    from store.records import ChunkRecord, DocumentRecord

    words = vocabulary()
    rng = random.Random(3)
    nrng = np.random.default_rng(5)
    emb = RandomQueryEmbedder()
    for size in sizes:
        root = Path(tempfile.mkdtemp(prefix=f"enclave-ret-{size}-"))
        store = Store(root / "lancedb")
        store.bind_embedder(emb.name, emb.dimension)
        t0 = time.perf_counter()
        per_doc = 100
        for start in range(0, size, 10_000):
            docs, chunks = [], []
            n = min(10_000, size - start)
            vecs = nrng.standard_normal((n, emb.dimension)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            for i in range(n):
                k = start + i
                doc_id = f"{k // per_doc:024x}"
                if k % per_doc == 0:
                    docs.append(
                        DocumentRecord(
                            doc_id=doc_id, path=f"/bench/{doc_id}.txt", chunk_count=per_doc
                        )
                    )
                text = " ".join(rng.choice(words) for _ in range(120))
                chunks.append(
                    ChunkRecord(
                        chunk_id=f"{doc_id}-{k % per_doc:05d}",
                        doc_id=doc_id,
                        ordinal=k % per_doc,
                        text=text,
                        vector=vecs[i],
                        source=f"/bench/{doc_id}.txt",
                        tokens=160,
                    )
                )
            store.replace_documents(docs, chunks)
        store.optimize()
        build_s = time.perf_counter() - t0
        settings = Settings(data_dir=root, retrieval={"top_k": 5})
        rag = RagService(settings, store, emb, None)  # type: ignore[arg-type]
        qs = [" ".join(rng.choice(words) for _ in range(8)) for _ in range(queries)]
        for q in qs[:3]:
            rag.retrieve(q)  # warm caches
        times = []
        for q in qs:
            t = time.perf_counter()
            rag.retrieve(q)
            times.append(time.perf_counter() - t)
        report[f"retrieval_{size}"] = {
            "chunks": size,
            "build_s": round(build_s, 1),
            "queries": queries,
            "p50_ms": round(pct(times, 0.5) * 1000, 1),
            "p95_ms": round(pct(times, 0.95) * 1000, 1),
        }
        print(f"retrieval {size}", report[f"retrieval_{size}"], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, 10k chunks only")
    parser.add_argument("--skip-generation", action="store_true")
    parser.add_argument("--skip-retrieval", action="store_true")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    report: dict[str, Any] = {"load_avg_start": load_avg(), "cpus": os.cpu_count()}
    if not args.skip_generation:
        bench_generation(report, rounds=2 if args.quick else 3, max_tokens=96)
    if not args.skip_retrieval:
        bench_retrieval(report, [10_000] if args.quick else [10_000, 100_000], queries=40)
    report["load_avg_end"] = load_avg()
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
