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

# The destination's own columns beside the source's (source_rows refuses a source column
# named like them).
OWN_COLUMN_PREFIX = "__sg_"
ROW_COLUMN = OWN_COLUMN_PREFIX + "row"
BAD_TEXT_COLUMN = OWN_COLUMN_PREFIX + "bad_text"
# Separates column names in BAD_TEXT_COLUMN: a control character no column name holds.
_SEPARATOR = "\x1f"
SCAN_CHUNK_ROWS = 16_384


def with_row_numbers(
    batch: pa.RecordBatch | pa.Table, first_row: int, numbers: np.ndarray | None = None
) -> pa.Table:
    """The batch, normalized for DuckDB, with its row numbers as ``ROW_COLUMN`` (``numbers``,
    else consecutive from ``first_row``) and the text columns each row had to lose as
    ``BAD_TEXT_COLUMN``."""
    if numbers is None:
        numbers = np.arange(first_row, first_row + batch.num_rows, dtype=np.int64)
    rows = pa.array(np.asarray(numbers, dtype=np.int64))
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
        return _is_text(data_type.value_type)
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
    * dates and timestamps beyond what DuckDB's TIMESTAMP holds (about year 294,000; second
      and millisecond ticks reach much further, and a cast would wrap around) are read as
      ``FAR_MICROS`` from the epoch, either way: still outside SendGrid's years 1 to 9999, so
      a Date field rejects their row instead of sending another date;
    * dictionary-encoded columns: decoded; all-null columns: typed as text; views
      (``string_view``, ``binary_view``) and lists of text: plain ``string``, ``binary``,
      ``list<string>``; list views are rebuilt as lists (``_lists_of_views``), never cast;
    * ``float16``: widened to ``float32`` (exactly); ``decimal256``: narrowed to
      ``decimal128`` when it fits, else text (DuckDB reads no wider decimal; the mapping
      refuses such a column, see ``mapping.arrow_kind``, so only an unmapped one gets here).
    """
    for i, field in enumerate(batch.schema):
        column = batch.column(i)
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if _is_temporal(column.type):
            column = _within_far(column)  # first: widening seconds to microseconds may wrap
        if pa.types.is_list_view(column.type) or pa.types.is_large_list_view(column.type):
            column = _lists_of_views(column)
        target = _scannable_type(column.type)
        if target is not None:
            column = column.cast(target, safe=False)  # nanoseconds lose digits, nothing else
        if column is not batch.column(i):
            batch = batch.set_column(i, field.name, column)
    return batch


# A date or time this far from the epoch (microseconds, about year 148,000) is in DuckDB's
# TIMESTAMP range and outside SendGrid's years 1 to 9999.
FAR_MICROS = 2**62
_PER_MICRO = {"s": 1_000_000, "ms": 1_000, "us": 1}
_MICROS_PER_DAY = 86_400_000_000


def _is_temporal(data_type: pa.DataType) -> bool:
    return bool(pa.types.is_timestamp(data_type) or pa.types.is_date(data_type))


def _within_far(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """``column`` (dates or timestamps, in their own unit) with values beyond ``FAR_MICROS``
    from the epoch made exactly that far (see ``normalize_arrow``)."""
    data_type = column.type
    if pa.types.is_date32(data_type):
        bound, ticks = FAR_MICROS // _MICROS_PER_DAY, column.cast(pa.int32())
    elif pa.types.is_date64(data_type):
        bound, ticks = FAR_MICROS // _MICROS_PER_DAY * 86_400_000, column.cast(pa.int64())
    elif data_type.unit in _PER_MICRO:
        bound, ticks = FAR_MICROS // _PER_MICRO[data_type.unit], column.cast(pa.int64())
    else:
        return column  # nanoseconds: int64 reaches only years 1677 to 2262
    low, high = (v.as_py() for v in pc.min_max(ticks).values())
    if low is None or (low >= -bound and high <= bound):
        return column
    low_bound, high_bound = pa.scalar(-bound, ticks.type), pa.scalar(bound, ticks.type)
    # skip_nulls=False: a null stays null (by default it would become the bound).
    lower = pc.max_element_wise(ticks, low_bound, skip_nulls=False)
    clamped = pc.min_element_wise(lower, high_bound, skip_nulls=False)
    return clamped.cast(data_type)


def _lists_of_views(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A list view column as plain lists of the same values.

    Not ``cast``: pyarrow (17 to 26 at least) casts ``list_view`` to ``list`` into empty lists,
    silently. The values in view order (``flatten`` follows each view's offset and size) and
    offsets from the sizes rebuild the same lists; a null list stays null.
    """
    large = pa.types.is_large_list_view(column.type)
    target = (pa.large_list if large else pa.list_)(column.type.value_field)
    if isinstance(column, pa.ChunkedArray):
        return pa.chunked_array([_lists_of_views(chunk) for chunk in column.chunks], target)
    sizes = pc.fill_null(pc.list_value_length(column), 0).to_numpy(zero_copy_only=False)
    offsets = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
    lists = pa.LargeListArray if large else pa.ListArray
    offset_type = pa.int64() if large else pa.int32()
    return lists.from_arrays(
        pa.array(offsets, offset_type), column.flatten(), type=target, mask=column.is_null()
    )


def _scannable_type(data_type: pa.DataType) -> pa.DataType | None:
    t = pa.types
    if t.is_dictionary(data_type):  # in a list (a column's own is decoded first)
        return _scannable_type(data_type.value_type) or data_type.value_type
    if t.is_timestamp(data_type) and (data_type.tz is not None or data_type.unit != "us"):
        return pa.timestamp("us")
    if t.is_null(data_type) or t.is_string_view(data_type):
        return pa.string()
    if t.is_binary_view(data_type):
        return pa.binary()
    if t.is_float16(data_type):
        return pa.float32()
    if t.is_decimal256(data_type):
        fits = data_type.precision <= 38
        return pa.decimal128(data_type.precision, data_type.scale) if fits else pa.string()
    if _is_list(data_type):
        value = data_type.value_type
        inner = _scannable_type(value)
        if inner is not None or not t.is_list(data_type):
            return pa.list_(inner or value)
    return None


def _is_list(data_type: pa.DataType) -> bool:
    t = pa.types
    return bool(
        t.is_list(data_type)
        or t.is_large_list(data_type)
        or t.is_list_view(data_type)
        or t.is_large_list_view(data_type)
    )
