"""One Arrow schema for a set of parquet files whose columns may differ from file to file.

Contract: ``parquet_schema(files, cursor)`` reads only the files' schemas and returns every
column of every file (a column a later file adds is null in the earlier ones), each with one
type that every file's values cast into without loss, or raises ``SyncFileError`` naming the
column, two of the files and their types (never a value):

* a dictionary column counts as its values' type, a view type as its plain one;
* a file whose column holds only nulls takes any other file's type;
* types Arrow widens (int32 then int64, int then double, decimals of different precision)
  are widened; integers and decimals together take a decimal wide enough for both (Arrow's
  own choice, decimal128(20, 2) for int64 and decimal128(5, 2), cannot hold an int64), and
  signed beside unsigned 64-bit integers a decimal of 20 digits; a decimal beside a float
  stays a float only when the float gives its digits back (a double, up to 15 digits), else
  both are text. Integers beside a double are widened to double, as documented: one beyond 2**53
  then stops the scan;
* times whose zone or unit differs take the first file's zone and the finest unit, but
  microseconds rather than nanoseconds when units differ (a 9999-12-31 of a coarser file
  does not fit nanoseconds);
* other types text holds (numbers, booleans, dates, text) are read as text: cast to the first
  file's int64, "02134" became 2134 silently;
* anything else (a list beside a number, bytes beside text) stops the run, as does a
  ``cursor`` column that would become text: dlt would compare it as text ("10" before "9")
  and drop new rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyarrow as pa

from sendgrid_destination.errors import SyncFileError

_t = pa.types
_MAX_DECIMAL128 = 38
_MAX_DECIMAL256 = 76
_UNITS = ("s", "ms", "us", "ns")


def parquet_schema(files: Sequence[str], cursor: str | None = None) -> pa.Schema:
    import pyarrow.parquet as pq

    seen: dict[str, list[tuple[str, pa.DataType]]] = {}
    for path in files:
        for field in pq.read_schema(path):
            seen.setdefault(field.name, []).append((path, _plain(field.type)))
    return pa.schema(
        [pa.field(name, _common(name, kinds, name == cursor)) for name, kinds in seen.items()]
    )


def _plain(kind: pa.DataType) -> pa.DataType:
    if _t.is_dictionary(kind):
        return _plain(kind.value_type)
    if _t.is_string_view(kind):
        return pa.string()
    if _t.is_binary_view(kind):
        return pa.binary()
    return kind


def _common(name: str, kinds: list[tuple[str, pa.DataType]], is_cursor: bool) -> pa.DataType:
    # A file whose column holds only nulls has the null type: it takes any other.
    types = list(dict.fromkeys(k for _, k in kinds if not _t.is_null(k))) or [pa.null()]
    if len(types) == 1:
        return types[0]
    if any(_is_binary(k) for k in types) and not all(_is_binary(k) for k in types):
        # Arrow widens text and bytes to bytes: text read as b'02134'.
        raise _refusal(name, kinds, _is_binary, "bytes and other values cannot be read as one")
    if all(_t.is_timestamp(k) for k in types):  # Arrow's choice would be nanoseconds
        return pa.timestamp(_unit(types), types[0].tz)
    found = _widened(types)
    if found is None and all(_t.is_integer(k) or _t.is_decimal(k) for k in types):
        found = _decimal_for(types)
    if found is None and all(_as_text(k) for k in types):
        if is_cursor:
            why = 'it is the cursor, and compared as text ("10" before "9") it would drop rows'
            raise _refusal(name, kinds, _is_text, why)
        found = pa.string()
    if found is None:
        raise _refusal(name, kinds, lambda k: not _as_text(k), "they cannot be read as one type")
    return found


def _unit(times: list[pa.DataType]) -> str:
    """The finest unit of ``times``, but microseconds beside nanoseconds: a far date (the
    9999-12-31 of an open-ended validity) of a coarser file does not fit nanoseconds."""
    units = {k.unit for k in times}
    finest = _UNITS[max(_UNITS.index(u) for u in units)]
    return "us" if finest == "ns" and len(units) > 1 else finest


def _is_binary(kind: pa.DataType) -> bool:
    return bool(_t.is_binary(kind) or _t.is_large_binary(kind) or _t.is_fixed_size_binary(kind))


def _widened(types: list[pa.DataType]) -> pa.DataType | None:
    """Arrow's permissive unification, if it holds every type's values."""
    try:
        schemas = [pa.schema([pa.field("c", kind)]) for kind in types]
        found = pa.unify_schemas(schemas, promote_options="permissive")[0].type
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    return found if all(_holds(found, kind) for kind in types) else None


def _holds(wide: pa.DataType, kind: pa.DataType) -> bool:
    if _t.is_integer(wide) and _t.is_integer(kind):
        (low, high), (wide_low, wide_high) = _int_range(kind), _int_range(wide)
        return wide_low <= low and high <= wide_high
    if _t.is_decimal(wide) and (_t.is_integer(kind) or _t.is_decimal(kind)):
        digits, scale = _digits(kind)
        return bool(wide.precision - wide.scale >= digits and wide.scale >= scale)
    if _t.is_floating(wide) and _t.is_decimal(kind):
        # A double gives back up to 15 digits as written; a float32 prints its binary
        # value once widened (123.45 as 123.44999694824219).
        return bool(wide.bit_width == 64 and kind.precision <= 15)
    return True


def _int_range(kind: pa.DataType) -> tuple[int, int]:
    bits = kind.bit_width
    if _t.is_unsigned_integer(kind):
        return 0, 2**bits - 1
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def _digits(kind: pa.DataType) -> tuple[int, int]:
    """Digits before the point and after, that ``kind`` may need."""
    if _t.is_integer(kind):
        low, high = _int_range(kind)
        return max(len(str(abs(low))), len(str(high))), 0
    return int(kind.precision - kind.scale), int(kind.scale)


def _decimal_for(types: list[pa.DataType]) -> pa.DataType | None:
    whole = max(_digits(kind)[0] for kind in types)
    scale = max(_digits(kind)[1] for kind in types)
    if whole + scale <= _MAX_DECIMAL128:
        return pa.decimal128(whole + scale, scale)
    if whole + scale <= _MAX_DECIMAL256:
        return pa.decimal256(whole + scale, scale)
    return None


def _as_text(kind: pa.DataType) -> bool:
    """Whether Arrow casts every value of ``kind`` to text (binary may not be UTF-8)."""
    return bool(
        _t.is_integer(kind)
        or _t.is_floating(kind)
        or _t.is_decimal(kind)
        or _t.is_boolean(kind)
        or _t.is_string(kind)
        or _t.is_large_string(kind)
        or _t.is_temporal(kind)
        or _t.is_null(kind)
    )


def _is_text(kind: pa.DataType) -> bool:
    return bool(_t.is_string(kind) or _t.is_large_string(kind))


def _refusal(
    name: str,
    kinds: list[tuple[str, pa.DataType]],
    odd: Callable[[pa.DataType], bool],
    why: str,
) -> SyncFileError:
    """Name the first file whose type is ``odd`` and the first file with another type."""
    path, kind = next(((p, k) for p, k in kinds if odd(k)), kinds[-1])
    other_path, other = next((p, k) for p, k in kinds if k != kind)
    return SyncFileError(
        f"Column {name!r} is {kind} in {path!r} and {other} in {other_path!r}: {why}. Make the "
        "parquet files agree on its type."
    )
