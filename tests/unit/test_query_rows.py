"""A query's rows typed once per column (``query_rows``): every chunk of one query has one
schema, an all-null column keeps its name as text, JSON and decimals arrive as text."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
from hypothesis import example, given
from hypothesis import strategies as st

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
def test_any_values_convert_and_a_column_changes_type_only_once_decided_or_to_text(
    chunks: list[list[tuple[Any, Any]]],
) -> None:
    tables = list(QueryRows(["a", "b"]).tables(chunks))
    seen: dict[str, pa.DataType] = {}
    for chunk, table in zip(chunks, tables, strict=False):
        assert table.num_rows == len(chunk) and table.column_names == ["a", "b"]
        for field in table.schema:
            before = seen.get(field.name)
            if before is not None and before != field.type:
                assert field.type == pa.string()  # the only change once decided: to text
            if not pa.types.is_null(field.type):
                seen[field.name] = field.type
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


def test_values_of_a_column_that_fell_back_to_text_are_spelled_as_their_type_renders() -> None:
    rows = QueryRows(["flag", "at", "day"])
    plus_two = datetime.timezone(datetime.timedelta(hours=2))
    at = datetime.datetime(900, 5, 1, 10, tzinfo=plus_two)
    rows.table([(True, at, datetime.date(900, 5, 1))])  # decided: bool, timestamp, date
    mixed = rows.table([(False, at, datetime.date(900, 5, 1)), ("x", "y", "z")])

    assert mixed.to_pylist()[0] == {
        "flag": "false",
        "at": "0900-05-01T08:00:00Z",
        "day": "0900-05-01",
    }
