"""``parquet_schema``: one type per column that every file's values cast into without loss,
or a refusal naming the column, two files and their types (never a value)."""

from __future__ import annotations

import datetime
import itertools
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from sendgrid_destination.errors import SyncFileError
from sendgrid_destination.parquet_schema import parquet_schema

_AT = datetime.datetime(2026, 1, 2, 3, 4, 5, 123000)
# Each kind with the values that strain it most.
KINDS: dict[str, pa.Array] = {
    "int32": pa.array([-(2**31), 2**31 - 1], pa.int32()),
    "int64": pa.array([-(2**63), 2**63 - 1], pa.int64()),
    "uint64": pa.array([0, 2**64 - 1], pa.uint64()),
    "double": pa.array([1.5, -2.25]),
    "decimal(5,2)": pa.array([Decimal("999.99"), Decimal("-1.50")], pa.decimal128(5, 2)),
    "decimal(38,10)": pa.array([Decimal("1234567890123456789012345678.0123456789")] * 2),
    "bool": pa.array([True, False]),
    "text": pa.array(["02134", "n/a"]),
    "dictionary": pa.array(["x", "y"]).dictionary_encode(),
    "date": pa.array([_AT.date()] * 2, pa.date32()),
    "ms UTC": pa.array([_AT] * 2, pa.timestamp("ms", "UTC")),
    "us Paris": pa.array([_AT] * 2, pa.timestamp("us", "Europe/Paris")),
    "naive us": pa.array([_AT] * 2, pa.timestamp("us")),
    "list": pa.array([[1], [2]]),
    "nulls": pa.nulls(2),
}


def _writes_views() -> bool:
    """Whether this pyarrow writes view types to parquet (pyarrow 18, the lowest we allow,
    does not: such files come from newer writers)."""
    try:
        pq.write_table(pa.table({"c": pa.array(["x"], pa.string_view())}), pa.BufferOutputStream())
    except pa.ArrowNotImplementedError:
        return False
    return True


if _writes_views():
    KINDS["text view"] = pa.array(["x", "y"], pa.string_view())


def _files(tmp_path: Path, *columns: pa.Array) -> list[str]:
    files = []
    for number, column in enumerate(columns, start=1):
        files.append(str(tmp_path / f"{number}.parquet"))
        pq.write_table(pa.table({"c": column}), files[-1])
    return files


@pytest.mark.parametrize(("first", "later"), list(itertools.product(KINDS, repeat=2)))
def test_any_two_kinds_are_read_whole_or_refused_naming_the_column(
    tmp_path: Path, first: str, later: str
) -> None:
    files = _files(tmp_path, KINDS[first], KINDS[later])

    try:
        schema = parquet_schema(files)
    except SyncFileError as refused:
        assert "list" in (first, later)  # the one kind text cannot hold
        assert "Column 'c' is " in str(refused) and "1.parquet" in str(refused)
        return
    if {first, later} in ({"int64", "double"}, {"uint64", "double"}):
        # Widened to double, as documented: an integer beyond 2**53 then stops the scan.
        assert schema.field("c").type == pa.float64()
        return
    table = ds.dataset(files, schema=schema, format="parquet").to_table()

    assert table.num_rows == 4
    if pa.types.is_string(schema.field("c").type) and "text" in first + later:
        assert table.column("c").null_count == sum(k == "nulls" for k in (first, later)) * 2


def test_the_refusal_names_the_type_the_named_file_holds(tmp_path: Path) -> None:
    # 1.parquet int64, 2.parquet double (widened), 3.parquet lists.
    files = _files(tmp_path, pa.array([1], pa.int64()), pa.array([1.5]), pa.array([["x"]]))

    with pytest.raises(SyncFileError) as refused:
        parquet_schema(files)

    message = str(refused.value)
    assert "is list<element: string> in '" in message and "3.parquet' and int64 in '" in message


@pytest.mark.parametrize("later", [pa.array(["10"]), pa.array([True])])
def test_a_cursor_that_would_become_text_is_refused(tmp_path: Path, later: pa.Array) -> None:
    files = _files(tmp_path, pa.array([9], pa.int64()), later)

    with pytest.raises(SyncFileError, match="cursor"):
        parquet_schema(files, cursor="c")
    assert parquet_schema(files).field("c").type == pa.string()  # not the cursor: text


def test_integers_and_decimals_take_a_decimal_wide_enough_for_both(tmp_path: Path) -> None:
    files = _files(
        tmp_path, pa.array([Decimal("1.50")], pa.decimal128(5, 2)), pa.array([3], pa.int64())
    )

    assert parquet_schema(files).field("c").type == pa.decimal128(21, 2)


def _read(files: list[str], cursor: str | None = None) -> pa.Table:
    return ds.dataset(files, schema=parquet_schema(files, cursor), format="parquet").to_table()


_AT0 = datetime.datetime(2026, 1, 2, 3, 4, 5)


def test_an_all_null_file_does_not_turn_zoned_times_into_text(tmp_path: Path) -> None:
    # The middle file wrote the column with nulls only (the null type): it takes any type.
    files = _files(
        tmp_path,
        pa.array([_AT0], pa.timestamp("ms", "UTC")),
        pa.nulls(1),
        pa.array([_AT0], pa.timestamp("us", "Europe/Paris")),
    )
    assert pa.types.is_timestamp(parquet_schema(files).field("c").type)


def test_an_all_null_file_does_not_refuse_a_timestamp_cursor(tmp_path: Path) -> None:
    files = _files(
        tmp_path,
        pa.array([_AT0], pa.timestamp("ms", "UTC")),
        pa.nulls(1),
        pa.array([_AT0], pa.timestamp("us", "Europe/Paris")),
    )
    assert pa.types.is_timestamp(parquet_schema(files, cursor="c").field("c").type)


def test_an_all_null_file_does_not_turn_integers_and_decimals_into_text(tmp_path: Path) -> None:
    files = _files(
        tmp_path,
        pa.array([3], pa.int64()),
        pa.nulls(1),
        pa.array([Decimal("1.50")], pa.decimal128(5, 2)),
    )
    assert pa.types.is_decimal(parquet_schema(files).field("c").type)


def test_decimals_beside_doubles_keep_their_digits(tmp_path: Path) -> None:
    # Arrow widens them to double: 20 digits became 17, silently. Now text.
    exact = Decimal("12345678901234567890.123456789")
    files = _files(tmp_path, pa.array([1.5]), pa.array([exact], pa.decimal128(38, 9)))
    values = [str(v) for v in _read(files).column("c").to_pylist()]
    assert any(v.startswith("12345678901234567890.12") for v in values), values


def test_decimals_beside_float32_keep_their_value(tmp_path: Path) -> None:
    # Arrow widens them to float32: 123.45 was read as 123.44999694824219. Now text.
    files = _files(
        tmp_path, pa.array([1.5], pa.float32()), pa.array([Decimal("123.45")], pa.decimal128(5, 2))
    )
    values = _read(files).column("c").to_pylist()
    assert any(str(v) == "123.45" for v in values), values


def test_text_beside_binary_is_refused_not_read_as_bytes(tmp_path: Path) -> None:
    # Arrow widens text and binary to binary: the text file's values became bytes.
    files = _files(tmp_path, pa.array(["02134"]), pa.array([b"x"]))

    with pytest.raises(SyncFileError, match=r"is binary in '.*2\.parquet' and string in"):
        parquet_schema(files)


def test_a_sentinel_date_in_microseconds_beside_nanoseconds_is_read(tmp_path: Path) -> None:
    # 9999-12-31 (a common valid_to sentinel) in a timestamp[us] file does not fit
    # timestamp[ns], the finest unit: the scan failed (out of bounds).
    far = datetime.datetime(9999, 12, 31)
    files = _files(
        tmp_path, pa.array([far], pa.timestamp("us")), pa.array([_AT0], pa.timestamp("ns"))
    )
    assert _read(files).num_rows == 2
