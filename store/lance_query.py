"""LanceDB queries built and run on a table's async handle in one hop to LanceDB's event
loop: the sync API makes about seven hops per query, reads the table schema several times and
rebuilds the query in Python. The async handle and the loop are LanceDB internals of the
pinned 0.40 series; where either is missing, each function says so (None) and the caller runs
the same query through the sync API.

A query is executed by its native (Rust) query object, its record batches read straight from
the stream that returns: the async API's ``to_arrow`` first asks the table for its schema
(one more round trip between LanceDB's event loop and its worker threads, for blob columns,
which Enclave's tables do not have) and, for a vector or full-text query, reads the result
whole and wraps it in a second stream (0.1-0.3 ms of a 3 ms search at 1M chunks). Where the
query has no native object, or a reranker (which the async API applies), the async API's
``to_batches`` runs it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa


def async_table(table: Any) -> Any | None:
    """The LanceDB table's async handle, through which a query is built and run in one hop to
    LanceDB's event loop: the sync API makes about seven per query, reads the table's schema
    on each and rebuilds the query in Python (~1.5 ms a query on this 2-core machine). None:
    the sync API only."""
    inner = getattr(table, "_table", None)
    try:
        from lancedb.table import AsyncTable
    except ImportError:  # pragma: no cover - every supported LanceDB has it
        return None
    return inner if isinstance(inner, AsyncTable) else None


def _async(table: Any) -> tuple[Any, Any] | None:
    """``table``'s async handle and LanceDB's background event loop, or None (the sync API)."""
    inner = async_table(table)
    if inner is None:
        return None
    try:
        from lancedb.background_loop import LOOP
    except ImportError:  # pragma: no cover - LanceDB moved its loop: the sync API serves
        return None
    return inner, LOOP


def run_query(table: Any, build: Callable[[Any], Any]) -> Any | None:
    """The Arrow table of the query ``build`` makes of ``table``'s async handle, built and
    run in one hop; None when the table has no async handle (then use the sync API)."""
    handle = _async(table)
    if handle is None:
        return None
    inner, loop = handle

    async def run() -> Any:
        stream = await _execute(build(inner), None)
        return pa.Table.from_batches([batch async for batch in stream], schema=stream.schema)

    return loop.run(run())


def stream_query(table: Any, build: Callable[[Any], Any], batch_rows: int) -> Iterator[Any] | None:
    """The record batches of the query ``build`` makes of ``table``'s async handle, read one
    at a time (the caller's work on each runs on the caller's thread, not LanceDB's event
    loop); None when the table has no async handle."""
    handle = _async(table)
    if handle is None:
        return None
    inner, loop = handle

    async def start() -> Any:
        return await _execute(build(inner), batch_rows)

    def batches() -> Iterator[Any]:
        stream = loop.run(start())

        async def next_batch() -> Any:  # the native stream's next needs the running loop
            return await stream.__anext__()

        while True:
            try:
                yield loop.run(next_batch())
            except StopAsyncIteration:
                return

    return batches()


async def _execute(query: Any, batch_rows: int | None) -> Any:
    """The stream of record batches (with its ``schema``) of an async LanceDB query: from
    its native query object when the result can be read from it as it is, else from the
    async API's ``to_batches`` (a query with a reranker, which that applies)."""
    native = _native(query)
    if native is not None:
        return await native.execute(max_batch_length=batch_rows, timeout=None)
    return await query.to_batches(max_batch_length=batch_rows)


def _native(query: Any) -> Any | None:
    """The native query object under an async LanceDB query, when its result can be read
    from it as it is (no reranker to apply); None: run the query by ``to_batches``."""
    native = getattr(query, "_inner", None)
    if getattr(query, "_reranker", None) is not None or not hasattr(native, "execute"):
        return None
    return native


def take_rows(table: Any, rowids: list[int], columns: list[str]) -> Any:
    """``columns`` (and ``_rowid``) of the rows ``rowids`` of ``table``, in any order."""
    data = run_query(table, lambda t: t.take_row_ids(rowids).select(columns).with_row_id())
    if data is None:
        data = table.take_row_ids(rowids).select(columns).with_row_id().to_arrow()
    return data
