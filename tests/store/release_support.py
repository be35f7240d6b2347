"""Helpers of the release tests: an index written through the store, one release at a time."""

from __future__ import annotations

from pathlib import Path

from models.embedder import HashEmbedder
from store.db import Store
from store.records import ChunkRecord, DocumentRecord, doc_id_for_path
from store.registry import ReleaseRecord
from store.releases import Releases

EMB = HashEmbedder(dimension=32)


def records(
    names: dict[str, str], root: str = "/corp", status: str = "ok"
) -> tuple[list[DocumentRecord], list[ChunkRecord]]:
    """A document per name, two chunks each, from ``names`` (name -> text)."""
    docs, chunks = [], []
    for name, text in names.items():
        path = f"{root}/{name}"
        doc_id = doc_id_for_path(path)
        parts = [f"{text} first part of {name}", f"{text} second part of {name}"]
        vectors = EMB.embed(parts)
        docs.append(
            DocumentRecord(
                doc_id=doc_id,
                path=path,
                title=name,
                sha256=f"sha-{abs(hash(text)) % 10**12:012d}",
                chunk_count=2 if status == "ok" else 0,
                status=status,
                error="" if status == "ok" else "broken file",
            )
        )
        if status == "ok":
            chunks += [
                ChunkRecord(
                    chunk_id=f"{doc_id}-{i:05d}",
                    doc_id=doc_id,
                    ordinal=i,
                    text=t,
                    vector=vectors[i],
                    source=path,
                    title=name,
                )
                for i, t in enumerate(parts)
            ]
    return docs, chunks


def new_store(root: Path) -> tuple[Store, Releases]:
    store = Store(root / "lancedb")
    store.bind_embedder(EMB.name, EMB.dimension)
    return store, Releases(store)


def candidate(
    releases: Releases,
    write: dict[str, str] | None = None,
    delete: list[str] | None = None,
    failed: list[str] | None = None,
) -> ReleaseRecord:
    """One ingest run's worth of writes, recorded as a candidate."""
    store = releases.store
    prepared = releases.prepare_head()
    releases.begin_writes()
    if write:
        store.replace_documents(*records(write))
    if failed:
        store.replace_documents(*records(dict.fromkeys(failed, ""), status="failed"))
    if delete:
        store.delete_documents([doc_id_for_path(f"/corp/{n}") for n in delete])
    store.optimize()
    return releases.record_candidate(prepared.parent, {})


def paths(reader: object) -> set[str]:
    return {d.path.rsplit("/", 1)[-1] for d in reader.list_documents()}  # type: ignore[attr-defined]
