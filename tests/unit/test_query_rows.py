"""A query's rows typed once per column (``query_rows``): every chunk of one query has one
schema, an all-null column keeps its name as text, JSON and decimals arrive as text."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
from hypothesis import given
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
def test_any_values_convert_and_chunks_change_type_only_by_falling_back_to_text(
    chunks: list[list[tuple[Any, Any]]],
) -> None:
    rows = QueryRows(["a", "b"])
    seen: dict[str, pa.DataType] = {}
    for chunk in chunks:
        table = rows.table(chunk)
        assert table.num_rows == len(chunk) and table.column_names == ["a", "b"]
        for field in table.schema:
            assert not pa.types.is_null(field.type)
            if field.name in seen and seen[field.name] != field.type:
                assert field.type == pa.string()  # the only change: to text, for good
            seen[field.name] = field.type


def test_an_all_null_column_and_a_query_with_no_rows_are_text_columns() -> None:
    assert QueryRows(["email", "phone"]).empty().schema == pa.schema(
        [("email", pa.string()), ("phone", pa.string())]
    )
    rows = QueryRows(["email", "phone"])
    assert rows.table([("a@x.co", None)]).schema.field("phone").type == pa.string()
    assert rows.table([("b@x.co", 5)]).column("phone").to_pylist() == ["5"]


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


def test_a_column_decided_as_text_spells_values_as_their_type_renders_in_a_text_field() -> None:
    rows = QueryRows(["flag", "at", "day"])
    rows.table([(None, None, None)])  # all null first: decided as text
    plus_two = datetime.timezone(datetime.timedelta(hours=2))
    later = rows.table(
        [(True, datetime.datetime(2024, 5, 1, 10, tzinfo=plus_two), datetime.date(2024, 5, 1))]
    )

    assert later.to_pylist() == [
        {"flag": "true", "at": "2024-05-01T08:00:00Z", "day": "2024-05-01"}
    ]
