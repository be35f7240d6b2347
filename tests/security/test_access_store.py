"""The ACL prefilter over a real LanceDB store: who sees what."""

from __future__ import annotations

import numpy as np
import pytest

from enclave.errors import ForbiddenError, NotFoundError
from enclave.security.access import (
    can_read_document,
    check_document_access,
    require_admin,
    search_filters_for,
    visible_groups,
)
from enclave.security.keys import LOCAL_PRINCIPAL, Principal
from rag.retrieval import fuse
from store.records import ChunkRecord, DocumentRecord, SearchFilters, doc_id_for_path
from store.schema import build_filter

DIM = 16
HR = Principal(name="hannah", key_id="k-hr", groups=("hr",))
FINANCE = Principal(name="fred", key_id="k-fin", groups=("finance",))
ADMIN = Principal(name="root", key_id="k-root", admin=True)
NOBODY = Principal(name="guest", key_id="k-guest")
SNEAKY = Principal(name="mallory", key_id="k-m", groups=("x') OR true --", "hr' OR '1'='1"))

DOCS = {"hr": ["hr"], "public": ["public"], "secret": [], "finance": ["finance", "board"]}


def _vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    from store.db import Store

    s = Store(tmp_path_factory.mktemp("acl") / "lancedb")
    s.bind_embedder("test-vectors", DIM)
    docs, chunks = [], []
    for i, (name, groups) in enumerate(DOCS.items()):
        path = f"/corp/{name}/budget.txt"
        doc_id = doc_id_for_path(path)
        docs.append(
            DocumentRecord(
                doc_id=doc_id,
                path=path,
                title=name,
                sha256=f"{i:064x}",
                chunk_count=2,
                groups=groups,
            )
        )
        for j in range(2):
            chunks.append(
                ChunkRecord(
                    chunk_id=f"{doc_id}-{j:05d}",
                    doc_id=doc_id,
                    ordinal=j,
                    text=f"The {name} budget for 2025, part {j}.",
                    vector=_vec(10 * i + j),
                    source=path,
                    title=name,
                    groups=groups,
                )
            )
    s.replace_documents(docs, chunks)
    s.optimize()
    return s


def _seen(store, principal: Principal, filters: SearchFilters | None = None) -> set[str]:
    f = search_filters_for(principal, filters)
    dense, sparse = store.vector_search(_vec(0), 30, f), store.text_search("budget", 30, f)
    hits = fuse(dense, sparse, top_k=20, dedup_threshold=1.0)
    return {h.source.split("/")[2] for h in hits}


def test_visible_groups() -> None:
    assert visible_groups(ADMIN) is None
    assert visible_groups(LOCAL_PRINCIPAL) is None
    assert visible_groups(HR) == ["hr", "public"]
    assert visible_groups(NOBODY) == ["public"]
    assert visible_groups(SNEAKY) == ["public"]  # odd names never reach the store


@pytest.mark.parametrize(
    ("principal", "expected"),
    [
        (HR, {"hr", "public"}),
        (FINANCE, {"finance", "public"}),
        (NOBODY, {"public"}),
        (SNEAKY, {"public"}),
        (ADMIN, {"hr", "public", "secret", "finance"}),
    ],
)
def test_hybrid_search_prefilter(store, principal: Principal, expected: set[str]) -> None:
    assert _seen(store, principal) == expected
    # vector-only and text-only paths apply the same prefilter
    f = search_filters_for(principal)
    dense = {r.source.split("/")[2] for r in store.vector_search(_vec(3), 20, f)}
    sparse = {r.source.split("/")[2] for r in store.text_search("budget", 20, f)}
    assert dense == expected and sparse == expected


def test_secret_document_with_no_groups_is_admin_only(store) -> None:
    for p in (HR, FINANCE, NOBODY, SNEAKY):
        assert "secret" not in _seen(store, p)
    assert "secret" in _seen(store, ADMIN)


def test_client_cannot_widen_groups_through_filters(store) -> None:
    asked = SearchFilters(groups=["hr", "finance", "x') OR true --"], path_prefix="/corp/")
    assert _seen(store, FINANCE, asked) == {"finance", "public"}
    narrowed = SearchFilters(path_prefix="/corp/public/")
    assert _seen(store, HR, narrowed) == {"public"}


def test_build_filter_never_embeds_odd_group_names() -> None:
    where = build_filter(SearchFilters(groups=["hr", "x') OR true --", "a' OR 1=1 --"]))
    assert where == "(array_has_any(groups, make_array('hr')))"
    assert build_filter(SearchFilters(groups=["x') OR true --"])) == "(false)"


def test_documents_listing_and_access(store) -> None:
    allowed = visible_groups(HR)
    listed = {d.title for d in store.list_documents(groups=allowed)}
    assert listed == {"hr", "public"}
    assert {d.title for d in store.list_documents(groups=visible_groups(ADMIN))} == set(DOCS)
    secret = store.get_document(doc_id_for_path("/corp/secret/budget.txt"))
    assert secret is not None
    assert not can_read_document(HR, secret) and can_read_document(ADMIN, secret)
    with pytest.raises(NotFoundError) as missing:
        check_document_access(HR, None)
    with pytest.raises(NotFoundError) as hidden:
        check_document_access(HR, secret)
    assert missing.value.message == hidden.value.message  # no existence oracle
    check_document_access(ADMIN, secret)
    with pytest.raises(ForbiddenError):
        require_admin(HR, "deleting documents")
    require_admin(ADMIN)
