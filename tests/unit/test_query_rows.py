"""A query's rows typed once per column (``query_rows``): every chunk of one query has one
schema, an all-null column keeps its name as text, JSON and decimals arrive as text."""

from __future__ import annotations

import datetime
import re
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from sendgrid_destination.errors import SyncFileError
from sendgrid_destination.query_rows import QueryRows

_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True),
    st.text(max_size=5),
    st.decimals(allow_nan=False, places=2, max_value=10**40, min_value=-(10**40)),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.lists(st.text(max_size=3), max_size=2),
    st.dates(),
)


@given(st.lists(st.lists(st.tuples(_VALUES, _VALUES), min_size=1, max_size=6), max_size=4))
# A float NaN among dates: pyarrow raised a plain ValueError, which stopped the extraction.
@example([[(None, datetime.date(2000, 1, 1)), (None, float("nan"))]])
@example([[(datetime.date(2000, 1, 1), 1)], [(float("nan"), 2)]])
# An int then a Decimal: pyarrow typed the column decimal128(2, 2), broken by the next chunk.
@example([[(None, 0), (None, Decimal("0.00"))], [(None, 0.0)]])
def test_any_values_convert_with_one_type_per_column_or_stop_naming_the_column(
    chunks: list[list[tuple[Any, Any]]],
) -> None:
    rows = QueryRows(["a", "b"])
    tables: list[pa.Table] = []
    try:
        tables.extend(rows.tables(chunks))
    except SyncFileError as exc:  # a later chunk broke the type its first values decided
        assert re.match(r"Column '[ab]' of the query holds .+ values in its first", str(exc))
        assert "CAST(" in str(exc)
    seen: dict[str, pa.DataType] = {}
    for chunk, table in zip(chunks, tables, strict=False):
        assert table.num_rows == len(chunk) and table.column_names == ["a", "b"]
        for field in table.schema:
            if not pa.types.is_null(field.type):
                assert seen.setdefault(field.name, field.type) == field.type  # decided once
    if len(tables) < len(chunks):
        return
    # Every column is typed somewhere (in a chunk, or in a last table of no rows).
    typed = {f.name for t in tables for f in t.schema if not pa.types.is_null(f.type)}
    assert typed == {"a", "b"}
    assert all(t.num_rows == 0 for t in tables[len(chunks) :])


def test_a_query_with_no_rows_is_one_table_of_no_rows_with_text_columns() -> None:
    (table,) = QueryRows(["email", "phone"]).tables([])

    assert table.num_rows == 0
    assert table.schema == pa.schema([("email", pa.string()), ("phone", pa.string())])


def test_a_column_takes_the_type_of_its_first_values_whatever_chunk_they_come_in() -> None:
    late = list(QueryRows(["email", "n"]).tables([[("a@x.co", None)], [("b@x.co", 5)]]))
    never = list(QueryRows(["email", "n"]).tables([[("a@x.co", None)]]))

    assert [t.schema.field("n").type for t in late] == [pa.null(), pa.int64()]
    # Never a value: text, in a last table of no rows, so that the column exists.
    assert [t.num_rows for t in never] == [1, 0]
    assert never[-1].schema == pa.schema([("email", pa.string()), ("n", pa.string())])


def test_json_of_any_shape_decimals_and_huge_integers_arrive_as_exact_text() -> None:
    rows = QueryRows(["extra", "amount", "big"])
    first = rows.table([({"k": 1}, Decimal("1.50"), 2**70), ("plain", Decimal("1E+2"), 3)])
    later = rows.table([(["VIP", "Gold"], Decimal("123456789012345678901234567890.12"), None)])

    assert first.to_pylist() == [
        {"extra": '{"k":1}', "amount": "1.50", "big": str(2**70)},
        {"extra": "plain", "amount": "100", "big": "3"},
    ]
    assert later.to_pylist() == [
        {"extra": '["VIP","Gold"]', "amount": "123456789012345678901234567890.12", "big": None}
    ]


def test_a_type_decided_by_the_first_values_holds_for_later_chunks() -> None:
    rows = QueryRows(["n", "at"])
    utc = datetime.UTC
    rows.table([(1, datetime.datetime(2026, 1, 1, tzinfo=utc))])
    plus_two = datetime.timezone(datetime.timedelta(hours=2))
    later = rows.table([(2, datetime.datetime(2026, 1, 1, 2, tzinfo=plus_two))])

    assert later.schema == pa.schema([("n", pa.int64()), ("at", pa.timestamp("us", tz="UTC"))])
    assert later.column("at")[0].as_py() == datetime.datetime(2026, 1, 1, tzinfo=utc)


def test_values_of_mixed_kinds_in_the_deciding_chunk_are_text_spelled_as_their_type_renders() -> (
    None
):
    rows = QueryRows(["flag", "at", "day"])
    plus_two = datetime.timezone(datetime.timedelta(hours=2))
    at = datetime.datetime(900, 5, 1, 10, tzinfo=plus_two)
    mixed = rows.table([(False, at, datetime.date(900, 5, 1)), ("x", "y", "z")])

    assert mixed.schema.types == [pa.string()] * 3
    assert mixed.to_pylist()[0] == {
        "flag": "false",
        "at": "0900-05-01T08:00:00Z",
        "day": "0900-05-01",
    }


def test_a_later_chunk_that_breaks_the_decided_type_stops_naming_the_column_and_the_fix() -> None:
    rows = QueryRows(["email", "v"])
    rows.table([("a@x.co", 1), ("b@x.co", 2)])

    with pytest.raises(SyncFileError, match=r"'v' of the query holds int64 values in its first 2"):
        rows.table([("c@x.co", "n/a")])


def test_a_fraction_after_whole_numbers_stops_instead_of_being_cut_to_a_whole_number() -> None:
    rows = QueryRows(["n", "seq"], cursor="seq")
    rows.table([(1, Decimal("1")), (2, Decimal("2"))])  # both decided int64

    with pytest.raises(SyncFileError, match=r"CAST\(n AS TEXT\)"):
        rows.table([(2.5, Decimal("3"))])
    with pytest.raises(SyncFileError, match=r"CAST\(seq AS DOUBLE PRECISION\)"):
        rows.table([(3, Decimal("3.5"))])


def test_a_numeric_cursor_stays_a_number_so_that_dlt_compares_it_as_one() -> None:
    whole = QueryRows(["seq"], cursor="seq")
    first = whole.table([(Decimal("9"),), (Decimal("10"),)])
    big = QueryRows(["n"], cursor="n").table([(2**70,)])
    fraction = QueryRows(["at"], cursor="at").table([(Decimal("1.5"),), (2,)])

    assert first.schema.field("seq").type == pa.int64() and first.column("seq").to_pylist() == [
        9,
        10,
    ]
    assert big.schema.field("n").type == pa.float64()
    assert fraction.column("at").to_pylist() == [1.5, 2.0]
    assert QueryRows(["seq"]).table([(Decimal("9"),)]).schema.field("seq").type == pa.string()


@pytest.mark.parametrize("value", [Decimal("Infinity"), Decimal("-Infinity"), Decimal("NaN")])
def test_a_numeric_cursor_that_is_not_finite_is_a_float_not_a_crash(value: Decimal) -> None:
    table = QueryRows(["seq"], cursor="seq").table([(Decimal("1"),), (value,)])

    assert table.schema.field("seq").type == pa.float64()
    assert str(table.column("seq")[1].as_py()) == str(float(value))
