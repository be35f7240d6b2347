"""``enclave index status|optimize``: the chunks table's indexes (store/ann.py).

``optimize`` builds the vector index of the live release's table set when it is due (or
always with ``--full``) without holding the writer lock while it builds, then publishes it as
a release of that set (promoted under ``release.auto_promote``). An ingest run starts it in
the background on its own when the index is due. On an index on object storage
(``store.uri = "s3://..."``) ``optimize`` refuses (exit 2): Enclave builds indexes on a local
index only.

Exit codes: 0 done (or nothing due); 2 usage error, or the writer lock stayed busy.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from enclave.cli_options import ConfigOpt, DataDirOpt, JsonOpt, build_settings, fail
from enclave.errors import EnclaveError


def register(app: typer.Typer) -> None:
    index = typer.Typer(
        help="The vector and filter indexes: status, optimize.", no_args_is_help=True
    )
    app.add_typer(index, name="index")

    @index.command("status")
    def status_command(
        data_dir: DataDirOpt = None, config: ConfigOpt = None, as_json: JsonOpt = False
    ) -> None:
        """The indexes of the head and of the live release: rows covered, rows added since."""
        try:
            data = index_status(build_settings(config, data_dir))
        except EnclaveError as exc:
            raise fail(exc) from exc
        typer.echo(json.dumps(data, indent=None if as_json else 2))

    @index.command("optimize")
    def optimize_command(
        full: Annotated[
            bool, typer.Option("--full", help="rebuild the vector index even when not due")
        ] = False,
        data_dir: DataDirOpt = None,
        config: ConfigOpt = None,
        as_json: JsonOpt = False,
    ) -> None:
        """Build the vector index when due (past vector_index.ann_min_rows, or too many rows added
        since the last build) and publish it as a release; queries and writers go on."""
        from store.index_build import optimize

        try:
            data = optimize(build_settings(config, data_dir), force=full)
        except EnclaveError as exc:
            raise fail(exc) from exc
        typer.echo(json.dumps(data, indent=None if as_json else 2))


def index_status(settings: Any) -> dict[str, Any]:
    from store.ann import AnnTuning, index_status
    from store.db import Store
    from store.releases import Releases
    from store.sets import active_tables

    tuning = AnnTuning.from_settings(settings.vector_index)
    tables = active_tables(settings.index)
    store = Store(settings.index, tables=tables, tuning=tuning)
    live = Releases(store).live_view()
    searcher = live.vector_searcher()
    return {
        "table_set": tables,
        "builds": "local index only" if settings.index.is_remote else "yes",
        "head": index_status(store.chunks_table(), tuning),
        "live": {"release": live.release_id, **index_status(live._chunks(), tuning)},
        "search_path": searcher.path if searcher is not None else None,
    }
