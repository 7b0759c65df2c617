"""The rows of a sync file's ``[source]``, as one dlt resource yielding Arrow data.

* ``duckdb``: the file read natively, read-only (``duckdb-engine`` cannot reflect DuckDB 2.x
  files, so dlt's ``sql_table`` cannot read them), streamed as Arrow record batches;
* ``parquet``: a file, a directory or a glob, read with pyarrow's datasets in record batches;
* ``sql``: a SQLAlchemy URL, through dlt's ``sql_table`` with the pyarrow backend (``table``),
  or a ``query`` streamed through SQLAlchemy, its columns typed from their values
  (``query_rows``). A URL without a password takes it from dlt's
  secrets, ``sources.sql_database.credentials.password`` (the environment variable
  ``SOURCES__SQL_DATABASE__CREDENTIALS__PASSWORD`` or ``.dlt/secrets.toml``), so the file can
  hold the URL and not the password; without ``url`` the whole URL comes from
  ``sources.sql_database.credentials``.

A source that holds no rows yields one empty table (of its columns), never nothing: dlt then
loads zero rows, so the run is recorded with its summary, and a table in ``mirror`` or
``membership`` mode that became empty removes the contacts whose rows left, as through the
Python API (yielding nothing, dlt would never call the destination). With a ``cursor`` it
always ends with one: dlt's incremental drops the rows at its boundary that it has seen, so a
run that finds no new row would otherwise give dlt no data, and go without its summary or the
following of the jobs an earlier run left pending.

``cursor`` makes the resource incremental on that column (dlt's ``incremental``): a run extracts
only rows whose cursor is at least the last run's highest, pushed into the query for SQL and
DuckDB. The cursor lives in dlt's pipeline directory, so a worker that loses it (the Airflow and
Dagster helpers wipe it) reads everything again, and the state skips what did not change.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Callable, Iterator
from typing import Any

import dlt
import duckdb
import pyarrow as pa
from dlt.extract.resource import DltResource

from sendgrid_destination.errors import SyncFileError
from sendgrid_destination.parquet_schema import parquet_schema
from sendgrid_destination.query_rows import QueryRows
from sendgrid_destination.redaction import redact
from sendgrid_destination.sync_file import SourceSpec

BATCH_ROWS = 50_000
# DuckDB keeps every page it scanned cached up to its cap (by default 80% of RAM). A stored
# table is one streaming scan, which needs no cache: reading 10M rows (a 370 MB file) peaked
# at 438-455 MiB with 256 MB and 243-246 MiB with 64 MB, in the same time. A ``query``, or a
# ``table`` that names a view, may group or join, spilling beyond the cap: a GROUP BY over
# 10M wide rows ran out of 64 MB.
SCAN_MEMORY_LIMIT = "64MB"
QUERY_MEMORY_LIMIT = "256MB"
SQL_PASSWORD_KEY = "sources.sql_database.credentials.password"


def resource_for(spec: SourceSpec) -> DltResource:
    if spec.kind == "duckdb":
        return _duckdb_resource(spec)
    if spec.kind == "parquet":
        return _parquet_resource(spec)
    if spec.table:
        return _sql_table_resource(spec)
    return _sql_query_resource(spec)


def _incremental(spec: SourceSpec) -> Any:
    return dlt.sources.incremental(spec.cursor) if spec.cursor else None


def _duckdb_resource(spec: SourceSpec) -> DltResource:
    query = spec.query or f"SELECT * FROM {_quoted(spec.table or '')}"
    path = str(spec.path)
    incremental = _incremental(spec)

    def rows(cursor: Any = incremental) -> Iterator[pa.RecordBatch]:
        sql, params = _from_cursor(query, spec.cursor, cursor)
        try:
            con = open_warehouse(path, None if spec.query else spec.table)
        except duckdb.Error as exc:
            raise SyncFileError(f"Cannot open the DuckDB source {path}: {exc}") from None
        with con:
            try:
                reader: pa.RecordBatchReader = con.sql(sql, params=params).to_arrow_reader(
                    BATCH_ROWS
                )
            except (duckdb.CatalogException, duckdb.ParserException, duckdb.BinderException) as e:
                raise _not_in_source(spec, e) from None
            yield from _at_least_one(reader, reader.schema.empty_table, spec.cursor)

    return dlt.resource(rows, name=spec.resource, write_disposition="append")


def open_warehouse(path: str, table: str | None) -> duckdb.DuckDBPyConnection:
    """The DuckDB file, read-only, capped to read ``table`` (a plain scan if it is stored,
    not a view), or a query (``None``)."""
    config: dict[str, str | bool | int | float | list[str]] = {"memory_limit": SCAN_MEMORY_LIMIT}
    con = duckdb.connect(path, read_only=True, config=config)
    try:
        if table is None or not _is_stored_table(con, table):
            con.execute(f"SET memory_limit = '{QUERY_MEMORY_LIMIT}'")
    except BaseException:
        con.close()
        raise
    return con


def _is_stored_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether ``name`` (``table``, ``schema.table`` or ``catalog.schema.table``) is a table
    stored in the file, not a view: reading it is a plain scan. A name that some view also
    answers to (DuckDB's names ignore case; another schema may hold it) is taken as a view."""
    parts = [part.lower() for part in name.split(".")]
    where, params = ["lower({kind}_name) = ?"], [parts[-1]]
    for column, value in zip(("schema_name", "database_name"), reversed(parts[:-1]), strict=False):
        where.append(f"lower({column}) = ?")
        params.append(value)
    condition = " AND ".join(where)
    ((tables, views),) = con.execute(
        f"SELECT (SELECT count(*) FROM duckdb_tables() WHERE {condition.format(kind='table')}), "
        f"(SELECT count(*) FROM duckdb_views() WHERE {condition.format(kind='view')})",
        params + params,
    ).fetchall()
    return bool(tables) and not views


def _not_in_source(spec: SourceSpec, exc: duckdb.Error) -> SyncFileError:
    """The DuckDB file lacks the table (or a column) the sync file names, or its query is not
    valid SQL: a usage error, named (DuckDB's messages name tables and columns, not values)."""
    what = f"table {spec.table!r}" if spec.table else "query"
    first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return SyncFileError(
        f"The duckdb source {spec.path} cannot run its {what} ({first_line}): check `table` "
        "or `query` under [source] (a schema goes first: schema.table)."
    )


def _from_cursor(
    query: str, column: str | None, cursor: Any, placeholder: str = "?"
) -> tuple[str, list[Any]]:
    """The query, keeping rows at or past the cursor's last value (dlt drops the ones it has
    seen exactly at the boundary)."""
    last = getattr(cursor, "last_value", None) if column else None
    if last is None:
        return query, []
    return f"SELECT * FROM ({query}) AS q WHERE q.{_quoted(str(column))} >= {placeholder}", [last]


_DIGITS = re.compile(r"\d{3,}")


def _parquet_resource(spec: SourceSpec) -> DltResource:
    import pyarrow.dataset as ds

    path = str(spec.path)
    files = sorted(glob.glob(path)) if glob.has_magic(path) else [path]
    incremental = _incremental(spec)

    def rows(cursor: Any = incremental) -> Iterator[pa.RecordBatch]:
        if not files:
            raise SyncFileError(f"No parquet files match source.path = {path!r}.")
        try:
            schema = parquet_schema(files, spec.cursor)
            dataset = ds.dataset(files, schema=schema, format="parquet")
        except (OSError, pa.ArrowException) as exc:
            raise _unreadable(path, exc) from None
        yield from _at_least_one(_scan(dataset, path), dataset.schema.empty_table, spec.cursor)

    return dlt.resource(rows, name=spec.resource, write_disposition="append")


def _scan(dataset: Any, path: str) -> Iterator[pa.RecordBatch]:
    try:
        for batch in dataset.to_batches(batch_size=BATCH_ROWS):
            if batch.num_rows:
                yield batch
    except (OSError, pa.ArrowException) as exc:
        raise _unreadable(path, exc) from None


def _unreadable(path: str, exc: Exception) -> SyncFileError:
    # Arrow's messages may hold a value, mostly after their first colon, unquoted digits
    # before it too ("Integer value 9007199254740993 not in range"): the part before the
    # colon, redacted, without digit runs.
    head = _DIGITS.sub("<redacted>", str(exc).split(":", 1)[0].strip())
    what = redact(head) or type(exc).__name__
    return SyncFileError(
        f"Cannot read the parquet source {path!r} ({what}): check that every file is a "
        "parquet file and that a column has one kind of values in all of them."
    )


def _sql_table_resource(spec: SourceSpec) -> DltResource:
    from dlt.sources.sql_database import sql_table

    schema, _, table = str(spec.table).rpartition(".")
    resource = sql_table(
        credentials=sql_credentials(spec.url),
        table=table,
        schema=schema or None,
        backend="pyarrow",
        incremental=_incremental(spec),
        chunk_size=BATCH_ROWS,
        table_loader_class=_empty_table_loader(),
    )
    return resource.with_name(spec.resource)


def _empty_table_loader() -> type[Any]:
    """dlt's table loader (pyarrow backend), which yields one empty table of the table's
    reflected columns when the query holds no row (module doc)."""
    from dlt.sources.sql_database.arrow_helpers import row_tuples_to_arrow
    from dlt.sources.sql_database.helpers import TableLoader

    class EmptyAsTable(TableLoader):
        def _convert_result(self, result: Any, backend_kwargs: dict[str, Any]) -> Iterator[Any]:
            empty = True
            for item in super()._convert_result(result, backend_kwargs):
                empty = False
                yield item
            if empty:
                names = result.keys()  # the cursor's columns (a result iterates over rows)
                columns = {c: self.columns.get(c, {"name": c}) for c in names}
                yield row_tuples_to_arrow([], columns, tz=backend_kwargs.get("tz", "UTC"))

    return EmptyAsTable


def _sql_query_resource(spec: SourceSpec) -> DltResource:
    incremental = _incremental(spec)

    def rows(cursor: Any = incremental) -> Iterator[pa.Table]:
        from dlt.sources.sql_database.helpers import engine_from_credentials

        engine = engine_from_credentials(sql_credentials(spec.url))
        marker = _PLACEHOLDERS.get(engine.dialect.paramstyle, "%s")
        sql, params = _from_cursor(str(spec.query), spec.cursor, cursor, marker)
        try:
            with engine.connect() as con:
                # The driver's own SQL: no SQLAlchemy construct is needed for a plain query.
                result = con.execution_options(stream_results=True).exec_driver_sql(
                    sql,
                    {"sg_cursor": params[0]} if params and "sg_cursor" in marker else tuple(params),
                )
                chunks = iter(lambda: result.fetchmany(BATCH_ROWS), [])
                typed = QueryRows(list(result.keys()), spec.cursor)
                for table in typed.tables(chunks):
                    _refuse_text_cursor(cursor, table, spec.cursor)
                    yield table
                if spec.cursor:  # as _at_least_one: every row may be at the boundary, seen
                    yield typed.table([])
        finally:
            engine.dispose()

    return dlt.resource(rows, name=spec.resource, write_disposition="append")


def _refuse_text_cursor(incremental: Any, table: pa.Table, column: str | None) -> None:
    """A numeric cursor whose last value dlt holds as text: an earlier version read numeric
    cursors as text (so "10" < "9", and new rows were dropped), and dlt cannot compare the
    two. One full refresh starts the cursor again (the state file still skips every
    contact SendGrid has)."""
    last = getattr(incremental, "last_value", None) if column else None
    if not isinstance(last, str) or column not in table.column_names:
        return
    kind = table.schema.field(column).type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind):
        raise SyncFileError(
            f"The cursor {column!r} holds numbers, but dlt's state holds its last value as "
            "text, as an earlier version of this destination read numeric cursors (a text "
            'cursor finds "10" before "9" and drops the new rows). Run once with '
            "--full-refresh: the cursor starts again, and the state file skips every "
            "contact SendGrid already has."
        )


def _at_least_one(
    batches: Iterator[pa.RecordBatch] | Iterator[pa.Table] | pa.RecordBatchReader,
    empty: Callable[[], pa.Table],
    cursor: str | None,
) -> Iterator[pa.RecordBatch | pa.Table]:
    """``batches``, then the ``empty()`` table if they hold none, or always with a ``cursor``:
    dlt's incremental drops the rows at its boundary that it has seen, so rows yielded may all
    be dropped, and the load would hold no data (module doc)."""
    nothing = True
    for batch in batches:
        nothing = False
        yield batch
    if nothing or cursor:
        yield empty()


# How each DB-API paramstyle writes the one cursor parameter.
_PLACEHOLDERS = {
    "pyformat": "%(sg_cursor)s",
    "format": "%s",
    "qmark": "?",
    "named": ":sg_cursor",
    "numeric": ":1",
}


def sql_credentials(url: str | None) -> Any:
    """dlt's credentials for ``url``, its password (when it has none) from dlt's secrets;
    without a URL, dlt resolves ``sources.sql_database.credentials`` itself. dlt's credentials
    never show the password when printed."""
    from dlt.common.configuration.specs import ConnectionStringCredentials

    if not url:
        return dlt.secrets.value
    try:
        credentials = ConnectionStringCredentials(url)
    except Exception:
        raise SyncFileError(
            "source.url is not a SQLAlchemy URL, e.g. postgresql+psycopg2://user@host:5432/db."
        ) from None
    if not credentials.password:
        password: Any = dlt.secrets.get(SQL_PASSWORD_KEY)
        if password:
            credentials.password = str(password)
    return credentials


def _quoted(name: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))
