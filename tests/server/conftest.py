"""Server fixtures: a real uvicorn on loopback (free port, background thread), documents the
tests write themselves, ingested with the real pipeline and the bundled embedder, and the
bundled SmolLM2 GGUF (n_ctx 2048, loaded once per session)."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from enclave.settings import GeneratorSettings, SecuritySettings, Settings
from models.generator import FakeGenerator, StreamEvent

DOCS: dict[str, str] = {
    "falcon.md": (
        "# Project Falcon\n\n"
        "Project Falcon is the internal codename for the new billing platform. The Falcon "
        "launch date is 14 March 2027 and its budget is 3.2 million euros. The project lead "
        "is Ingrid Maelstrom.\n\n"
        "## Risks\n\n"
        "The main risk is the migration of legacy invoices from the mainframe.\n"
    ),
    "leave.txt": (
        "Employee leave policy.\n\n"
        "Every employee receives 27 days of paid annual leave. Unused leave can be carried "
        "over until the end of April of the following year. Parental leave is 16 weeks at "
        "full pay.\n"
    ),
    "security.md": (
        "# Security handbook\n\n"
        "Laptops must use full-disk encryption. Passwords must be at least 14 characters "
        "long. Report phishing emails to the security desk at extension 4242.\n"
    ),
}


@dataclass
class Live:
    """A running server."""

    app: FastAPI
    base_url: str
    settings: Settings

    @property
    def v1(self) -> str:
        return self.base_url + "/v1"

    def metric(self, name: str, **labels: str) -> float:
        """One sample of /metrics (0.0 when absent)."""
        text = httpx.get(self.base_url + "/metrics", timeout=10).text
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            m = re.match(r"^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)$", line)
            if not m or m.group(1) != name:
                continue
            got = m.group(2) or ""
            pairs = sorted(re.findall(r'(\w+)="([^"]*)"', got))
            if ",".join(f'{k}="{v}"' for k, v in pairs) == want:
                return float(m.group(3))
        return 0.0


@contextmanager
def live_server(app: FastAPI, settings: Settings, ready_timeout: float = 120) -> Iterator[Live]:
    """Run ``app`` on a real uvicorn bound to 127.0.0.1 on a free port, in a thread."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout
    while httpx.get(base + "/readyz", timeout=10).status_code != 200:
        if time.monotonic() > deadline:
            raise RuntimeError("the server never became ready")
        time.sleep(0.1)
    try:
        yield Live(app=app, base_url=base, settings=settings)
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def write_docs(folder: Path, docs: dict[str, str]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in docs.items():
        path = folder / name
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def real_generator() -> Any:
    """The bundled SmolLM2-135M GGUF, n_ctx 2048, one thread (steadier on a busy machine)."""
    from models.loading import load_generator

    gen = load_generator(GeneratorSettings(n_ctx=2048, n_threads=1))
    yield gen
    gen.close()


@pytest.fixture(scope="module")
def rag_server(
    tmp_path_factory: pytest.TempPathFactory, bundled_embedder: Any, real_generator: Any
) -> Iterator[Live]:
    """Real uvicorn + real embedder + real SmolLM2 over documents ingested with the pipeline."""
    from ingest.pipeline import ingest_paths
    from server.app import create_app
    from store.db import Store

    root = tmp_path_factory.mktemp("rag")
    docs = root / "docs"
    write_docs(docs, DOCS)
    settings = Settings(
        data_dir=root / "data",
        generator={"max_tokens": 64, "n_ctx": 2048},
        server={"answer_reserve_tokens": 48},
        retrieval={"top_k": 3},
        security=SecuritySettings(auth=False),  # not about auth: tests/security covers keys
    )
    summary = ingest_paths(settings, [docs], embedder=bundled_embedder)
    assert summary.ingested == len(DOCS), summary.to_dict()
    store = Store(settings.lance_dir)
    app = create_app(settings, generator=real_generator, embedder=bundled_embedder, store=store)
    with live_server(app, settings) as live:
        yield live


class BlockingGenerator(FakeGenerator):
    """A fake whose generations wait for ``release`` before producing anything."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.release = threading.Event()
        self.started = threading.Semaphore(0)

    def stream(self, messages: Any, **kwargs: Any) -> Iterator[StreamEvent]:
        inner = super().stream(messages, **kwargs)

        def gen() -> Iterator[StreamEvent]:
            self.started.release()
            self.release.wait(30)
            yield from inner

        return gen()


def hash_store(root: Path, docs: dict[str, str]) -> tuple[Any, Any]:
    """A store over ``docs`` (one chunk each) with the hash embedder: for tests whose subject
    is the server's plumbing (queue, cancellation, fuzzing), not retrieval quality."""
    from models.embedder import HashEmbedder
    from store.db import Store
    from store.records import ChunkRecord, DocumentRecord, doc_id_for_path

    emb = HashEmbedder()
    store = Store(root / "lancedb")
    store.bind_embedder(emb.name, emb.dimension)
    texts = list(docs.values())
    vecs = emb.embed(texts)
    records, chunks = [], []
    for i, (name, text) in enumerate(docs.items()):
        path = str(root / name)
        doc_id = doc_id_for_path(path)
        records.append(DocumentRecord(doc_id=doc_id, path=path, title=name, chunk_count=1))
        chunks.append(
            ChunkRecord(
                chunk_id=f"{doc_id}-00000",
                doc_id=doc_id,
                ordinal=0,
                text=text,
                vector=vecs[i],
                source=path,
                title=name,
            )
        )
    store.replace_documents(records, chunks)
    store.optimize()
    return store, emb
