"""A real Enclave server for browser tests: documents ingested with the pipeline, the bundled
embedder and GGUF model, uvicorn on a free loopback port in a thread. Also the Chromium launch
arguments (Debian's chromium; no browser download).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """Debian's chromium (``make browser`` installs it); $ENCLAVE_CHROMIUM overrides."""
    path = os.environ.get("ENCLAVE_CHROMIUM") or "/usr/bin/chromium"
    if not Path(path).is_file():
        found = shutil.which("chromium")
        if found is None:
            raise RuntimeError("chromium is not installed: run `make browser`")
        path = found
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class LiveServer:
    url: str
    settings: Any
    ingest: Any  # IngestSummary
    _server: Any
    _thread: threading.Thread
    _generator: Any

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._generator.close()


def start_server(
    data_dir: Path,
    documents: Sequence[Path],
    embedder: Any,
    *,
    n_ctx: int = 2048,
    max_tokens: int = 160,
    top_k: int = 3,
) -> LiveServer:
    """Ingest ``documents`` into ``data_dir`` and serve them on 127.0.0.1 (real models)."""
    import uvicorn

    from enclave.settings import GeneratorSettings, RetrievalSettings, SecuritySettings, Settings
    from ingest.pipeline import ingest_paths
    from models.loading import load_generator
    from server.app import create_app
    from store.db import Store

    settings = Settings(
        data_dir=data_dir,
        generator=GeneratorSettings(n_ctx=n_ctx, max_tokens=max_tokens, temperature=0.0),
        retrieval=RetrievalSettings(top_k=top_k),
        security=SecuritySettings(
            auth=False
        ),  # the UI tests are not about API keys (loopback only)
    )
    store = Store(settings.lance_dir)
    summary = ingest_paths(settings, list(documents), embedder=embedder, store=store)
    generator = load_generator(settings.generator)
    app = create_app(settings, generator=generator, embedder=embedder, store=store)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="enclave-ui-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            generator.close()
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    return LiveServer(
        url=f"http://127.0.0.1:{port}",
        settings=settings,
        ingest=summary,
        _server=server,
        _thread=thread,
        _generator=generator,
    )
