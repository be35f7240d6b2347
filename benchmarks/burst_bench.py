"""Bursts of concurrent chat requests against a real server: admitted or refused at once, and
never a 5xx after a wait.

    .venv/bin/python benchmarks/burst_bench.py [--bursts 16,32] [--timeout 30] [--max-tokens 64]
                                               [--queue-size 8] [--json out.json]

The bundled models on a real uvicorn on loopback, in this process (the clients too, so the
figures include their share of the two cores). A few sequential requests first, as a server
that has been running would have answered (the admission estimates learn from them); then
each burst: N clients, half of them streaming, sent at the same instant, while a thread polls
``/healthz`` every 50 ms. Printed per burst: status counts, p50/p95 latency of the 200s and of
the 429s, the Retry-After values, the slowest ``/healthz``, and how many admitted answers ran
out of time (a 504, or a stream ended with ``finish_reason: "timeout"``).
"""

from __future__ import annotations

import argparse
import json
import os
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

from benchmarks.server_bench import QUESTIONS, Live, build_index, load_avg, pct  # noqa: E402
from enclave.settings import Settings  # noqa: E402


def ask(base: str, question: str, max_tokens: int, stream: bool) -> dict[str, Any]:
    """One chat request; its status, client-side latency, Retry-After and finish reason."""
    body = {
        "model": "x",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "stream": stream,
    }
    started = time.perf_counter()
    finish: str | None = None
    retry_after: str | None = None
    with httpx.Client(timeout=600) as client:
        if stream:
            with client.stream("POST", base + "/v1/chat/completions", json=body) as r:
                status = r.status_code
                retry_after = r.headers.get("retry-after")
                for line in r.iter_lines():
                    if line.startswith("data: {"):
                        choices = json.loads(line[6:]).get("choices") or [{}]
                        finish = choices[0].get("finish_reason") or finish
        else:
            r = client.post(base + "/v1/chat/completions", json=body)
            status = r.status_code
            retry_after = r.headers.get("retry-after")
            if status == 200:
                finish = r.json()["choices"][0]["finish_reason"]
    return {
        "status": status,
        "latency_s": time.perf_counter() - started,
        "retry_after": retry_after,
        "finish_reason": finish,
        "stream": stream,
    }


def burst(base: str, clients: int, max_tokens: int) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    health: list[float] = []
    lock = threading.Lock()
    go = threading.Event()
    done = threading.Event()

    def client(i: int) -> None:
        go.wait()
        result = ask(base, QUESTIONS[i % len(QUESTIONS)], max_tokens, stream=i % 2 == 1)
        with lock:
            results.append(result)

    def poll_health() -> None:
        with httpx.Client(timeout=30) as c:
            while not done.is_set():
                t0 = time.perf_counter()
                c.get(base + "/healthz").raise_for_status()
                health.append(time.perf_counter() - t0)
                time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    poller = threading.Thread(target=poll_health)
    for t in threads:
        t.start()
    poller.start()
    started = time.perf_counter()
    go.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    done.set()
    poller.join()
    statuses: dict[str, int] = {}
    for r in results:
        statuses[str(r["status"])] = statuses.get(str(r["status"]), 0) + 1
    ok = [r["latency_s"] for r in results if r["status"] == 200]
    refused = [r["latency_s"] for r in results if r["status"] == 429]
    retry = sorted(int(r["retry_after"]) for r in results if r["retry_after"] is not None)
    late = sum(1 for r in results if r["status"] == 504 or r["finish_reason"] == "timeout")
    return {
        "clients": clients,
        "statuses": statuses,
        "server_errors": sum(1 for r in results if r["status"] >= 500),
        "timed_out": late,
        "ok_p50_s": round(pct(ok, 0.5), 2),
        "ok_p95_s": round(pct(ok, 0.95), 2),
        "ok_max_s": round(max(ok), 2) if ok else None,
        "refused_p50_s": round(pct(refused, 0.5), 3),
        "refused_p95_s": round(pct(refused, 0.95), 3),
        "retry_after_s": {"min": retry[0], "max": retry[-1]} if retry else None,
        "healthz_max_s": round(max(health), 3) if health else None,
        "healthz_polls": len(health),
        "wall_s": round(wall, 1),
    }


def wait_idle(base: str) -> None:
    """Until no chat request is left in the server (the bursts must not overlap)."""
    while True:
        text = httpx.get(base + "/metrics", timeout=30).text
        values = {
            line.split()[0]: float(line.split()[1])
            for line in text.splitlines()
            if line and not line.startswith("#") and len(line.split()) == 2
        }
        busy = values.get(
            "enclave_admitted_requests",
            values.get("enclave_generations_in_flight", 0) + values.get("enclave_queue_depth", 0),
        )
        if busy == 0:
            return
        time.sleep(0.2)


def refusals(base: str) -> dict[str, float]:
    """``enclave_rejected_total`` by cause, so far."""
    text = httpx.get(base + "/metrics", timeout=30).text
    out = {}
    for line in text.splitlines():
        if line.startswith("enclave_rejected_total{"):
            name, value = line.split()
            out[name.split('"')[1]] = float(value)
    return out


def estimates(base: str) -> dict[str, float]:
    text = httpx.get(base + "/metrics", timeout=30).text
    out = {}
    for line in text.splitlines():
        if line.startswith("enclave_expected_"):
            name, value = line.split()
            out[name.removeprefix("enclave_expected_")] = round(float(value), 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bursts", default="16,32", help="clients per burst, comma-separated")
    parser.add_argument("--timeout", type=float, default=30.0, help="server.request_timeout_s")
    parser.add_argument("--queue-size", type=int, default=8, help="server.queue_size")
    parser.add_argument("--max-tokens", type=int, default=64, help="max_tokens of each request")
    parser.add_argument("--warmup", type=int, default=5, help="sequential requests first")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()

    from models.loading import load_embedder, load_generator
    from rag.prompt import SYSTEM_PROMPT
    from server.app import create_app
    from store.db import Store

    report: dict[str, Any] = {"load_avg_start": load_avg(), "cpus": os.cpu_count()}
    root = Path(tempfile.mkdtemp(prefix="enclave-burst-"))
    embedder = load_embedder(Settings().embedder)
    settings = build_index(root, embedder)
    server = {"request_timeout_s": args.timeout, "queue_size": args.queue_size}
    settings = settings.model_copy(update={"server": settings.server.model_copy(update=server)})
    generator = load_generator(settings.generator)
    generator.warmup(SYSTEM_PROMPT)  # as `enclave serve` does: the system prompt is cached
    app = create_app(
        settings, generator=generator, embedder=embedder, store=Store(settings.lance_dir)
    )
    report["settings"] = {
        "request_timeout_s": args.timeout,
        "queue_size": args.queue_size,
        "max_tokens": args.max_tokens,
        "n_ctx": settings.generator.n_ctx,
        "generator": generator.name,
    }
    with Live(app) as live:
        for i in range(args.warmup):
            ask(live.base, QUESTIONS[i % len(QUESTIONS)], args.max_tokens, stream=False)
        report["estimates_before"] = estimates(live.base)
        print("estimates", report["estimates_before"], flush=True)
        for clients in (int(x) for x in args.bursts.split(",")):
            wait_idle(live.base)
            before = refusals(live.base)
            report[f"burst_{clients}"] = burst(live.base, clients, args.max_tokens)
            after = refusals(live.base)
            report[f"burst_{clients}"]["refused_by"] = {
                cause: int(n - before.get(cause, 0)) for cause, n in after.items()
            }
            print(f"burst {clients}", report[f"burst_{clients}"], flush=True)
        report["estimates_after"] = estimates(live.base)
    generator.close()
    report["load_avg_end"] = load_avg()
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
