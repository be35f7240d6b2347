"""Helpers for the security tests against a real server (real uvicorn on loopback, the real
pipeline and the bundled embedder)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from openai import OpenAI

from enclave.security.keys import KeyStore
from enclave.settings import Settings
from models.generator import FakeGenerator, Message
from tests.server.conftest import Live, live_server

CANARY = re.compile(r"canary-[0-9a-f]{12}")


class EchoGenerator(FakeGenerator):
    """A fake model whose answer is every source text it was shown, citing them all.

    What the leak tests check is which sources reach the prompt and the citations, not the
    prose: echoing the source blocks makes any leaked source text visible in the answer.
    """

    def answer_for(self, messages: list[Message]) -> str:
        user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        sources = user.split("\n\nQuestion:")[0]
        n = sources.count("<source ")
        marks = "".join(f"[{i}]" for i in range(1, n + 1))
        return f"{sources} {marks}".strip()


def make_key(settings: Settings, name: str, **kwargs: Any) -> str:
    _, key = KeyStore(settings.data_dir).create(name, **kwargs)
    return key


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def sdk(live: Live, key: str) -> OpenAI:
    return OpenAI(base_url=live.v1, api_key=key, max_retries=0, timeout=120)


@contextmanager
def serve(settings: Settings, generator: Any, embedder: Any) -> Iterator[Live]:
    """The real app over ``settings.data_dir``'s index, security from the settings."""
    from server.app import create_app
    from store.db import Store

    app = create_app(
        settings, generator=generator, embedder=embedder, store=Store(settings.lance_dir)
    )
    with live_server(app, settings) as live:
        yield live


def canaries(text: str) -> set[str]:
    return set(CANARY.findall(text))


def post(client: httpx.Client, path: str, key: str, body: dict[str, Any]) -> httpx.Response:
    return client.post(path, json=body, headers=auth(key))


def ingest(settings: Settings, folder: Path, embedder: Any, groups: list[str] | None) -> None:
    from ingest.pipeline import ingest_paths

    summary = ingest_paths(settings, [folder], embedder=embedder, groups=groups)
    assert not summary.failed, summary.to_dict()
