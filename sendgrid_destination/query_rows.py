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
* within the chunk that decides, values of mixed kinds make the column text (spelled as the
  destination spells the type in a Text field where it can: ``true``, ``0900-05-06``,
  ``2024-05-01T08:00:00Z``); a later chunk whose values do not fit the decided type stops
  the extraction with ``SyncFileError`` naming the column: dlt has written the earlier
  chunks with that type, and a file takes one type per column. A cast in the query fixes it;
* the cursor column (``cursor``) keeps numbers as numbers, since dlt compares its values to
  find new rows (as text, "10" < "9"): ``Decimal`` and integers beyond 64 bits become
  ``int64`` when the first chunk's are whole and fit, else ``float64``; a cursor stored as
  text by an earlier version is refused (``sources``: one ``--full-refresh`` mends it).

``QueryRows(names, cursor).tables(chunks)`` converts a query's chunks (``sources``).
"""

from __future__ import annotations

import datetime
import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any

import pyarrow as pa

from sendgrid_destination.errors import SyncFileError

_INT64 = (-(2**63), 2**63 - 1)


class QueryRows:
    def __init__(self, names: Sequence[str], cursor: str | None = None) -> None:
        self.names = list(names)
        self._cursor = cursor
        self._types: dict[str, pa.DataType] = {}
        self._rows = 0  # rows converted so far (an error says where a type broke)

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
        self._rows += len(chunk)
        return pa.table(columns, names=self.names)

    def _column(self, i: int, name: str, chunk: Sequence[Sequence[Any]]) -> pa.Array:
        values = [row[i] for row in chunk]
        decided = self._types.get(name)
        if decided is None:
            first = next((v for v in values if v is not None), None)
            if first is None:
                return pa.nulls(len(values))  # undecided until a value comes
            typing = _cursor_type if name == self._cursor else _type_of
            decided = self._types[name] = typing(first, values)
        if pa.types.is_string(decided):
            return pa.array([_text(v) for v in values], pa.string())
        if name == self._cursor and (pa.types.is_integer(decided) or pa.types.is_floating(decided)):
            values = [_number(v, pa.types.is_integer(decided)) for v in values]
        # pyarrow cuts 2.5 to 2 in an int64 array, without a word.
        if pa.types.is_integer(decided) and any(_fraction(v) for v in values):
            raise self._type_break(name, decided)
        try:
            return pa.array(values, decided)
        except _UNCONVERTIBLE:
            raise self._type_break(name, decided) from None

    def _type_break(self, name: str, decided: pa.DataType) -> SyncFileError:
        # A cursor must stay a number (as text, "10" < "9"); any other column may be text.
        cast = "DOUBLE PRECISION" if name == self._cursor else "TEXT"
        return SyncFileError(
            f"Column {name!r} of the query holds {decided} values in its first {self._rows:,} "
            "rows, then values that are not: dlt has loaded those rows with that type, and a "
            f"column keeps one. Cast it in the query (e.g. CAST({name} AS {cast})) so that "
            "every row has one type."
        )


# What pyarrow raises for Python values it cannot put in one array: its own errors (subclasses
# of ValueError and TypeError) and plain ones, e.g. ValueError for a float NaN among dates.
_UNCONVERTIBLE = (ValueError, TypeError, OverflowError)

# Values a column holds as text (module doc), wherever they come in the deciding chunk.
_TEXT_KINDS = (dict, list, tuple, Decimal, uuid.UUID, str)


def _type_of(first: Any, values: list[Any]) -> pa.DataType:
    """The column's type, from its first value (and pyarrow's reading of the chunk)."""
    if isinstance(first, bytes):
        return pa.binary()
    # Such a value anywhere in the chunk makes the column text: pyarrow would read 0 and
    # Decimal("0.00") as decimal128(2, 2), a precision the next chunk's decimals break.
    if any(isinstance(v, _TEXT_KINDS) for v in values):
        return pa.string()
    ints = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    if any(not _INT64[0] <= v <= _INT64[1] for v in ints):
        return pa.string()  # beyond 64 bits: the digits, as text
    try:
        inferred = pa.array(values).type
    except _UNCONVERTIBLE:
        return pa.string()
    return pa.string() if pa.types.is_null(inferred) else inferred


def _cursor_type(first: Any, values: list[Any]) -> pa.DataType:
    """A cursor's type: numbers stay numbers (module doc)."""
    numbers = [v for v in values if v is not None]
    if not all(isinstance(v, int | Decimal) and not isinstance(v, bool) for v in numbers):
        return _type_of(first, values)
    # Decimal("Infinity") equals its integral value, and int() of it overflows: a float.
    whole = all(
        v.is_finite() and v == v.to_integral_value() if isinstance(v, Decimal) else True
        for v in numbers
    )
    fits = all(_INT64[0] <= int(v) <= _INT64[1] for v in numbers if whole)
    return pa.int64() if whole and fits else pa.float64()


def _fraction(value: Any) -> bool:
    """A float or ``Decimal`` that is not a whole number (or not a number at all)."""
    if isinstance(value, float):
        return not value.is_integer()
    if isinstance(value, Decimal):
        return not value.is_finite() or value != value.to_integral_value()
    return False


def _number(value: Any, whole: bool) -> Any:
    """A cursor's ``Decimal`` (or integer) as the Python number pyarrow takes into ``int64``
    (``whole``) or ``float64``; anything else as it is (pyarrow refuses what does not fit)."""
    if not isinstance(value, Decimal | int) or isinstance(value, bool):
        return value
    if not whole:
        return float(value)
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    return value


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
