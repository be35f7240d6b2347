"""Subprocess runs of the real command: SIGKILL at random points, then a clean finish; and an
ingest run that must not open a single outbound connection (workers included)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from enclave.offline import offline_env
from ingest.pipeline import ingest_paths
from models.embedder import HashEmbedder
from store.db import Store
from tests.fixtures import make_docs
from tests.ingest.helpers import all_chunks, assert_consistent, settings_for, write_text_corpus

REPO = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env.update(offline_env())
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in [extra.pop("PYTHONPATH", ""), str(REPO), env.get("PYTHONPATH", "")] if p
    )
    env.update(extra)
    return env


def _ingest_cmd(docs: Path, data: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ingest.cli",
        "ingest",
        str(docs),
        "--data-dir",
        str(data),
        "--json",
    ]


def _versions(data: Path) -> int:
    """Commits so far in both tables (each delete, add and upsert is one)."""
    root = data / "lancedb"
    return sum(
        len(list((root / t / "_versions").glob("*.manifest")))
        for t in ("chunks.lance", "documents.lance")
        if (root / t / "_versions").is_dir()
    )


def test_sigkill_at_random_points_then_rerun_completes(tmp_path: Path) -> None:
    """Killed runs leave an index that opens; the next run finishes with no duplicate or
    orphan chunk and exactly the chunks of a clean single run. (The hash embedder keeps the
    runs short; crash safety depends on the pipeline and LanceDB, not on the model.)"""
    docs = tmp_path / "docs"
    write_text_corpus(docs, 40, seed=11)
    batch = {"write_batch_docs": 3, "workers": 2}
    # a clean single run, for reference
    ref_settings = settings_for(tmp_path / "ref", **batch)
    ref_settings.embedder.model = "hash"
    ingest_paths(ref_settings, [docs], embedder=HashEmbedder())
    ref_chunks = {(c["chunk_id"], c["text"]) for c in all_chunks(Store(ref_settings.lance_dir))}
    assert len(ref_chunks) > 40

    env = _env(
        ENCLAVE_EMBEDDER__MODEL="hash",
        ENCLAVE_INGEST__WRITE_BATCH_DOCS="3",
        ENCLAVE_INGEST__WORKERS="2",
    )
    data = tmp_path / "data"
    rng = random.Random(1234)
    kills = 0
    for commits in (1, 4, 8):
        # kill once the run has made a few more commits, a random instant later: between
        # a batch's chunk delete, its chunk add and its document upsert
        target = _versions(data) + commits
        proc = subprocess.Popen(
            _ingest_cmd(docs, data),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 300
        while proc.poll() is None and _versions(data) < target and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.2))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the command and its parser workers
            kills += 1
        proc.wait()
        store = Store(data / "lancedb")  # the index opens after every kill
        store.count_chunks()
        store.list_documents()
    assert kills >= 2

    final = subprocess.run(_ingest_cmd(docs, data), env=env, capture_output=True, text=True)
    assert final.returncode == 0, final.stderr[-2000:]
    assert json.loads(final.stdout)["failed"] == []
    store = Store(data / "lancedb")
    chunks = assert_consistent(store)
    assert {(c["chunk_id"], c["text"]) for c in chunks} == ref_chunks
    assert len(store.list_documents()) == 40
    assert all(d.status == "ok" for d in store.list_documents())
    again = ingest_paths(ref_settings.model_copy(update={"data_dir": data}), [docs])
    assert again.unchanged == 40 and again.chunks_added == 0


GUARD = """
import os, socket

_LOG = os.environ["ENCLAVE_TEST_EGRESS_LOG"]


def _local(address):
    host = address[0] if isinstance(address, tuple) else address
    local = ("127.0.0.1", "::1", "localhost", "0.0.0.0", "::")
    return host in local or str(host).startswith("127.")


def _record(what):
    with open(_LOG, "a") as fh:
        fh.write(f"{os.getpid()} {what}\\n")


_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex
_getaddrinfo = socket.getaddrinfo
_create_connection = socket.create_connection


def connect(self, address):
    if self.family != socket.AF_UNIX and not _local(address):
        _record(f"connect {address!r}")
        raise OSError("outbound connection blocked by the test")
    return _connect(self, address)


def connect_ex(self, address):
    if self.family != socket.AF_UNIX and not _local(address):
        _record(f"connect_ex {address!r}")
        return 111
    return _connect_ex(self, address)


def getaddrinfo(host, *args, **kwargs):
    if host is not None and not _local((host,)):
        _record(f"getaddrinfo {host!r}")
        raise socket.gaierror("name resolution blocked by the test")
    return _getaddrinfo(host, *args, **kwargs)


def create_connection(address, *args, **kwargs):
    if not _local(address):
        _record(f"create_connection {address!r}")
        raise OSError("outbound connection blocked by the test")
    return _create_connection(address, *args, **kwargs)


socket.socket.connect = connect
socket.socket.connect_ex = connect_ex
socket.getaddrinfo = getaddrinfo
socket.create_connection = create_connection
"""


def test_ingest_opens_no_outbound_connection(tmp_path: Path) -> None:
    """The real command with the bundled embedder over formats that reach for the network
    when misconfigured (unstructured's spaCy download and usage ping, the model hub)."""
    guard_dir = tmp_path / "guard"
    guard_dir.mkdir()
    (guard_dir / "sitecustomize.py").write_text(GUARD)
    log = tmp_path / "egress.log"
    log.write_text("")
    docs = tmp_path / "docs"
    formats = ("docx", "html", "pdf", "eml", "md", "pptx")
    make_docs.make_all(docs, formats)
    env = _env(PYTHONPATH=str(guard_dir), ENCLAVE_TEST_EGRESS_LOG=str(log))
    # the guard itself works: a child process that tries to connect is caught
    probe = subprocess.run(
        [sys.executable, "-c", "import socket; socket.create_connection(('192.0.2.1', 80), 1)"],
        env=env,
        capture_output=True,
        text=True,
    )
    assert probe.returncode != 0 and "192.0.2.1" in log.read_text()
    log.write_text("")

    res = subprocess.run(
        _ingest_cmd(docs, tmp_path / "data"), env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-3000:]
    summary: dict[str, Any] = json.loads(res.stdout)
    assert summary["ingested"] == len(formats) and summary["failed"] == []
    assert log.read_text() == "", f"outbound attempts: {log.read_text()[:2000]}"


def test_unchanged_rerun_loads_neither_torch_nor_lancedb(
    tmp_path: Path, bundled_embedder: Any
) -> None:
    docs = tmp_path / "docs"
    write_text_corpus(docs, 3, seed=8)
    settings = settings_for(tmp_path / "data", workers=1)
    ingest_paths(settings, [docs], embedder=bundled_embedder)
    code = (
        "import sys, json\n"
        "from enclave.settings import load_settings\n"
        "from ingest.pipeline import ingest_paths\n"
        f"s = load_settings(overrides={{'data_dir': {str(tmp_path / 'data')!r}}})\n"
        f"r = ingest_paths(s, [{str(docs)!r}])\n"
        "mods = ('torch', 'sentence_transformers', 'transformers', 'lancedb')\n"
        "heavy = [m for m in mods if m in sys.modules]\n"
        "print(json.dumps({'unchanged': r.unchanged, 'heavy': heavy, 'quick': r.from_snapshot}))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    # decided from the snapshot: neither the model nor LanceDB is imported
    assert json.loads(res.stdout) == {"unchanged": 3, "heavy": [], "quick": True}
