"""Hostile names and links: a file name that is not UTF-8, symbolic links out of the folders
given, FIFOs. Real files, the real walk and LanceDB; the hash embedder (nothing here depends
on the model)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import typer
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from enclave.settings import SecuritySettings, Settings
from ingest.cli import register
from ingest.pipeline import ingest_paths
from ingest.snapshot import SNAPSHOT_FILE
from models.embedder import HashEmbedder
from models.generator import FakeGenerator
from store.db import Store
from store.records import doc_id_for_path, fs_path, fs_path_for, normalise_path, path_key
from tests.ingest.helpers import all_chunks, assert_consistent, settings_for

BAD_NAME = b"bad\xff\xfe.txt"


def _hash_settings(data: Path, **ingest: Any) -> Settings:
    settings = settings_for(data, **ingest)
    settings.embedder.model = "hash"
    return settings


def _cli() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def _json(stdout: str) -> dict[str, Any]:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, stdout
    data: dict[str, Any] = json.loads(lines[0])
    return data


def test_path_keys_are_valid_utf8_and_lossless() -> None:
    raw = os.fsdecode(b"/d/a\\b\xff\xfe.txt")  # a backslash and two bytes that are not UTF-8
    key = path_key(raw)
    assert key == "/d/a\\\\b\\xff\\xfe.txt"
    key.encode("utf-8")  # storable as is
    assert path_key(key) == key  # idempotent
    assert os.fsencode(fs_path(key)) == b"/d/a\\b\xff\xfe.txt"  # the exact bytes back
    assert path_key("/d/plain é.txt") == "/d/plain é.txt"  # UTF-8 names are their own key
    # ids hash the bytes: unchanged for UTF-8 names, distinct for a look-alike UTF-8 name
    assert doc_id_for_path("/d/plain é.txt") == doc_id_for_path(b"/d/plain \xc3\xa9.txt")
    look_alike = "/d/a\\\\b\\xff\\xfe.txt"  # a UTF-8 name spelled like the key
    assert doc_id_for_path(look_alike) != doc_id_for_path(raw)
    assert fs_path_for(key, doc_id_for_path(raw)) == raw
    assert fs_path_for(key, doc_id_for_path(look_alike)) == look_alike


def test_a_file_name_that_is_not_utf8_is_ingested_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name reaches the store, the JSON summary, the snapshot, prune and the API as a
    valid UTF-8 key, and the document keeps an id of its own."""
    docs = tmp_path / "docs"
    docs.mkdir()
    bad = os.path.join(os.fsencode(docs), BAD_NAME)
    with open(bad, "wb") as fh:
        fh.write(b"The quokka ledger lists every harbor lantern.\n")
    (docs / "good.txt").write_text("A plain file about granite summits.\n")
    key = normalise_path(bad)
    assert key == f"{normalise_path(docs)}/bad\\xff\\xfe.txt"
    doc_id = doc_id_for_path(bad)

    monkeypatch.setenv("ENCLAVE_EMBEDDER__MODEL", "hash")
    data = tmp_path / "data"
    runner = CliRunner()
    cmd = ["ingest", str(docs), "--data-dir", str(data), "--json", "--prune"]
    first = runner.invoke(_cli(), cmd)
    assert first.exit_code == 0, first.output
    summary = _json(first.stdout)
    assert (summary["ingested"], summary["failed"]) == (2, [])
    store = Store(data / "lancedb")
    row = store.get_document(doc_id)
    assert row is not None and row.status == "ok" and row.path == key
    assert [c["source"] for c in store.document_chunks(doc_id)] == [key]
    assert os.fsencode(fs_path_for(row.path, row.doc_id)) == bad
    assert_consistent(store)
    # the records a run leaves are strict UTF-8 JSON
    json.loads((data / "last-ingest.json").read_bytes().decode("utf-8"))
    snapshot = json.loads((data / SNAPSHOT_FILE).read_bytes().decode("utf-8"))
    assert key in snapshot["docs"]

    again = _json(runner.invoke(_cli(), cmd).stdout)  # unchanged: --prune keeps the file
    assert (again["unchanged"], again["deleted"]) == (2, 0)
    settings = _hash_settings(data)
    quick = ingest_paths(settings, [docs])  # without --prune: decided from the snapshot
    assert quick.from_snapshot and quick.unchanged == 2

    status = runner.invoke(_cli(), ["status", "--data-dir", str(data), "--json"])
    assert status.exit_code == 0 and _json(status.stdout)["documents"] == 2

    app_settings = Settings(data_dir=data, security=SecuritySettings(auth=False))
    from server.app import create_app

    app = create_app(
        app_settings, generator=FakeGenerator(context_size=2048), embedder=HashEmbedder(),
        store=store,
    )  # fmt: skip
    with TestClient(app) as client:
        listed = client.get("/v1/documents")
        assert key in [d["path"] for d in listed.json()["data"]]
        listed.content.decode("utf-8")  # strict UTF-8 on the wire
        one = client.get(f"/v1/documents/{doc_id}")
        assert one.status_code == 200 and one.json()["path"] == key
        hits = client.post("/v1/search", json={"query": "quokka ledger", "top_k": 1}).json()
        assert hits["results"][0]["source"] == key

    os.unlink(bad)
    pruned = _json(runner.invoke(_cli(), cmd).stdout)
    assert (pruned["deleted"], pruned["unchanged"]) == (1, 1)
    assert store.get_document(doc_id) is None


def _links(tmp_path: Path) -> tuple[Path, Path]:
    """docs/ with one real file, a link to it, and every kind of entry that must not be
    ingested: links out of docs/, a broken link, a FIFO. Returns (docs, outside file)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "real.txt").write_text("The inside file speaks of cobalt meadows.\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("The outside secret mentions falcon canyons.\n")
    os.symlink(docs / "real.txt", docs / "alias.txt")  # inside: followed, ingested once
    os.symlink(secret, docs / "secret.txt")
    os.symlink("..", docs / "up")
    os.symlink("/etc/passwd", docs / "passwd.txt")
    os.symlink("/proc/self/environ", docs / "environ.txt")
    os.symlink(docs / "missing.txt", docs / "broken.txt")
    os.mkfifo(docs / "pipe.txt")
    return docs, secret


def test_links_out_of_the_folder_and_fifos_are_skipped_with_a_reason(tmp_path: Path) -> None:
    docs, _ = _links(tmp_path)
    settings = _hash_settings(tmp_path / "data")
    summary = ingest_paths(settings, [docs], embedder=HashEmbedder(), groups=["public"])
    assert (summary.ingested, summary.files_seen, summary.failed) == (1, 1, [])
    skipped = {Path(s["path"]).name: s["reason"] for s in summary.skipped}
    assert set(skipped) == {"secret.txt", "up", "passwd.txt", "environ.txt", "broken.txt",
                            "pipe.txt"}  # fmt: skip
    for name in ("secret.txt", "passwd.txt", "environ.txt"):
        assert skipped[name].startswith("symbolic link to a file outside the ingested folders")
        assert "--follow-links" in skipped[name]
    assert skipped["up"].startswith("symbolic link to a folder outside")
    assert skipped["broken.txt"] == "broken symbolic link"
    assert skipped["pipe.txt"] == "not a regular file (FIFO)"
    store = Store(settings.lance_dir)
    assert [d.path for d in store.list_documents()] == [normalise_path(docs / "real.txt")]
    assert {tuple(c["groups"]) for c in all_chunks(store)} == {("public",)}
    # the unchanged re-run (from the snapshot) lists them too
    again = ingest_paths(settings, [docs], embedder=HashEmbedder())
    assert again.from_snapshot and again.skipped == summary.skipped


def test_followed_links_get_groups_from_their_target_only(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "real.txt").write_text("The inside file speaks of cobalt meadows.\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("The outside secret mentions falcon canyons.\n")
    (outside / "public.txt").write_text("The outside notice mentions willow rivers.\n")
    os.symlink(outside / "secret.txt", docs / "secret.txt")
    os.symlink(outside / "public.txt", docs / "public.txt")
    policy = tmp_path / "acl.toml"
    policy.write_text(
        '[[rule]]\nglob = "**/docs/**"\ngroups = ["docs-readers"]\n'  # the links' location
        '[[rule]]\nglob = "**/outside/public.txt"\ngroups = ["notices"]\n'  # one target
    )
    settings = _hash_settings(tmp_path / "data", follow_external_links=True)
    settings.security.policy_file = policy
    summary = ingest_paths(settings, [docs], embedder=HashEmbedder(), groups=["public"])
    assert (summary.ingested, summary.failed, summary.skipped) == (3, [], [])
    store = Store(settings.lance_dir)
    groups = {Path(d.path).name: d.groups for d in store.list_documents()}
    assert groups == {
        "real.txt": ["docs-readers", "public"],  # below the root: policy and --groups
        "secret.txt": [],  # outside: nothing matches its real path, admins only
        "public.txt": ["notices"],  # outside: only what its real path is granted
    }
    paths = {d.path for d in store.list_documents()}
    assert normalise_path(outside / "secret.txt") in paths  # known by its real path
