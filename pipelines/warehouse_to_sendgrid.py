"""The sync: customers from a DuckDB warehouse into SendGrid Marketing Contacts.

``customers_source(warehouse)`` is a dlt source whose resource streams the ``customers`` table
as Arrow record batches straight out of DuckDB (no rows become Python objects).
``sync(warehouse)`` runs it into the ``sendgrid`` destination, configured entirely from
``.dlt/config.toml`` (the mapping), ``.dlt/secrets.toml`` (the API key) and environment
variables, so pointing it at a real account is a matter of setting the key, and returns the
SendGrid summary of each load it made. From the command line (the README's quick start)::

    .venv/bin/python -m pipelines.warehouse_to_sendgrid --warehouse warehouse.duckdb \
        --create-custom-fields

``--create-custom-fields`` creates the custom fields the mapping names and the account lacks
(``plan``, ``lifetime_value`` and ``signed_up_at`` on a fresh account), like
``DESTINATION__SENDGRID__CREATE_MISSING_CUSTOM_FIELDS=true``; without it they stop the run.
A run the destination stops prints its message (``error: ...``, what to fix) and exits 1.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
from dlt.pipeline.exceptions import PipelineStepFailed

from sendgrid_destination import finish_interrupted_moves, run_summaries, sendgrid
from sendgrid_destination.errors import ours_in
from sendgrid_destination.sources import open_warehouse
from sendgrid_destination.summary import RunSummary

BATCH_ROWS = 50_000


@dlt.source(name="warehouse")
def customers_source(warehouse: str, query: str | None = None) -> Any:
    """The ``customers`` table, or the rows of ``query`` (SQL on the warehouse)."""

    @dlt.resource(name="customers", write_disposition="append")
    def customers() -> Iterator[pa.RecordBatch]:
        # Capped as a sync file's duckdb source: a stored table's scan keeps little cached, a
        # query or a view may need room to group or join.
        with open_warehouse(warehouse, None if query else "customers") as con:
            reader = con.sql(query or "SELECT * FROM customers").to_arrow_reader(BATCH_ROWS)
            yield from reader

    return customers


def sync(
    warehouse: Path,
    *,
    pipeline_name: str = "warehouse_to_sendgrid",
    pipelines_dir: str | None = None,
    **destination_args: Any,
) -> list[RunSummary]:
    """One sync run; ``destination_args`` override the settings from config. Returns the
    summary of each table of each load package it loaded (a pending one first)."""
    pipeline = dlt.pipeline(
        pipeline_name=pipeline_name,
        destination=sendgrid(**destination_args),
        pipelines_dir=pipelines_dir,  # type: ignore[arg-type]  # None means dlt's default
    )
    summaries = []
    # A run killed inside one of dlt's package moves left it half done: finish it first.
    finish_interrupted_moves(pipeline)
    # A package left pending by a failed run is finished first (given pending data, dlt's
    # run() loads only that package and ignores the new data): load it, then extract afresh,
    # so one scheduled run always catches up.
    if pipeline.has_pending_data:
        summaries += run_summaries(pipeline, pipeline.load())
    info = pipeline.run(customers_source(str(warehouse)))
    return summaries + run_summaries(pipeline, info)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, required=True, help="DuckDB file")
    parser.add_argument(
        "--create-custom-fields",
        action="store_true",
        help="create the mapped custom fields the account does not have yet",
    )
    args = parser.parse_args(argv)
    if not args.warehouse.is_file():
        parser.error(f"no warehouse at {args.warehouse} (build one: make warehouse)")
    # Only when asked: an explicit argument beats config, so False would override the env var.
    extra: dict[str, Any] = (
        {"create_missing_custom_fields": True} if args.create_custom_fields else {}
    )
    try:
        summaries = sync(args.warehouse, **extra)
    except PipelineStepFailed as failed:
        # Our errors say what to fix in one message: that, not dlt's traceback around it.
        reason = ours_in(failed)
        if reason is None:
            raise
        raise SystemExit(f"error: {reason}") from None
    for summary in summaries:
        print(summary.format())
    if not summaries:
        print("Nothing was loaded: the source produced no rows.")


if __name__ == "__main__":
    main()
