"""The vector index lifecycle on a real LanceDB index, with a threshold of a few hundred rows:
rows added after a build are found, the ACL prefilter keeps its full top_k through the ANN
path, readers answer while an index builds, and releases keep working with an index."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from enclave.settings import Settings
from store.ann import VECTOR_INDEX, AnnTuning, build_vector_index, index_named
from store.db import Store
from store.index_build import optimize
from store.live import LiveIndex
from store.records import ChunkRecord, DocumentRecord, SearchFilters, doc_id_for_path
from store.releases import Releases

DIM = 32
PER_DOC = 10
TUNING = AnnTuning(ann_min_rows=300, background=False, filtered_exact_rows=0, ef=100)


def _write(store: Store, start: int, docs: int, rng: np.random.Generator, rare_every: int = 25):
    """``docs`` documents of 10 chunks; one in ``rare_every`` readable by ``rare`` too."""
    drecs, crecs = [], []
    for i in range(start, start + docs):
        path = f"/corp/doc{i:05d}.txt"
        doc_id = doc_id_for_path(path)
        groups = ["all", "rare"] if i % rare_every == 0 else ["all"]
        vectors = rng.standard_normal((PER_DOC, DIM)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        drecs.append(DocumentRecord(doc_id, path, chunk_count=PER_DOC, groups=groups))
        crecs += [
            ChunkRecord(
                f"{doc_id}-{k:05d}", doc_id, k, f"word{i} part {k}", vectors[k], path, groups=groups
            )
            for k in range(PER_DOC)
        ]
    store.replace_documents(drecs, crecs)
    return {c.chunk_id: c.vector for c in crecs}


def _release(releases: Releases, write: tuple[int, int], rng: np.random.Generator):
    prepared = releases.prepare_head()
    releases.begin_writes()
    vectors = _write(releases.store, *write, rng)
    out = releases.store.compact(TUNING)
    rec = releases.record_candidate(prepared.parent, {})
    releases.promote(rec, by="test")
    return rec, vectors, out


@pytest.fixture()
def indexed(tmp_path: Path):
    store = Store(tmp_path / "lancedb", tuning=TUNING)
    store.bind_embedder("random", DIM)
    releases = Releases(store)
    rng = np.random.default_rng(0)
    rec, vectors, out = _release(releases, (0, 50), rng)  # 500 chunks: past the threshold
    assert out["vector_build_s"] > 0 and "groups_idx" in out["scalar_built"]
    return store, releases, rec, vectors, rng


def test_rows_added_after_the_build_are_found(indexed) -> None:
    store, _, _, _, rng = indexed
    new = _write(store, 50, 3, rng)  # 30 rows the index does not cover
    assert store.chunks_table().index_stats(VECTOR_INDEX).num_unindexed_rows == 30
    assert store.vector_searcher().path == "ann"
    for chunk_id, vector in list(new.items())[:10]:
        assert store.vector_search(vector, 5)[0].chunk_id == chunk_id


def test_sparse_group_gets_its_full_top_k_through_the_ann_prefilter(indexed) -> None:
    store, _, _, vectors, rng = indexed
    live = LiveIndex(store.path, check_s=0, tuning=TUNING)
    reader = live.reader()
    assert reader.vector_searcher().path == "ann"  # type: ignore[union-attr]
    rare = SearchFilters(groups=["rare"])  # 2 documents of 50: 20 chunks, 4%
    allowed = {
        cid
        for cid in vectors
        if cid.startswith(tuple(doc_id_for_path(f"/corp/doc{i:05d}.txt") for i in (0, 25)))
    }
    searcher = reader.vector_searcher()
    where = "array_has_any(groups, make_array('rare'))"
    for _ in range(10):
        q = rng.standard_normal(DIM).astype(np.float32)
        found = reader.vector_search(q, 15, rare)
        assert len(found) == 15 and {c.chunk_id for c in found} <= allowed
        # the ANN index itself, prefiltered, not the exact fallback
        assert len(searcher._lance(q, 15, where, ann=True)) == 15  # type: ignore[union-attr]
    # the exact path over a small filtered set gives the same answer
    exact = AnnTuning(ann_min_rows=300, filtered_exact_rows=1000)
    reader.tuning = exact
    reader._search = None
    got = reader.vector_search(q, 15, rare)
    assert {c.chunk_id for c in got} == {c.chunk_id for c in found}


def test_small_filtered_set_ranked_exactly_from_memory(indexed, monkeypatch) -> None:
    """A prefilter matching few rows is ranked exactly over its vectors, read once and kept
    (same answer and similarities as LanceDB's flat scan); the kept sets stay bounded."""
    import store.vector_search as ann

    store, _, _, _, rng = indexed
    # without the row cache: its own reads of the vectors (with it: test_row_cache_...)
    tuning = AnnTuning(ann_min_rows=300, filtered_exact_rows=1000, row_cache_mb=0)
    reader = LiveIndex(store.path, check_s=0, tuning=tuning).reader()
    searcher = reader.vector_searcher()
    assert searcher is not None and searcher.path == "ann"
    assert searcher.load_row_cache() is None  # the server's background attempt, done
    where = "array_has_any(groups, make_array('rare'))"
    for _ in range(5):
        q = rng.standard_normal(DIM).astype(np.float32)
        got = reader.vector_search(q, 15, SearchFilters(groups=["rare"]))
        flat = searcher._lance(q, 15, where, ann=False)
        assert [c.chunk_id for c in got] == [c.chunk_id for c in flat]
        assert [c.text for c in got] == [c.text for c in flat]
        assert np.allclose([c.similarity for c in got], [c.similarity for c in flat], atol=1e-5)
    key = f"({where})"  # build_filter's
    assert list(searcher._subsets) == [key] and searcher._counts[key] == 20
    reads = []
    monkeypatch.setattr(searcher.table, "search", lambda *a, **k: reads.append(a) or 1 / 0)
    reader.vector_search(q, 15, SearchFilters(groups=["rare"]))  # no read of the vectors
    assert reads == []
    monkeypatch.undo()
    monkeypatch.setattr(ann, "SUBSET_CACHE_BYTES", 25 * DIM * 4)
    for prefix in ("/corp/doc0000", "/corp/doc0001"):  # 100 rows each: read, not kept
        assert len(reader.vector_search(q, 5, SearchFilters(path_prefix=prefix))) == 5
    assert list(searcher._subsets) == [key] and searcher._subset_bytes == 20 * DIM * 4


@pytest.mark.parametrize("text", ["file", "no-file", "full-disk"])
def test_row_cache_answers_as_a_full_read_reading_only_row_ids(
    indexed, monkeypatch, text: str
) -> None:
    """With the row cache a search asks LanceDB for row ids (and scores) only, ranks the
    index's candidates by the cached vectors and takes every column from the cache, the text
    from its text file (where none can be made: the text read with the search, or by row id
    for a small filtered set); every hit is the same as with every column read with the
    search: vector (ANN, prefiltered ANN, small filtered set) and full-text (float16
    vectors: cosines within 2e-3)."""
    import store.reader
    import store.row_cache
    import store.vector_search
    from store.row_cache import RowCache

    def no_room(*args: Any) -> Any:
        raise OSError(28, "No space left on device")

    text_file = text == "file"
    if text == "no-file":  # none can be made
        monkeypatch.setattr(store.row_cache, "TextFile", no_room)
    elif text == "full-disk":  # made, but its writes fail: the cache holds without it
        monkeypatch.setattr(store.row_cache.os, "pwrite", no_room)
    store_, _, _, _, rng = indexed
    tuning = AnnTuning(ann_min_rows=300, filtered_exact_rows=30)
    plain = LiveIndex(store_.path, check_s=0, tuning=replace(tuning, row_cache_mb=0)).reader()
    cached = LiveIndex(store_.path, check_s=0, tuning=tuning).reader()
    off, on = plain.vector_searcher(), cached.vector_searcher()
    assert off is not None and on is not None and on.path == off.path == "ann"
    assert off.load_row_cache() is None and on.load_row_cache() is not None
    assert on.row_cache is not None and len(on.row_cache.rowids) == 500
    assert on.row_cache.has_text is text_file
    assert RowCache.load(on.table, 1_000) is None  # past row_cache_mb: not held
    reads: list[list[str]] = []
    take = on._take
    monkeypatch.setattr(on, "_take", lambda ids, cols: reads.append(cols) or take(ids, cols))
    searched: list[list[str]] = []  # the columns LanceDB's searches returned
    for module in (store.vector_search, store.reader):
        run = module.run_query

        def spy(table: Any, build: Any, run: Any = run) -> Any:
            data = run(table, build)
            if "_rowid" in data.column_names:  # the cached reader's (the plain one's: none)
                searched.append(data.column_names)
            return data

        monkeypatch.setattr(module, "run_query", spy)
    rare = SearchFilters(groups=["rare"])  # 20 rows: ranked from memory
    common = SearchFilters(groups=["all"])  # 500: the ANN index, prefiltered
    for filters in (None, rare, common):
        for _ in range(3):
            q = rng.standard_normal(DIM).astype(np.float32)
            got, want = cached.vector_search(q, 12, filters), plain.vector_search(q, 12, filters)
            assert len(got) == 12
            assert [c.chunk_id for c in got] == [c.chunk_id for c in want]
            for a, b in zip(got, want, strict=True):
                assert _columns(a) == _columns(b) and a.vector is b.vector is None
                assert a.similarity == pytest.approx(b.similarity, abs=2e-3)
    for words in ("word7 part", "word25 part 3", "word49"):
        got = _ties_sorted(cached.text_search(words, 600))
        want = _ties_sorted(plain.text_search(words, 600))
        assert got and [c.chunk_id for c in got] == [c.chunk_id for c in want]
        for a, b in zip(got, want, strict=True):
            assert _columns(a) == _columns(b) and a.text_score == b.text_score
            assert a.vector is not None and np.allclose(a.vector, b.vector, atol=2e-3)
    assert searched and all(("text" in cols) is not text_file for cols in searched)
    if text_file:
        assert reads == []  # nothing read by row id
    else:
        assert reads and all(cols == ["text"] for cols in reads)  # the small filtered sets


def test_text_file_holds_each_row_text(tmp_path: Path) -> None:
    """The row cache's text file gives back each row's text as written: rows out of order,
    several chunks, a sliced array, empty, missing and non-ASCII texts; it leaves no file."""
    import pyarrow as pa

    from store.row_cache import TextFile

    texts = ["alpha", "", None, "Grüße, 東京", "x" * 5000, "last"]
    column = pa.chunked_array([pa.array(texts[:2]), pa.array(["skip", *texts[2:]])[1:]])
    where = tmp_path / "index"
    where.mkdir()
    file = TextFile(10, str(where))
    positions = np.array([7, 0, 3, 9, 1, 4], dtype=np.int64)
    file.write(positions, column)
    file.write(np.array([5], dtype=np.int64), pa.array(["after"], type=pa.large_string()))
    got = file.read(np.array([0, 1, 3, 4, 5, 7, 9], dtype=np.int64))
    assert got == ["", "x" * 5000, None, "last", "after", "alpha", "Grüße, 東京"]
    assert file.size == sum(len(t.encode()) for t in texts if t) + len("after")
    assert list(where.iterdir()) == []  # unnamed: removed with the process


def test_a_new_release_row_cache_reads_only_the_rows_it_adds(indexed) -> None:
    """The server's row cache of a new release reuses the served release's rows that are
    still there and reads only the new ones; it equals a cache read in full."""
    from store.row_cache import RowCache

    store, releases, _, _, rng = indexed
    live = LiveIndex(store.path, check_s=0, tuning=AnnTuning(ann_min_rows=300))
    first = live.reader().vector_searcher()
    assert first is not None
    old = first.load_row_cache()
    assert old is not None and old.rows_read == 500
    snapshot = old.rows_of(old.rowids.tolist(), vectors=True)
    prepared = releases.prepare_head()
    releases.begin_writes()
    _write(store, 0, 1, rng)  # a document edited: its 10 rows deleted, 10 appended
    new_vectors = _write(store, 50, 2, rng)  # two new documents
    store.compact(TUNING)
    releases.promote(releases.record_candidate(prepared.parent, {}), by="test")
    deadline = time.monotonic() + 20
    while True:  # the server loads it in the background once it serves the release
        searcher = live.reader().vector_searcher()
        assert searcher is not None and searcher is not first
        cache = searcher.row_cache
        if cache is not None or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert cache is not None and cache.rows_read == 30 and len(cache.rowids) == 520
    assert cache.arena is old.arena  # appended to, shared: the old release's view still reads
    after = old.rows_of(old.rowids.tolist(), vectors=True)
    assert len(after) == 500 and after.keys() == snapshot.keys()
    assert all(np.array_equal(after[r]["vector"], snapshot[r]["vector"]) for r in after)
    assert all(after[r]["chunk_id"] == snapshot[r]["chunk_id"] for r in after)
    from server.prometheus import ReleaseCollector

    shown = {f.name: f.samples[0].value for f in ReleaseCollector(live).collect() if f.samples}
    assert shown["enclave_row_cache_bytes"] == cache.nbytes > 0  # what /metrics shows
    assert shown["enclave_row_cache_text_bytes"] == cache.text_bytes > 0
    full = RowCache.load(searcher.table, 2**30)
    assert full is not None and sorted(full.rowids.tolist()) == sorted(cache.rowids.tolist())
    ids = full.rowids.tolist()
    texts = cache.texts_of(ids)
    assert texts is not None and len(texts) == 520 and texts == full.texts_of(ids)
    stored = searcher.table.search().select(["text"]).with_row_id(True).limit(None).to_arrow()
    assert texts == dict(
        zip(stored.column("_rowid").to_pylist(), stored.column("text").to_pylist(), strict=True)
    )
    got, want = cache.rows_of(ids, vectors=True), full.rows_of(ids, vectors=True)
    for rid in ids:
        assert {k: v for k, v in got[rid].items() if k != "vector"} == {
            k: v for k, v in want[rid].items() if k != "vector"
        }
        assert np.array_equal(got[rid]["vector"], want[rid]["vector"])
    # searches on the cache built on the old one: the same hits as reading every column
    plain = LiveIndex(store.path, check_s=0, tuning=AnnTuning(ann_min_rows=300, row_cache_mb=0))
    reader, plain_reader = live.reader(), plain.reader()
    for q in [*rng.standard_normal((4, DIM)).astype(np.float32), *list(new_vectors.values())[:4]]:
        a, b = reader.vector_search(q, 12), plain_reader.vector_search(q, 12)
        assert [_columns(c) for c in a] == [_columns(c) for c in b]
    for words in ("word0 part", "word51 part 2"):  # an edited and a new document
        a, b = (
            _ties_sorted(reader.text_search(words, 600)),
            _ties_sorted(plain_reader.text_search(words, 600)),
        )
        assert a and [_columns(c) for c in a] == [_columns(c) for c in b]


def _ties_sorted(found: list[Any]) -> list[Any]:
    """Full-text hits by score, equal scores by chunk id (LanceDB orders ties as it finds them;
    the searches here ask for more hits than match, so that no tie is cut)."""
    return sorted(found, key=lambda c: (-c.text_score, c.chunk_id))


def _columns(c: Any) -> tuple[Any, ...]:
    """A candidate's chunk columns (all but its vector and scores)."""
    return tuple(v for k, v in vars(c).items() if k not in ("vector", "similarity", "text_score"))


def test_similarities_in_single_thread_blocks_equal_one_product() -> None:
    from store.vector_search import GEMV_ELEMENTS, similarities

    rng = np.random.default_rng(3)
    q = rng.standard_normal(DIM).astype(np.float32)
    for n in (0, 1, GEMV_ELEMENTS // DIM, GEMV_ELEMENTS // DIM * 3 + 7):
        m = rng.standard_normal((n, DIM)).astype(np.float32)
        got = similarities(m, q)
        assert got.dtype == np.float32 and got.shape == (n,)
        assert np.allclose(got, m @ q, atol=1e-5)


def test_native_query_execution_returns_what_the_async_api_does(indexed, monkeypatch) -> None:
    """A query run by its native object (no schema round trip, no second stream) returns the
    same table as the async API's ``to_batches``, which still runs where there is none: a
    vector search through the index (with rows the index does not cover), a prefiltered one,
    a full-text search, a take by row id, a scan of several batches and one that matches
    nothing (the schema still whole)."""
    import store.lance_query as lance_query

    store_, _, _, vectors, rng = indexed
    _write(store_, 50, 3, rng)  # another fragment: a scan streams more than one batch
    table = store_.chunks_table()
    q = next(iter(vectors.values()))
    some = [int(r) for r in table.search().with_row_id(True).limit(7).to_arrow()["_rowid"]]
    vector = lambda t: t.query().nearest_to(q).column("vector").distance_type("cosine")  # noqa: E731
    queries = [
        lambda t: vector(t).ef(100).with_row_id().select(["_distance"]).limit(20),
        lambda t: vector(t).where("array_has(groups, 'rare')").select(["chunk_id"]).limit(5),
        lambda t: t.query().nearest_to_text("word7 part").with_row_id().select(["_score"]),
        lambda t: t.take_row_ids(some).select(["chunk_id", "text"]).with_row_id(),
        lambda t: t.query().select(["chunk_id", "ordinal"]).with_row_id(),
        lambda t: t.query().where("ordinal < 0").select(["chunk_id", "ordinal"]),
    ]
    handle = lance_query.async_table(table)
    assert all(lance_query._native(build(handle)) is not None for build in queries)
    native = [lance_query.run_query(table, build) for build in queries]
    monkeypatch.setattr(lance_query, "_native", lambda query: None)
    for build, got in zip(queries, native, strict=True):
        want = lance_query.run_query(table, build)
        assert got is not None and want is not None
        assert got.schema == want.schema
        order = [(c, "ascending") for c in got.column_names]
        assert got.sort_by(order).equals(want.sort_by(order))
    counts = [t.num_rows for t in native]
    assert counts[0] == 20 and counts[3] == 7 and counts[4] == 530 and counts[5] == 0
    assert native[4].column(0).num_chunks > 1


def test_ann_search_deeper_than_ef_over_refine(indexed) -> None:
    """LanceDB refuses an ef below refine x k: a deep candidate list raises ef to it."""
    store, _, _, vectors, _ = indexed
    tuning = AnnTuning(ann_min_rows=300, ef=20, refine_factor=3)
    reader = LiveIndex(store.path, check_s=0, tuning=tuning).reader()
    chunk_id, vector = next(iter(vectors.items()))
    found = reader.vector_search(vector, 60)
    assert len(found) == 60 and found[0].chunk_id == chunk_id


def test_readers_answer_while_an_index_builds(indexed, tmp_path: Path) -> None:
    store, _, rec, vectors, _ = indexed
    live = LiveIndex(store.path, check_s=0, tuning=TUNING)
    chunk_id, vector = next(iter(vectors.items()))
    stop, answers, errors = threading.Event(), [], []

    def query() -> None:
        while not stop.is_set():
            try:
                answers.append(live.reader().vector_search(vector, 3)[0].chunk_id)
            except Exception as exc:  # pragma: no cover - the failure the test looks for
                errors.append(exc)

    thread = threading.Thread(target=query)
    thread.start()
    try:
        settings = Settings(data_dir=tmp_path, vector_index={"ann_min_rows": 300, "ef": 100})
        out = optimize(settings, force=True, lock_wait_s=5)
    finally:
        stop.set()
        thread.join()
    assert not errors and answers and set(answers) == {chunk_id}
    # the rebuilt index went live as a release of its own, with the same rows
    assert out["built"] and out["published"] and out["live"]
    assert live.reader().release_id == out["published"] != rec.id
    assert live.reader().count_chunks() == 500


def test_promote_and_rollback_with_and_without_the_index(tmp_path: Path) -> None:
    store = Store(tmp_path / "lancedb", tuning=TUNING)
    store.bind_embedder("random", DIM)
    releases = Releases(store)
    rng = np.random.default_rng(1)
    small, first, _ = _release(releases, (0, 20), rng)  # 200 chunks: exact, no ANN index
    big, second, _ = _release(releases, (20, 30), rng)  # 500 chunks: ANN index built
    live = LiveIndex(store.path, check_s=0, tuning=TUNING)
    assert live.reader().vector_searcher().path == "ann"  # type: ignore[union-attr]
    releases.rollback(by="test")
    reader = live.reader()
    assert reader.release_id == small.id and reader.vector_searcher().path == "exact"  # type: ignore[union-attr]
    cid, vector = next(iter(first.items()))
    assert reader.vector_search(vector, 3)[0].chunk_id == cid
    assert reader.vector_search(next(iter(second.values())), 3)[0].chunk_id not in second
    releases.promote(releases.registry.get(big.id), by="test")
    reader = live.reader()
    cid, vector = next(iter(second.items()))
    assert reader.release_id == big.id and reader.vector_search(vector, 3)[0].chunk_id == cid
    # a rebuild on the head leaves the live release's answers alone
    table = store.chunks_table()
    assert index_named(table, VECTOR_INDEX) is not None
    build_vector_index(table, TUNING)  # a rebuild on the head: the live release is untouched
    assert live.reader().vector_search(vector, 3)[0].chunk_id == cid


def test_a_purge_drops_the_vector_index_and_rebuilds_the_filter_indexes(indexed) -> None:
    from store.purge import purge_documents

    store, releases, _, vectors, _ = indexed
    gone = doc_id_for_path("/corp/doc00003.txt")
    purge_documents(store, releases.registry, [gone])
    live = LiveIndex(store.path, check_s=0, tuning=TUNING)
    table = live.reader()._chunks()
    assert index_named(table, VECTOR_INDEX) is None  # held the purged rows' vectors
    assert index_named(table, "source_idx") is not None  # rebuilt without their paths
    assert live.reader().vector_searcher().path == "exact"  # type: ignore[union-attr]
    for cid, vector in list(vectors.items())[25:45]:
        top = live.reader().vector_search(vector, 1)[0].chunk_id
        assert top == cid if not cid.startswith(gone) else top != cid


def test_no_index_builds_on_object_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On an s3:// index ``enclave index optimize`` refuses before touching the store, and an
    ingest run or purge starts no background build."""
    from enclave.errors import UsageError
    from store.index_build import start_background_build

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    settings = Settings(data_dir=tmp_path, store={"uri": "s3://enclave-test/index"})
    with pytest.raises(UsageError, match="object storage"):
        optimize(settings, force=True, lock_wait_s=1)
    assert start_background_build(settings) is None
