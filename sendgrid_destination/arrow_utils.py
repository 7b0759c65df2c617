"""Arrow plumbing between dlt's files and DuckDB: types DuckDB scans well, row numbers, chunks.

* ``normalize_arrow(batch)``: the same values in types DuckDB handles (see its docstring);
* ``with_row_numbers(batch, first_row)``: the batch, normalized, with its 0-based row numbers
  in the load's rows as ``ROW_COLUMN``;
* ``chunked(table)``: the table split into chunks of ``SCAN_CHUNK_ROWS``, so that DuckDB, which
  scans one Arrow chunk per thread, uses every core.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

ROW_COLUMN = "__sg_row"
SCAN_CHUNK_ROWS = 16_384


def with_row_numbers(batch: pa.RecordBatch | pa.Table, first_row: int) -> pa.Table:
    """The batch, normalized for DuckDB, with its row numbers as ``ROW_COLUMN``."""
    rows = pa.array(np.arange(first_row, first_row + batch.num_rows, dtype=np.int64))
    return pa.table(normalize_arrow(batch)).append_column(ROW_COLUMN, rows)


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
