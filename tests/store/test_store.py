"""The LanceDB layer against a real LanceDB in a temporary folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from enclave.errors import EmbedderMismatchError, UsageError
from models.embedder import HashEmbedder
from rag.retrieval import fuse
from store import ChunkRecord, DocumentRecord, SearchFilters, Store, doc_id_for_path
from store.schema import build_filter

EMB = HashEmbedder(dimension=32)


def hybrid(store: Store, text: str, vector: np.ndarray, *, top_k: int, **kw):  # type: ignore[no-untyped-def]
    """Both searches of the store, fused as retrieval fuses them."""
    filters = kw.pop("filters", None)
    dense = store.vector_search(vector, 30, filters)
    sparse = store.text_search(text, 30, filters)
    return fuse(dense, sparse, top_k=top_k, **kw)


def _doc(
    name: str, texts: list[str], groups: list[str] | None = None
) -> tuple[DocumentRecord, list[ChunkRecord]]:
    path = f"/corp/{name}"
    doc_id = doc_id_for_path(path)
    vecs = EMB.embed(texts)
    chunks = [
        ChunkRecord(
            chunk_id=f"{doc_id}-{i:05d}",
            doc_id=doc_id,
            ordinal=i,
            text=t,
            vector=vecs[i],
            source=path,
            title=name,
            page=i + 1,
            heading_path=["Top", f"Section {i}"],
            groups=groups or [],
        )
        for i, t in enumerate(texts)
    ]
    doc = DocumentRecord(
        doc_id=doc_id, path=path, title=name, chunk_count=len(chunks), groups=groups or []
    )
    return doc, chunks


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "lancedb")
    s.bind_embedder(EMB.name, EMB.dimension)
    return s


def test_doc_id_is_stable_and_path_normalised(tmp_path: Path) -> None:
    f = tmp_path / "a.txt"
    f.write_text("x")
    assert doc_id_for_path(f) == doc_id_for_path(tmp_path / "sub" / ".." / "a.txt")
    assert doc_id_for_path(f) != doc_id_for_path(tmp_path / "b.txt")


def test_replace_never_duplicates(store: Store) -> None:
    doc, chunks = _doc("a.txt", ["alpha one", "alpha two", "alpha three"])
    store.replace_documents([doc], chunks)
    store.replace_documents([doc], chunks)
    assert store.count_chunks() == 3
    doc2, chunks2 = _doc("a.txt", ["beta only"])
    deleted = store.replace_documents([doc2], chunks2)
    assert deleted == 3
    assert [r["text"] for r in store.document_chunks(doc.doc_id)] == ["beta only"]
    assert store.count_documents() == 1


def test_delete_and_orphans(store: Store) -> None:
    a, ca = _doc("a.txt", ["apples are red"])
    b, cb = _doc("b.txt", ["bananas are yellow"])
    store.replace_documents([a, b], ca + cb)
    assert store.delete_documents([a.doc_id]) == 1
    assert store.get_document(a.doc_id) is None
    assert store.count_chunks() == 1
    # a chunk whose document row never got written (a killed run) is an orphan
    _, cc = _doc("c.txt", ["cherries"])
    table = store.chunks_table(create=True)
    import pyarrow as pa

    from store.schema import chunks_schema

    table.add(pa.Table.from_pylist([cc[0].to_row()], schema=chunks_schema(EMB.dimension)))
    assert store.remove_orphan_chunks() == 1
    assert store.count_chunks() == 1


def test_embedder_mismatch_refused(store: Store) -> None:
    with pytest.raises(EmbedderMismatchError, match="re-embed"):
        store.bind_embedder("another-model", 384)
    store.bind_embedder(EMB.name, EMB.dimension)  # same one is fine


def test_hybrid_search_finds_by_words_and_filters(store: Store) -> None:
    a, ca = _doc(
        "hr/policy.txt", ["vacation policy allows 25 days", "parental leave rules"], ["hr"]
    )
    b, cb = _doc(
        "fin/budget.txt", ["the budget for 2027 is approved", "vacation budget"], ["finance"]
    )
    store.replace_documents([a, b], ca + cb)
    store.optimize()
    q = "vacation days"
    hits = hybrid(store, q, EMB.embed_query(q), top_k=4)
    assert hits[0].text == "vacation policy allows 25 days"
    only_fin = hybrid(
        store, q, EMB.embed_query(q), top_k=4, filters=SearchFilters(groups=["finance"])
    )
    assert {h.doc_id for h in only_fin} == {b.doc_id}
    prefix = hybrid(
        store, q, EMB.embed_query(q), top_k=4, filters=SearchFilters(path_prefix="/corp/hr/")
    )
    assert {h.source for h in prefix} == {"/corp/hr/policy.txt"}
    none = hybrid(store, q, EMB.embed_query(q), top_k=4, filters=SearchFilters(groups=[]))
    assert none == []


def test_filters_cannot_be_injected() -> None:
    where = build_filter(SearchFilters(groups=["hr", "x') OR true --"], path_prefix="a'b"))
    assert where is not None
    assert "OR true" not in where
    assert "'a''b'" in where
    with pytest.raises(UsageError):
        build_filter(SearchFilters(doc_ids=["1 OR 1=1"]))


def test_set_groups_without_reembedding(store: Store) -> None:
    a, ca = _doc("a.txt", ["quarterly numbers"], ["finance"])
    store.replace_documents([a], ca)
    before = store.document_chunks(a.doc_id)
    store.set_groups([a.doc_id], ["hr"])
    q = "quarterly numbers"
    assert (
        hybrid(store, q, EMB.embed_query(q), top_k=2, filters=SearchFilters(groups=["finance"]))
        == []
    )
    assert (
        len(hybrid(store, q, EMB.embed_query(q), top_k=2, filters=SearchFilters(groups=["hr"])))
        == 1
    )
    assert store.document_chunks(a.doc_id)[0]["text"] == before[0]["text"]
    doc = store.get_document(a.doc_id)
    assert doc is not None and doc.groups == ["hr"]
