"""A DuckDB warehouse is read under a cap that fits what is asked of it: a table is one
streaming scan, which needs no cache of the pages it read; a query may group or join, and
needs room to spill from. The cap each read runs under is what DuckDB reports inside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from pipelines.warehouse_to_sendgrid import customers_source
from sendgrid_destination.sources import QUERY_MEMORY_LIMIT, SCAN_MEMORY_LIMIT, resource_for
from sendgrid_destination.sync_file import SourceSpec

# A view is evaluated by the connection that reads it: it reports that connection's cap.
CAP_SQL = "SELECT current_setting('memory_limit') AS cap"


def _warehouse(tmp_path: Path, view: str) -> str:
    path = str(tmp_path / "warehouse.duckdb")
    with duckdb.connect(path) as con:
        con.execute(f"CREATE VIEW {view} AS {CAP_SQL}")
    return path


def _as_reported(limit: str) -> str:
    with duckdb.connect(config={"memory_limit": limit}) as con:
        return str(con.sql(CAP_SQL).fetchall()[0][0])


def _caps(items: Any) -> list[str]:
    return [str(cap) for cap in pa.Table.from_batches(list(items))["cap"].to_pylist()]


def test_a_duckdb_table_is_scanned_under_the_low_cap_and_a_query_runs_under_the_roomy_one(
    tmp_path: Path,
) -> None:
    path = _warehouse(tmp_path, "caps")
    table = resource_for(SourceSpec(kind="duckdb", path=path, table="caps"))
    query = resource_for(SourceSpec(kind="duckdb", path=path, query="SELECT * FROM caps"))

    assert _caps(table) == [_as_reported(SCAN_MEMORY_LIMIT)]
    assert _caps(query) == [_as_reported(QUERY_MEMORY_LIMIT)]
    assert _as_reported(SCAN_MEMORY_LIMIT) != _as_reported(QUERY_MEMORY_LIMIT)


def test_the_example_pipeline_scans_its_table_under_the_low_cap_and_a_query_under_the_roomy_one(
    tmp_path: Path,
) -> None:
    path = _warehouse(tmp_path, "customers")
    table = customers_source(path).resources["customers"]
    query = customers_source(path, query="SELECT * FROM customers").resources["customers"]

    assert _caps(table) == [_as_reported(SCAN_MEMORY_LIMIT)]
    assert _caps(query) == [_as_reported(QUERY_MEMORY_LIMIT)]
