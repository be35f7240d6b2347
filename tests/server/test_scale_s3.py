"""The index on an S3-compatible object store, served by several servers at once.

A real S3 server on loopback (moto's standalone server), real LanceDB writing to it through
its object store, real uvicorn servers; the hash embedder and a fake generator, since what is
under test is the plumbing. Two servers over one ``s3://`` index, each with its own local
data directory (keys, audit, usage), answer the same question identically and both follow a
promote and a rollback within two seconds; the writer lock is a lease object; a bad URI,
missing credentials or a missing bucket stop start-up with a clear error; a store that stops
answering gives 503 with Retry-After, never 500."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from enclave.errors import ConfigError
from enclave.settings import Settings
from ingest.pipeline import ingest_paths
from models.embedder import HashEmbedder
from models.generator import FakeGenerator
from server.app import create_app
from store.db import Store
from store.location import S3Options, parse_uri
from store.lock import WriterBusyError, WriterLock
from store.releases import Releases
from tests.server import docsets
from tests.server.conftest import Live, live_server
from tests.server.docsets import SET_A, SET_B

pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

EMB = HashEmbedder()
BUCKET = "enclave-index"
#: plain English: the parse-quality check admits it
PROSE = (
    "the policy covers annual leave travel expenses and the review of every contract signed "
    "by the finance team before the end of the quarter with approval from the director"
)
WORDS = PROSE.split()


def text_for(name: str, version: str) -> str:
    return docsets.text_for(name, version, WORDS, 40)


def write_set(folder: Path, docs: dict[str, str]) -> None:
    docsets.write_set(folder, docs, WORDS, 40)


CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "enclave-test",
    "AWS_SECRET_ACCESS_KEY": "enclave-test-secret",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A local S3-compatible server on 127.0.0.1 with one empty bucket."""
    import logging

    import boto3

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 request
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    previous = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    try:
        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()


@pytest.fixture(autouse=True)
def _credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)


def host_settings(
    root: Path, endpoint: str, prefix: str, options: dict[str, str] | None = None, **release: Any
) -> Settings:
    """One host's settings: its own data_dir, the shared index on S3."""
    store = {"uri": f"s3://{BUCKET}/{prefix}", "s3_endpoint": endpoint, "options": options or {}}
    return Settings(
        data_dir=root,
        embedder={"model": "hash"},
        security={"auth": False},
        retrieval={"top_k": 50, "candidates": 50, "min_similarity": 0.0},
        answer={"top_k": 50},  # an answer lists every passage
        release=release,
        store=store,
    )


def ask(live: Live) -> dict[str, Any]:
    """The same question to a server: its search hits and its answer, with their release."""
    search = httpx.post(
        live.v1 + "/search", json={"query": "marker a2.txt", "top_k": 5}, timeout=30
    )
    assert search.status_code == 200, search.text
    chat = httpx.post(
        live.v1 + "/chat/completions",
        json={"model": "enclave", "messages": [{"role": "user", "content": "marker a2.txt"}]},
        timeout=60,
    )
    assert chat.status_code == 200, chat.text
    body = chat.json()
    hits = [(h["chunk_id"], round(h["score"], 6), h["text"]) for h in search.json()["results"]]
    return {
        "release": search.json()["release"],
        "hits": hits,
        "answer": body["choices"][0]["message"]["content"],
        "sources": [s["chunk_id"] for s in body["sources"]],
        "answer_release": body["enclave"]["release"],
    }


def served_release(live: Live) -> str | None:
    release: str | None = httpx.get(live.base_url + "/readyz", timeout=10).json()["index"][
        "release"
    ]
    return release


def wait_both(lives: list[Live], want: str) -> float:
    started = time.monotonic()
    while any(served_release(live) != want for live in lives):
        assert time.monotonic() - started < 5, f"the servers never all served {want}"
        time.sleep(0.05)
    return time.monotonic() - started


def test_two_servers_over_one_s3_index_answer_alike_and_switch_together(
    tmp_path: Path, s3_endpoint: str
) -> None:
    docs = tmp_path / "docs"
    write_set(docs, SET_A)
    writer = host_settings(tmp_path / "writer", s3_endpoint, "two-servers")
    summary = ingest_paths(writer, [docs], prune=True, embedder=EMB)
    assert summary.release["promoted"] and summary.release["id"] == "r-000001"
    assert not (tmp_path / "writer" / "lancedb" / "chunks.lance").exists()  # it is on S3

    hosts = [host_settings(tmp_path / f"host{i}", s3_endpoint, "two-servers") for i in (1, 2)]
    apps = [create_app(s, generator=FakeGenerator(), embedder=EMB) for s in hosts]
    with live_server(apps[0], hosts[0]) as one, live_server(apps[1], hosts[1]) as two:
        first = ask(one)
        assert first["release"] == first["answer_release"] == "r-000001"
        assert first["hits"] and first["sources"]
        assert ask(two) == first

        write_set(docs, SET_B)
        candidate = ingest_paths(
            host_settings(tmp_path / "writer", s3_endpoint, "two-servers", auto_promote=False),
            [docs],
            prune=True,
            embedder=EMB,
        ).release
        assert (candidate["id"], candidate["promoted"]) == ("r-000002", False)
        time.sleep(0.6)
        assert served_release(one) == served_release(two) == "r-000001"

        with WriterLock(writer.index, "test promote"):
            releases = Releases(Store(writer.index))
            releases.promote(releases.registry.get("r-000002"), by="test")
        assert wait_both([one, two], "r-000002") < 2.0
        second = ask(one)
        assert second["release"] == "r-000002" and second != first
        assert ask(two) == second

        with WriterLock(writer.index, "test rollback"):
            Releases(Store(writer.index)).rollback(by="test")
        assert wait_both([one, two], "r-000001") < 2.0
        assert ask(one) == ask(two) == first

    # keys, audit and usage stayed on each host's disk; the index did not
    for host in hosts:
        assert not (host.data_dir / "lancedb" / "documents.lance").exists()


def test_the_writer_lock_on_s3_is_a_lease(tmp_path: Path, s3_endpoint: str) -> None:
    import boto3

    location = parse_uri(
        f"s3://{BUCKET}/lease", local_root=tmp_path, s3=S3Options(endpoint=s3_endpoint, lease_s=3)
    )
    client = boto3.client("s3", endpoint_url=s3_endpoint)
    key = "lease/_enclave/write.lock"
    with WriterLock(location, "enclave ingest (first)"):
        holder = json.loads(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        assert holder["command"] == "enclave ingest (first)" and holder["pid"] == os.getpid()
        refused: list[BaseException] = []

        def second() -> None:
            try:
                with WriterLock(location, "enclave ingest (second)"):
                    pass
            except WriterBusyError as exc:
                refused.append(exc)

        thread = threading.Thread(target=second)
        thread.start()
        thread.join()
        assert refused and "enclave ingest (first)" in str(refused[0])
        # past the lease, renewed meanwhile (every second): still held. Last-Modified and Date
        # have a resolution of one second, hence a lease of 3 s here (60 s by default)
        time.sleep(3.3)
        thread = threading.Thread(target=second)
        thread.start()
        thread.join()
        assert len(refused) == 2
    assert "Contents" not in client.list_objects_v2(Bucket=BUCKET, Prefix=key)  # released

    # a writer that died: its lease is not renewed, and lapses
    dead = {"pid": 1, "host": "gone", "command": "enclave ingest", "lease_s": 1}
    client.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(dead).encode())
    with pytest.raises(WriterBusyError, match="host gone"):
        WriterLock(location, "too early").acquire()
    time.sleep(2.2)
    with WriterLock(location, "after the lapse"):
        holder = json.loads(client.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        assert holder["command"] == "after the lapse"


def test_bad_locations_fail_at_start_with_a_clear_error(
    tmp_path: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def start(uri: str, **store: Any) -> str:
        settings = Settings(
            data_dir=tmp_path / "data",
            embedder={"model": "hash"},
            security={"auth": False},
            store={"uri": uri, **store},
        )
        with pytest.raises(ConfigError) as err:
            create_app(settings, generator=FakeGenerator(), embedder=EMB)
        return err.value.message

    assert "unsupported scheme 'gs'" in start("gs://bucket/index")
    assert "not a valid S3 bucket name" in start("s3://Bad_Bucket/index")
    assert "plain HTTP" in start(f"s3://{BUCKET}/x", s3_endpoint="http://10.1.2.3:9000")
    assert "does not exist" in start("s3://no-such-bucket/x", s3_endpoint=s3_endpoint)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    assert "no AWS credentials" in start(f"s3://{BUCKET}/x", s3_endpoint=s3_endpoint)


def test_a_store_that_stops_answering_gives_503_not_500(tmp_path: Path) -> None:
    import boto3

    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    docs = tmp_path / "docs"
    write_set(docs, SET_A)
    # no retries of a failed read (LanceDB's default backs off for seconds first)
    settings = host_settings(
        tmp_path / "host", endpoint, "outage", options={"client_max_retries": "0"}
    )
    ingest_paths(settings, [docs], prune=True, embedder=EMB)
    app = create_app(settings, generator=FakeGenerator(), embedder=EMB)
    with live_server(app, settings) as live:
        assert ask(live)["release"] == "r-000001"
        server.stop()
        started = time.monotonic()
        search = httpx.post(live.v1 + "/search", json={"query": "marker a2.txt"}, timeout=120)
        took = time.monotonic() - started
        assert search.status_code == 503, search.text
        assert search.json()["error"]["code"] == "index_unavailable"
        assert search.headers["Retry-After"] == "2"
        assert took < 5, took
        assert httpx.get(live.base_url + "/readyz", timeout=10).status_code == 200


def test_commands_over_a_missing_bucket_say_so_and_exit_2(
    tmp_path: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from enclave import cli as root

    monkeypatch.setenv("ENCLAVE_EMBEDDER__MODEL", "hash")
    monkeypatch.setenv("ENCLAVE_STORE__URI", "s3://no-such-bucket/index")
    monkeypatch.setenv("ENCLAVE_STORE__S3_ENDPOINT", s3_endpoint)
    root._register()
    docs = tmp_path / "docs"
    write_set(docs, {"a0.txt": "one"})
    data = str(tmp_path / "data")
    for args in (
        ["releases", "list", "--data-dir", data],
        ["status", "--data-dir", data],
        ["ingest", str(docs), "--data-dir", data],
    ):
        result = CliRunner().invoke(root.app, args)
        assert result.exit_code == 2, (args, result.output, result.exception)
        assert "bucket 'no-such-bucket' does not exist" in result.output, result.output


def test_reindex_on_s3_is_refused_clearly(s3_endpoint: str, tmp_path: Path) -> None:
    """Table sets are built on a local index only: a re-index on S3 says so, writes nothing."""
    from enclave.errors import UsageError
    from ingest.reindex import reindex
    from store.sets import set_location

    settings = host_settings(tmp_path / "writer", s3_endpoint, "reindex")
    with pytest.raises(UsageError, match="object storage") as refused:
        reindex(settings, [tmp_path])
    assert "s3://" in refused.value.message and "store.uri" in refused.value.message
    # a set's location is the index's child prefix, wherever the index lives
    child = set_location(settings.index, "t-000002")
    assert child.uri == f"s3://{BUCKET}/reindex/sets/t-000002"
    assert child.storage_options() == settings.index.storage_options()
