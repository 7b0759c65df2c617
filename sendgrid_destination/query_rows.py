"""A SQL query's rows (DB-API tuples, in chunks) as Arrow tables, each column typed once.

A ``query`` source has no reflected table to type its columns (``sql_table`` has), so the
types come from the values, decided once per column and kept for every later chunk (dlt must
see one type per column, or it splits the load):

* the first chunk holding a value decides, as pyarrow reads it: ``bool``, ``int`` (within 64
  bits), ``float``, ``str``, dates and times;
* JSON and arrays (``dict``, ``list``: PostgreSQL ``json``, ``jsonb``, ``text[]``) become
  their compact JSON text, as dlt's ``sql_table`` hands them over (``alternate_emails`` and
  ``list_column`` read a JSON array of names; a Text field gets the JSON as it is);
* ``Decimal`` becomes its plain decimal text (every digit kept: a Number field reads it
  exactly; numeric precision changes from chunk to chunk, a text type does not), and so do
  integers beyond 64 bits, UUIDs and anything else pyarrow cannot hold;
* a column with no value yet stays undecided (Arrow's null type: dlt leaves it out of that
  chunk, and the destination reads the chunks' files as one table, missing columns null), so
  that its type is the one its values give, whatever chunk they start in; a column with no
  value in the whole query, and every column of a query with no rows, is text, in one last
  table of no rows (dlt drops a column it never saw typed, and a mapping must find it);
* a later chunk whose values do not fit the decided type is turned into text, that column
  from then on too (spelled as the destination spells the type in a Text field where it
  can: ``true``, ``0900-05-06``, ``2024-05-01T08:00:00Z``).

``QueryRows(names).tables(chunks)`` converts a query's chunks (``sources``).
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa

_INT64 = (-(2**63), 2**63 - 1)


class QueryRows:
    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self._types: dict[str, pa.DataType] = {}

    def tables(self, chunks: Iterable[Sequence[Sequence[Any]]]) -> Iterator[pa.Table]:
        """Each chunk as a table; then, if a column never held a value (or there was no
        chunk), a table of no rows that has every column typed (module doc)."""
        for chunk in chunks:
            yield self.table(chunk)
        if len(self._types) < len(self.names):
            for name in self.names:
                self._types.setdefault(name, pa.string())
            yield self.table([])

    def table(self, chunk: Sequence[Sequence[Any]]) -> pa.Table:
        columns = [self._column(i, name, chunk) for i, name in enumerate(self.names)]
        return pa.table(columns, names=self.names)

    def _column(self, i: int, name: str, chunk: Sequence[Sequence[Any]]) -> pa.Array:
        values = [row[i] for row in chunk]
        decided = self._types.get(name)
        if decided is None:
            first = next((v for v in values if v is not None), None)
            if first is None:
                return pa.nulls(len(values))  # undecided until a value comes
            decided = self._types[name] = _type_of(first, values)
        if pa.types.is_string(decided):
            return pa.array([_text(v) for v in values], pa.string())
        try:
            return pa.array(values, decided)
        except _UNCONVERTIBLE:
            self._types[name] = pa.string()
            return pa.array([_text(v) for v in values], pa.string())


# What pyarrow raises for Python values it cannot put in one array: its own errors (subclasses
# of ValueError and TypeError) and plain ones, e.g. ValueError for a float NaN among dates.
_UNCONVERTIBLE = (ValueError, TypeError, OverflowError)


def _type_of(first: Any, values: list[Any]) -> pa.DataType:
    """The column's type, from its first value (and pyarrow's reading of the chunk)."""
    if isinstance(first, dict | list | tuple | Decimal | uuid.UUID | str | bytes):
        return pa.binary() if isinstance(first, bytes) else pa.string()
    ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    if any(not _INT64[0] <= v <= _INT64[1] for v in ints):
        return pa.string()  # beyond 64 bits: the digits, as text
    try:
        inferred = pa.array(values).type
    except _UNCONVERTIBLE:
        return pa.string()
    return pa.string() if pa.types.is_null(inferred) else inferred


def _text(value: Any) -> str | None:
    """A value as text, spelled as the destination spells its type in a Text field (so that
    a column decided as text renders what a typed one would: no resend when the type a
    query's values give changes between runs)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict | list | tuple):  # as dlt's sql_table hands JSON over
        return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, datetime.datetime):  # the default date_format, in UTC
        utc = value.astimezone(datetime.UTC).replace(tzinfo=None) if value.tzinfo else value
        return utc.isoformat(timespec="seconds") + "Z"  # a four-digit year, as strftime is not
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)
