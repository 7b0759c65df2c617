"""Arrow plumbing between dlt's files and DuckDB: types DuckDB scans well, row numbers, chunks.

* ``normalize_arrow(batch)``: the same values in types DuckDB handles (see its docstring);
* ``with_row_numbers(batch, first_row)``: the batch, normalized, with its 0-based row numbers
  in the load's rows as ``ROW_COLUMN`` and, as ``BAD_TEXT_COLUMN``, which of its text columns
  held bytes that are not UTF-8 in each row (``bad_text_marker(name)`` for each, or null);
* ``valid_text(batch)``: the batch with every value that is not valid UTF-8 made null (DuckDB
  scanning such a value failed with an internal error), and those columns per row;
* ``chunked(table)``: the table split into chunks of ``SCAN_CHUNK_ROWS``, so that DuckDB, which
  scans one Arrow chunk per thread, uses every core.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

ROW_COLUMN = "__sg_row"
BAD_TEXT_COLUMN = "__sg_bad_text"
# Separates column names in BAD_TEXT_COLUMN: a control character no column name holds.
_SEPARATOR = "\x1f"
SCAN_CHUNK_ROWS = 16_384


def with_row_numbers(batch: pa.RecordBatch | pa.Table, first_row: int) -> pa.Table:
    """The batch, normalized for DuckDB, with its row numbers as ``ROW_COLUMN`` and the
    text columns each row had to lose as ``BAD_TEXT_COLUMN``."""
    rows = pa.array(np.arange(first_row, first_row + batch.num_rows, dtype=np.int64))
    table, bad_text = valid_text(pa.table(normalize_arrow(batch)))
    return table.append_column(ROW_COLUMN, rows).append_column(BAD_TEXT_COLUMN, bad_text)


def bad_text_marker(column: str) -> str:
    """How ``BAD_TEXT_COLUMN`` names a column (to search with ``contains``)."""
    return f"{_SEPARATOR}{column}{_SEPARATOR}"


def valid_text(table: pa.Table) -> tuple[pa.Table, pa.Array]:
    """``table`` with values that are not valid UTF-8 made null, and per row the markers of
    the columns that had one (null for rows without). Validation is one pass in C++; only a
    column that fails it is converted (in DuckDB, vectorized)."""
    marks: list[pa.Array] = []
    for i, field in enumerate(table.schema):
        if not _is_text(field.type) or _valid(table.column(i)):
            continue
        fixed, bad = _drop_invalid(table.column(i), field.type)
        table = table.set_column(i, field.name, fixed)
        marks.append(pc.if_else(bad, bad_text_marker(field.name), ""))
    if not marks:
        return table, pa.nulls(table.num_rows, pa.string())
    joined = marks[0]
    for mark in marks[1:]:
        joined = pc.binary_join_element_wise(joined, mark, "")
    return table, pc.if_else(pc.equal(joined, ""), pa.scalar(None, pa.string()), joined)


def _is_text(data_type: pa.DataType) -> bool:
    t = pa.types
    if t.is_list(data_type):
        return bool(t.is_string(data_type.value_type))
    return bool(t.is_string(data_type) or t.is_large_string(data_type))


def _valid(column: pa.ChunkedArray) -> bool:
    try:
        column.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True


def _drop_invalid(column: pa.ChunkedArray, data_type: pa.DataType) -> tuple[pa.Array, pa.Array]:
    """The column with invalid values (or lists holding one) made null; the mask of those."""
    binary = pa.list_(pa.binary()) if pa.types.is_list(data_type) else pa.binary()
    raw = pa.table({"v": column.combine_chunks().view(_as_binary(data_type)).cast(binary)})
    con = duckdb.connect()
    try:
        con.register("raw", raw)
        decoded = (
            "list_transform(v, lambda x: try(decode(x)))"
            if pa.types.is_list(data_type)
            else "try(decode(v))"
        )
        lost = "len(list_filter(d, lambda x: x IS NULL)) > len(list_filter(v, lambda x: x IS NULL))"
        lost = lost if pa.types.is_list(data_type) else "d IS NULL AND v IS NOT NULL"
        out = con.sql(
            f"SELECT CASE WHEN {lost} THEN NULL ELSE d END AS d, coalesce({lost}, false) AS bad "
            f"FROM (SELECT v, {decoded} AS d FROM raw)"
        ).to_arrow_table()
    finally:
        con.close()
    return out["d"].combine_chunks().cast(data_type), out["bad"].combine_chunks()


def _as_binary(data_type: pa.DataType) -> pa.DataType:
    if pa.types.is_list(data_type):
        return pa.list_(_as_binary(data_type.value_type))
    return pa.large_binary() if pa.types.is_large_string(data_type) else pa.binary()


def chunked(table: pa.Table) -> pa.Table:
    return pa.Table.from_batches(table.to_batches(max_chunksize=SCAN_CHUNK_ROWS), table.schema)


def normalize_arrow(batch: pa.RecordBatch | pa.Table) -> pa.RecordBatch | pa.Table:
    """Arrow types DuckDB scans poorly or not at all, turned into equivalents it handles.

    * timestamps: time zone dropped (Arrow stores UTC instants already; naive source timestamps
      are documented as UTC) and unit made microseconds, since DuckDB formats a plain
      TIMESTAMP several times faster and cannot widen second-precision year-9999 values;
    * dictionary-encoded columns: decoded; all-null columns: typed as text;
    * decimal256: narrowed to decimal128 when it fits (DuckDB reads no decimal256).
    """
    for i, field in enumerate(batch.schema):
        target = _scannable_type(field.type)
        if target is not None:
            column = batch.column(i)
            if pa.types.is_dictionary(field.type):
                column = column.dictionary_decode()
            batch = batch.set_column(i, field.name, column.cast(target, safe=False))
    return batch


def _scannable_type(data_type: pa.DataType) -> pa.DataType | None:
    t = pa.types
    if t.is_dictionary(data_type):
        return _scannable_type(data_type.value_type) or data_type.value_type
    if t.is_timestamp(data_type) and (data_type.tz is not None or data_type.unit != "us"):
        return pa.timestamp("us")
    if t.is_null(data_type):
        return pa.string()
    if t.is_decimal256(data_type) and data_type.precision <= 38:
        return pa.decimal128(data_type.precision, data_type.scale)
    return None
