"""A DuckDB warehouse is read under a cap that fits what is asked of it: a stored table is
one streaming scan, which needs no cache of the pages it read; a query, or a view, may group
or join, and needs room to spill from. The cap each read runs under is what DuckDB reports
inside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from pipelines.warehouse_to_sendgrid import customers_source
from sendgrid_destination.sources import QUERY_MEMORY_LIMIT, SCAN_MEMORY_LIMIT, resource_for
from sendgrid_destination.sync_file import SourceSpec

# A generated column, and a view, are computed by the connection that reads them: they report
# that connection's cap.
CAP = "current_setting('memory_limit')"


def _warehouse(tmp_path: Path, table: str, view: str) -> str:
    path = str(tmp_path / "warehouse.duckdb")
    with duckdb.connect(path) as con:
        con.execute(f"CREATE TABLE {table} (id INTEGER, cap VARCHAR AS ({CAP}))")
        con.execute(f"INSERT INTO {table} (id) VALUES (1)")
        con.execute(f"CREATE VIEW {view} AS SELECT id, {CAP} AS cap FROM {table}")
    return path


def _as_reported(limit: str) -> str:
    with duckdb.connect(config={"memory_limit": limit}) as con:
        return str(con.sql(f"SELECT {CAP}").fetchall()[0][0])


def _caps(items: Any) -> list[str]:
    return [str(cap) for cap in pa.Table.from_batches(list(items))["cap"].to_pylist()]


def _duckdb_source(path: str, **what: str) -> Any:
    return resource_for(SourceSpec(kind="duckdb", path=path, **what))


def test_a_stored_duckdb_table_is_scanned_under_the_low_cap_a_view_or_a_query_under_the_roomy_one(
    tmp_path: Path,
) -> None:
    path = _warehouse(tmp_path, "people", "people_view")
    scan, roomy = _as_reported(SCAN_MEMORY_LIMIT), _as_reported(QUERY_MEMORY_LIMIT)
    assert scan != roomy

    assert _caps(_duckdb_source(path, table="people")) == [scan]
    assert _caps(_duckdb_source(path, table="main.people")) == [scan]
    assert _caps(_duckdb_source(path, table="people_view")) == [roomy]
    assert _caps(_duckdb_source(path, query="SELECT * FROM people")) == [roomy]


def test_the_example_pipeline_scans_a_stored_customers_table_under_the_low_cap(
    tmp_path: Path,
) -> None:
    path = _warehouse(tmp_path, "customers", "customers_view")
    query = "SELECT * FROM customers"

    assert _caps(customers_source(path).resources["customers"]) == [_as_reported(SCAN_MEMORY_LIMIT)]
    assert _caps(customers_source(path, query=query).resources["customers"]) == [
        _as_reported(QUERY_MEMORY_LIMIT)
    ]


def test_the_example_pipeline_reads_a_customers_view_under_the_roomy_cap(tmp_path: Path) -> None:
    path = str(tmp_path / "warehouse.duckdb")
    with duckdb.connect(path) as con:
        con.execute(f"CREATE VIEW customers AS SELECT 1 AS id, {CAP} AS cap")

    assert _caps(customers_source(path).resources["customers"]) == [
        _as_reported(QUERY_MEMORY_LIMIT)
    ]


def test_a_table_name_is_matched_as_duckdb_matches_it_and_any_view_of_that_name_counts(
    tmp_path: Path,
) -> None:
    path = _warehouse(tmp_path, "People", "people_view")
    with duckdb.connect(path) as con:  # one name: a stored table in a schema, a view in main
        con.execute("CREATE SCHEMA archive")
        con.execute(f"CREATE TABLE archive.orders (id INTEGER, cap VARCHAR AS ({CAP}))")
        con.execute("INSERT INTO archive.orders (id) VALUES (1)")
        con.execute(f"CREATE VIEW main.orders AS SELECT 1 AS id, {CAP} AS cap")
    scan, roomy = _as_reported(SCAN_MEMORY_LIMIT), _as_reported(QUERY_MEMORY_LIMIT)

    assert _caps(_duckdb_source(path, table="people")) == [scan]  # names ignore case
    assert _caps(_duckdb_source(path, table="orders")) == [roomy]  # main.orders, the view
    assert _caps(_duckdb_source(path, table="archive.orders")) == [scan]
