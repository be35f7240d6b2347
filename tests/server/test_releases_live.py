"""A running server and index releases: it serves only the promoted release, follows promote
and rollback within two seconds, never shows a half-written or mixed index to any request,
names its release everywhere, and resolves an answer's lineage for as long as its release is
retained. Real uvicorn and LanceDB; the hash embedder and a fake generator, since the
behaviour under test is the plumbing, not the models."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from enclave.settings import Settings
from ingest.pipeline import ingest_paths
from models.embedder import HashEmbedder
from models.generator import FakeGenerator
from server.app import create_app
from store.db import Store
from store.lock import WriterLock
from store.releases import Releases
from tests.server import docsets
from tests.server.conftest import Live, live_server
from tests.server.docsets import SET_A, SET_B

EMB = HashEmbedder()
# made-up words that read as words (letters, vowels): the parse-quality check admits them
VOCAB = [
    a + b + c
    for a in ("kel", "mor", "tas", "vin", "dul", "pex")
    for b in ("a", "e", "i", "o")
    for c in ("ban", "dor", "fin", "gul", "lem", "nor", "pas", "rit", "sul", "tov")
]


def text_for(name: str, version: str) -> str:
    return docsets.text_for(name, version, VOCAB, 30)


def write_set(folder: Path, docs: dict[str, str]) -> None:
    docsets.write_set(folder, docs, VOCAB, 30)


def settings_for(root: Path, **release: Any) -> Settings:
    return Settings(
        data_dir=root / "data",
        embedder={"model": "hash"},
        security={"auth": False},
        retrieval={"top_k": 50, "candidates": 50, "min_similarity": 0.0},
        answer={"top_k": 50},  # an answer lists every passage
        release=release,
    )


def ingest(settings: Settings, docs: Path) -> dict[str, Any]:
    summary = ingest_paths(settings, [docs], prune=True, embedder=EMB)
    return summary.release


@contextmanager
def serving(settings: Settings) -> Iterator[Live]:
    app = create_app(
        settings, generator=FakeGenerator(), embedder=EMB, store=Store(settings.lance_dir)
    )
    with live_server(app, settings) as live:
        yield live


Seen = tuple[frozenset[str], str | None]


def listed(live: Live) -> Seen:
    """One request's documents (GET /v1/documents) and the release it names."""
    docs = httpx.get(live.v1 + "/documents", timeout=30).json()
    return frozenset(d["path"].rsplit("/", 1)[-1] for d in docs["data"]), docs["release"]


def searched(live: Live) -> Seen:
    """One search's documents (with the version of a2.txt's text) and the release named."""
    body = httpx.post(live.v1 + "/search", json={"query": "marker", "top_k": 50}, timeout=30)
    found = frozenset(
        h["source"].rsplit("/", 1)[-1] + (":" + h["text"].split()[2] if "a2.txt" in h["source"]
                                          else "")
        for h in body.json()["results"]
    )  # fmt: skip
    return found, body.json()["release"]


def seen(live: Live) -> tuple[frozenset[str], frozenset[str], str | None]:
    """Both views, when they agree (the release does not move in between)."""
    docs, search = listed(live), searched(live)
    assert docs[1] == search[1]
    return docs[0], search[0], docs[1]


def expected(docs: dict[str, str]) -> tuple[frozenset[str], frozenset[str]]:
    names = frozenset(docs)
    found = frozenset(n + (f":{v}" if n == "a2.txt" else "") for n, v in docs.items())
    return names, found


def switch(live: Live, settings: Settings, action: str, target: str | None = None) -> float:
    """Promote (``target``) or roll back in-process; the seconds until the server serves it."""
    with WriterLock(settings.lance_dir, "test"):
        releases = Releases(Store(settings.lance_dir))
        if action == "promote":
            assert target is not None
            releases.promote(releases.registry.get(target), by="test")
            want = target
        else:
            want = releases.rollback(by="test")[1].id
    started = time.monotonic()
    while listed(live)[1] != want or searched(live)[1] != want:
        assert time.monotonic() - started < 5, f"the server never served {want}"
        time.sleep(0.05)
    return time.monotonic() - started


def test_promote_and_rollback_reach_a_running_server_within_two_seconds(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write_set(docs, SET_A)
    settings = settings_for(tmp_path)
    assert ingest(settings, docs)["promoted"]
    with serving(settings) as live:
        assert seen(live) == (*expected(SET_A), "r-000001")
        ready = httpx.get(live.base_url + "/readyz", timeout=10).json()
        assert ready["index"]["release"] == "r-000001" and ready["index"]["documents"] == 8
        write_set(docs, SET_B)
        release = ingest(settings_for(tmp_path, auto_promote=False), docs)
        assert (release["id"], release["promoted"]) == ("r-000002", False)
        time.sleep(0.6)
        assert seen(live) == (*expected(SET_A), "r-000001")  # the candidate is not served
        assert switch(live, settings, "promote", "r-000002") < 2.0
        assert seen(live) == (*expected(SET_B), "r-000002")
        assert live.metric("enclave_release_info", release="r-000002") == 1.0
        assert live.metric("enclave_release_promoted_timestamp_seconds") > 0
        assert switch(live, settings, "rollback") < 2.0
        assert seen(live) == (*expected(SET_A), "r-000001")
        assert live.metric("enclave_release_info", release="r-000001") == 1.0


def test_queries_never_see_a_partial_or_mixed_index_through_ingest_promote_rollback(
    tmp_path: Path,
) -> None:
    docs = tmp_path / "docs"
    write_set(docs, SET_A)
    settings = settings_for(tmp_path)
    ingest(settings, docs)
    releases = {"r-000001": expected(SET_A)}
    observed: list[tuple[str, Seen]] = []
    stop = threading.Event()
    with serving(settings) as live:

        def loop() -> None:  # every request on its own: one view from start to end
            while not stop.is_set():
                observed.append(("list", listed(live)))
                observed.append(("search", searched(live)))

        thread = threading.Thread(target=loop)
        thread.start()
        try:
            time.sleep(0.5)
            write_set(docs, SET_B)
            assert ingest(settings, docs)["id"] == "r-000002"  # written while queried
            releases["r-000002"] = expected(SET_B)
            time.sleep(1.0)
            switch(live, settings, "rollback")
            time.sleep(0.5)
            switch(live, settings, "promote", "r-000002")
            time.sleep(0.5)
        finally:
            stop.set()
            thread.join()
    assert len(observed) > 20
    for kind, (docs_seen, release) in observed:
        assert release in releases, release
        want = releases[release][0 if kind == "list" else 1]
        assert docs_seen == want, (kind, release, sorted(docs_seen))
    assert {release for _, (_, release) in observed} == {"r-000001", "r-000002"}


def test_lineage_resolves_an_answer_after_later_releases_until_its_release_expires(
    tmp_path: Path,
) -> None:
    docs = tmp_path / "docs"
    write_set(docs, SET_A)
    settings = settings_for(tmp_path, keep=1)
    ingest(settings, docs)
    with serving(settings) as live:
        question = {"role": "user", "content": "marker a2.txt one"}
        reply = httpx.post(
            live.v1 + "/chat/completions", json={"model": "x", "messages": [question]},
            timeout=30,
        ).json()  # fmt: skip
        assert reply["enclave"]["release"] == "r-000001", reply["enclave"]
        paths = [s["path"] for s in reply["sources"]]
        assert any(p.endswith("a2.txt") for p in paths), (paths, reply["enclave"])
        source = next(s for s in reply["sources"] if s["path"].endswith("a2.txt"))
        original = (docs / "a2.txt").read_text()
        assert source["doc_sha256"] and source["chunk_id"].startswith(source["doc_id"])

        write_set(docs, SET_B)  # a2.txt changes, a0 and a1 go
        ingest(settings, docs)
        lineage = httpx.get(f"{live.v1}/lineage/{reply['id']}", timeout=30)
        assert lineage.status_code == 200, lineage.text
        body = lineage.json()
        assert body["release"] == "r-000001"
        passage = next(p for p in body["passages"] if p["chunk_id"] == source["chunk_id"])
        assert passage["text"].strip() == original.strip() and not passage["purged"]
        document = next(d for d in body["documents"] if d["path"].endswith("a2.txt"))
        assert document["sha256"] == source["doc_sha256"] and document["sha256_matches"]
        assert {d["path"].rsplit("/", 1)[-1] for d in body["documents"]} >= {"a0.txt"}

        write_set(docs, {**SET_B, "c0.txt": "one"})
        ingest(settings, docs)  # r-000003: keep=1 retains r-000002 only, r-000001 expires
        gone = httpx.get(f"{live.v1}/lineage/{reply['id']}", timeout=30)
        assert gone.status_code == 410 and gone.json()["error"]["code"] == "release_gone"
        unknown = httpx.get(f"{live.v1}/lineage/chatcmpl-{'0' * 24}", timeout=30)
        assert unknown.status_code == 404
