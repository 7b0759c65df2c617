"""The sync: customers from a DuckDB warehouse into SendGrid Marketing Contacts.

``customers_source(warehouse)`` is a dlt source whose resource streams the ``customers`` table
as Arrow record batches straight out of DuckDB (no rows become Python objects).
``sync(warehouse)`` runs it into the ``sendgrid`` destination, configured entirely from
``.dlt/config.toml`` (the mapping), ``.dlt/secrets.toml`` (the API key) and environment
variables, so pointing it at a real account is a matter of setting the key:

    python -m pipelines.warehouse_to_sendgrid --warehouse path/to/warehouse.duckdb
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dlt
import duckdb
import pyarrow as pa
from dlt.common.pipeline import LoadInfo

from sendgrid_destination import sendgrid

BATCH_ROWS = 50_000
WAREHOUSE_MEMORY_LIMIT = "256MB"


@dlt.source(name="warehouse")
def customers_source(warehouse: str, query: str = "SELECT * FROM customers") -> Any:
    @dlt.resource(name="customers", write_disposition="append")
    def customers() -> Iterator[pa.RecordBatch]:
        # Without a cap DuckDB keeps every page it scanned cached (its default limit is 80% of
        # RAM): extracting 10M rows held the whole 350 MB file. With one, a heavier ``query``
        # (a GROUP BY over 10M keys was tried) spills to disk; 64 MB was too little for it.
        config: dict[str, str | bool | int | float | list[str]]
        config = {"memory_limit": WAREHOUSE_MEMORY_LIMIT}
        with duckdb.connect(warehouse, read_only=True, config=config) as con:
            reader = con.sql(query).to_arrow_reader(BATCH_ROWS)
            yield from reader

    return customers


def sync(
    warehouse: Path,
    *,
    pipeline_name: str = "warehouse_to_sendgrid",
    pipelines_dir: str | None = None,
    **destination_args: Any,
) -> LoadInfo:
    """One sync run; ``destination_args`` override the settings from config."""
    pipeline = dlt.pipeline(
        pipeline_name=pipeline_name,
        destination=sendgrid(**destination_args),
        pipelines_dir=pipelines_dir,  # type: ignore[arg-type]  # None means dlt's default
    )
    # A package left pending by a failed run is finished first (dlt then skips new data):
    # load it, then extract afresh, so one scheduled run always catches up.
    if pipeline.has_pending_data:
        pipeline.load()
    return pipeline.run(customers_source(str(warehouse)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, required=True, help="DuckDB file")
    args = parser.parse_args()
    print(sync(args.warehouse))


if __name__ == "__main__":
    main()
