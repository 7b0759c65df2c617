"""The rows of one table's load, read in Arrow batches that know their positions: whole dlt
job files (what the sink gets), or one in-memory RecordBatch (tools and tests).

``SourceRows.from_files(paths, columns, batch_rows)`` reads the files one after another (the
row numbers run on across them), only the mapped ``columns`` (all of them when one is
missing, so that the mapping check can name every missing column); a column some files lack
(dlt added it to the table mid-load) is null in their rows, and a column whose type differs
between files is read as the type both widen to (``pa.unify_schemas``, permissive), or
refused when there is none (``ConfigurationError`` naming it);
``SourceRows.from_batch(batch, first_row)`` wraps a batch whose first row is ``first_row`` of
the load. Either way:

* ``schema``: the Arrow schema of what is read (for files, from their footers: no data read);
* ``batch_rows``: how many rows a read holds in memory at a time (the files' ``batch_rows``;
  a batch's own size), which is what a reader of these rows may hold;
* ``batches()``: ``(batch, first_row)`` pairs, ``first_row`` being the 0-based row number of the
  batch's first row;
* ``reader(only=None)``: the same rows (or those of the row numbers ``only`` holds) as one
  streaming ``RecordBatchReader`` for DuckDB to scan, normalized and with the row numbers as
  ``ROW_COLUMN`` (``arrow_utils.with_row_numbers``);
  ``rows_read`` counts what it has yielded, ``values_read`` its non-null values per column.
  Column names DuckDB cannot tell apart are refused first (``ConfigurationError`` naming
  them): two that differ only in case (its identifiers ignore case: one column would feed
  the other's field), one holding a NUL character, one starting with ``__sg_`` (the
  destination's own columns, such as the row numbers).

``count_values(paths, column)``: how many rows of the files hold a value in one column (a
dlt variant column: ``dispositions.refuse_variants``), reading that column alone.

A file may be read several times (the plan reads it whole, the render only if a row needs
sending); each read streams, so memory is bounded by ``batch_rows``, not by the file.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sendgrid_destination.arrow_utils import OWN_COLUMN_PREFIX, normalize_arrow, with_row_numbers
from sendgrid_destination.errors import ConfigurationError

# The default of ``read_batch_rows``, and what rows that do not say hold at a time.
DEFAULT_BATCH_ROWS = 100_000


class SourceRows:
    def __init__(self, schema: pa.Schema, batch_rows: int = DEFAULT_BATCH_ROWS) -> None:
        self.schema = schema
        self.batch_rows = batch_rows
        self.rows_read = 0
        # Per column, the values that were not null in what ``reader()`` yielded.
        self.values_read: dict[str, int] = {}

    @staticmethod
    def from_file(path: str, columns: Sequence[str], batch_rows: int) -> SourceRows:
        return _FileRows([path], columns, batch_rows)

    @staticmethod
    def from_files(paths: Sequence[str], columns: Sequence[str], batch_rows: int) -> SourceRows:
        return _FileRows(paths, columns, batch_rows)

    @staticmethod
    def from_batch(batch: pa.RecordBatch, first_row: int = 0) -> SourceRows:
        return _BatchRows(batch, first_row)

    def batches(self) -> Iterator[tuple[pa.RecordBatch, int]]:
        raise NotImplementedError

    def reader(self, only: np.ndarray | None = None) -> pa.RecordBatchReader:
        """``only``: the row numbers to yield (sorted), else every row; either way every row
        is read and counted."""
        check_column_names(self.schema.names)
        self.rows_read = 0
        self.values_read = dict.fromkeys(self.schema.names, 0)
        numbered = (
            part for batch, first in self.batches() for part in self._numbered(batch, first, only)
        )
        first = next(numbered, None)
        if first is None:
            empty = with_row_numbers(self.schema.empty_table(), 0)
            return pa.RecordBatchReader.from_batches(empty.schema, iter(()))
        return pa.RecordBatchReader.from_batches(first.schema, _chain(first, numbered))

    def _numbered(
        self, batch: pa.RecordBatch, first_row: int, only: np.ndarray | None
    ) -> list[pa.RecordBatch]:
        self.rows_read += batch.num_rows
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            self.values_read[name] = self.values_read.get(name, 0) + len(column) - column.null_count
        if only is not None:
            lo, hi = np.searchsorted(only, [first_row, first_row + batch.num_rows])
            if hi - lo < batch.num_rows:
                # Picked before the values are normalized and checked for UTF-8: a second
                # read for the few rows a rerun changed then costs little more than decoding.
                # (Not a join in DuckDB: it built its hash table on the source side, every
                # column of every row, to keep 1% of them.)
                picked = only[lo:hi]
                return list(_picked(batch, first_row, picked).to_batches())
        return list(with_row_numbers(batch, first_row).to_batches())


def _picked(batch: pa.RecordBatch, first_row: int, picked: np.ndarray) -> pa.Table:
    """``with_row_numbers`` of the ``picked`` rows of ``batch`` (which starts at ``first_row``):
    normalized first, since ``take`` has no kernel for some source types (views)."""
    taken = normalize_arrow(batch).take(pa.array(picked - first_row))
    return with_row_numbers(taken, first_row, picked)


def check_column_names(names: Sequence[str]) -> None:
    """Refuse names DuckDB cannot tell apart (see the module docstring)."""
    seen: dict[str, str] = {}
    for name in names:
        if "\x00" in name:
            raise ConfigurationError(
                f"Column {name!r} holds a NUL character, which no SQL identifier can: rename "
                "it in the source."
            )
        if name.lower().startswith(OWN_COLUMN_PREFIX):
            raise ConfigurationError(
                f"Column {name!r} starts with {OWN_COLUMN_PREFIX!r}, which the destination "
                "keeps for its own columns: rename it in the source."
            )
        other = seen.setdefault(name.lower(), name)
        if other != name:
            raise ConfigurationError(
                f"Columns {other!r} and {name!r} differ only in case, which the destination's "
                "SQL (DuckDB: identifiers ignore case) cannot tell apart: rename one in the "
                "source (dlt's default naming convention, snake_case, lowercases names)."
            )


class _FileRows(SourceRows):
    def __init__(self, paths: Sequence[str], columns: Sequence[str], batch_rows: int) -> None:
        self.paths = list(paths)
        available = _unified([pq.read_schema(path) for path in self.paths])
        wanted = [c for c in dict.fromkeys(columns) if c in available.names]
        self._columns = wanted if len(wanted) == len(set(columns)) else None
        super().__init__(
            available
            if self._columns is None
            else pa.schema([available.field(c) for c in self._columns]),
            batch_rows,
        )

    def batches(self) -> Iterator[tuple[pa.RecordBatch, int]]:
        first = 0
        for path in self.paths:
            # pre_buffer (pyarrow's default) keeps every row group read so far buffered until
            # the file is closed: streaming a 10M-row file grew RSS by 600 MB; without, 60 MB.
            with pq.ParquetFile(path, pre_buffer=False) as source:
                names = set(source.schema_arrow.names)
                present = [c for c in self.schema.names if c in names]
                for batch in source.iter_batches(batch_size=self.batch_rows, columns=present):
                    yield _conformed(batch, self.schema), first
                    first += batch.num_rows


def count_values(paths: Sequence[str], column: str) -> int:
    """How many rows of these job files hold a value in ``column`` (0 where it is absent)."""
    found = 0
    for path in paths:
        with pq.ParquetFile(path, pre_buffer=False) as source:
            if column in source.schema_arrow.names:
                read = source.read(columns=[column]).column(0)
                found += len(read) - read.null_count
    return found


def _unified(schemas: list[pa.Schema]) -> pa.Schema:
    """The columns of every file, each in the type all the files' types widen to."""
    if len(schemas) == 1:
        return schemas[0]
    try:
        return pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise ConfigurationError(
            "The job files of this table disagree on a column's type, and no type holds both "
            f"({str(exc).splitlines()[0]}): give the column one type in the source."
        ) from None


def _conformed(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """``batch`` with ``schema``'s columns: the missing ones null, the others cast to it."""
    if batch.schema.equals(schema):
        return batch
    columns = []
    for field in schema:
        at = batch.schema.get_field_index(field.name)
        if at < 0:
            columns.append(pa.nulls(batch.num_rows, field.type))
        else:
            columns.append(batch.column(at).cast(field.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


class _BatchRows(SourceRows):
    def __init__(self, batch: pa.RecordBatch, first_row: int) -> None:
        super().__init__(batch.schema, max(batch.num_rows, 1))
        self._batch = batch
        self._first_row = first_row

    def batches(self) -> Iterator[tuple[pa.RecordBatch, int]]:
        if self._batch.num_rows:
            yield self._batch, self._first_row


def _chain(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest
