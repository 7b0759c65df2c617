"""Two DuckDB habits of the state: a UTC cursor, and a transaction that rolls back on error."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import duckdb


def utc_cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A cursor of ``con`` whose time zone is UTC. A cursor is a new DuckDB session: it starts
    in the machine's zone, not in whatever an earlier ``SET`` chose, and Dates parsed from text
    with an offset are rendered in the session's zone."""
    cur = con.cursor()
    try:
        cur.execute("SET TimeZone = 'UTC'")
    except BaseException:
        cur.close()
        raise
    return cur


@contextmanager
def transaction(cur: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """``BEGIN`` ... ``COMMIT``, or ``ROLLBACK`` if the block raises."""
    cur.execute("BEGIN")
    try:
        yield
    except BaseException:
        cur.execute("ROLLBACK")
        raise
    cur.execute("COMMIT")
