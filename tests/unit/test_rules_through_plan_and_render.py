"""The mapping's rules, through the real plan and render: rows in, contact JSON and rejects out
(example-based).

Each ``contact_json`` cell is one JSON object followed by a comma; the tests strip the comma
and parse it, so they check values, not DuckDB's formatting, except where the exact text is the
point (decimal digits).
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pyarrow as pa
import pytest

from sendgrid_destination.contact_model import (
    MAX_CUSTOM_TEXT_LENGTH,
    RESERVED_FIELDS,
    UPSERT_ONLY_FIELDS,
)
from sendgrid_destination.state import StateStore
from tests.planning import Planned, contact_sql, plan_rows

UTC = dt.UTC


def transform(
    mapping: dict,
    batch: pa.Table | pa.RecordBatch,
    types: dict | None = None,
    ids: dict | None = None,
    *,
    first_row: int = 0,
    store=None,
    **options,
) -> Planned:
    sql = contact_sql(mapping, batch.schema, types, ids, **options)
    return plan_rows(sql, batch, first_row=first_row, store=store)


def parsed(result: Planned) -> list[dict]:
    cells = result.contacts["contact_json"].to_pylist()
    assert all(cell.endswith(",") for cell in cells)
    return [json.loads(cell[:-1]) for cell in cells]


def rejects(result: Planned) -> list[tuple[int, str | None, str, str]]:
    return [
        (r["row_number"], r["contact_key"], r["column"], r["reason"])
        for r in result.rejects.to_pylist()
    ]


def one_custom(column: pa.Array, field_type: str, **options) -> Planned:
    """Rows u0@x.co, u1@x.co, ... with ``column`` mapped to custom field ``f`` (ID e1_X)."""
    batch = pa.table({"email": [f"u{i}@x.co" for i in range(len(column))], "c": column})
    return transform(
        {"email": "email", "custom_fields": {"f": "c"}},
        batch,
        {"f": field_type},
        {"f": "e1_X"},
        **options,
    )


def custom_values(result: Planned) -> dict[int, object]:
    """row_number -> value of custom field e1_X (absent when the key is missing)."""
    out = {}
    for row, contact in zip(result.contacts["row_number"].to_pylist(), parsed(result), strict=True):
        if "custom_fields" in contact:
            out[row] = contact["custom_fields"]["e1_X"]
    return out


# -- identifiers -------------------------------------------------------------------------------


def test_an_email_with_spaces_and_capitals_is_sent_trimmed_and_lower_cased():
    result = transform({"email": "email"}, pa.table({"email": ["  Jane.DOE@Example.COM  "]}))

    assert parsed(result) == [{"email": "jane.doe@example.com"}]
    assert result.contacts["contact_key"].to_pylist() == ["email:jane.doe@example.com"]


def test_other_identifiers_are_trimmed_but_keep_their_case():
    batch = pa.table({"ext": ["  CRM-42 "], "anon": [" Anon-X "], "phone": [" +14155550100 "]})

    result = transform(
        {"external_id": "ext", "anonymous_id": "anon", "phone_number_id": "phone"}, batch
    )

    assert parsed(result) == [
        {"external_id": "CRM-42", "anonymous_id": "Anon-X", "phone_number_id": "+14155550100"}
    ]
    # The key follows SendGrid's identifier priority, not the mapping's order.
    assert result.contacts["contact_key"].to_pylist() == ["phone_number_id:+14155550100"]


def test_a_numeric_external_id_is_sent_as_a_string():
    batch = pa.table(
        {
            "ext": pa.array([42, 7], pa.int64()),
            "dec": pa.array([Decimal(9), None], pa.decimal128(5)),
        }
    )

    result = transform({"external_id": "ext", "anonymous_id": "dec"}, batch)

    assert parsed(result) == [{"external_id": "42", "anonymous_id": "9"}, {"external_id": "7"}]


def test_the_contact_key_falls_back_to_the_next_identifier_when_the_first_is_empty():
    batch = pa.table({"email": ["a@x.co", "  ", None], "ext": ["e1", "e2", "e3"]})

    result = transform({"email": "email", "external_id": "ext"}, batch)

    assert result.contacts["contact_key"].to_pylist() == [
        "email:a@x.co",
        "external_id:e2",
        "external_id:e3",
    ]
    assert parsed(result)[1] == {"external_id": "e2"}


def test_a_row_with_every_identifier_empty_is_rejected_for_having_no_identifier():
    batch = pa.table(
        {"email": ["", None, " ", "a@x.co"], "ext": [None, "", "  ", None], "fn": list("abcd")}
    )

    result = transform({"email": "email", "external_id": "ext", "first_name": "fn"}, batch)

    assert result.contacts["row_number"].to_pylist() == [3]
    assert [(row, key) for row, key, _, _ in rejects(result)] == [(0, None), (1, None), (2, None)]
    for _, _, column, reason in rejects(result):
        assert reason.startswith("no identifier")
        assert column == "email, ext"


@pytest.mark.parametrize(
    "email", ["plainaddress", "a@b", "a b@x.co", "a@@x.co", "a@x.c", "ü@x.co", "a@-x.co"]
)
def test_an_invalid_email_is_rejected(email):
    result = transform({"email": "email"}, pa.table({"email": [email]}))

    assert result.contacts.num_rows == 0
    assert rejects(result) == [
        (0, f"email:{email.strip().lower()}", "email", "email: not a valid email address")
    ]


@pytest.mark.parametrize("phone", ["+14155550100", "+442071838750", "+12"])
def test_an_e164_phone_number_id_is_accepted(phone):
    result = transform({"phone_number_id": "p"}, pa.table({"p": [phone]}))

    assert parsed(result) == [{"phone_number_id": phone}]


NOT_E164 = ["4155550100", "+0123", "+1 415 555 0100", "+1234567890123456", "++1415", "+1-415"]


@pytest.mark.parametrize("phone", NOT_E164)
def test_a_phone_number_id_that_is_not_e164_is_rejected(phone):
    result = transform({"phone_number_id": "p"}, pa.table({"p": [phone]}))

    assert result.contacts.num_rows == 0
    assert [reason for *_, reason in rejects(result)] == [
        "phone_number_id: not an E.164 number like +14155550100"
    ]


def test_the_reserved_phone_number_field_must_be_e164_too():
    batch = pa.table({"email": ["a@x.co", "b@x.co"], "tel": ["+14155550100", NOT_E164[0]]})

    result = transform({"email": "email", "phone_number": "tel"}, batch)

    assert parsed(result) == [{"email": "a@x.co", "phone_number": "+14155550100"}]
    assert rejects(result) == [
        (1, "email:b@x.co", "tel", "phone_number: not an E.164 number like +14155550100")
    ]


# -- omission of empty values and custom_fields ------------------------------------------------


def test_nulls_and_empty_strings_are_omitted_never_sent_as_null():
    batch = pa.table(
        {
            "email": ["a@x.co", "b@x.co"],
            "fn": ["", None],
            "city": [None, "Paris"],
            "plan": ["", "gold"],
            "n": pa.array([None, 3], pa.int64()),
        }
    )

    result = transform(
        {
            "email": "email",
            "first_name": "fn",
            "city": "city",
            "custom_fields": {"plan": "plan", "n": "n"},
        },
        batch,
        {"plan": "Text", "n": "Number"},
        {"plan": "e1_T", "n": "e2_N"},
    )

    assert parsed(result) == [
        {"email": "a@x.co"},
        {"email": "b@x.co", "city": "Paris", "custom_fields": {"e1_T": "gold", "e2_N": 3}},
    ]
    assert "null" not in "".join(result.contacts["contact_json"].to_pylist())


def test_custom_fields_are_keyed_by_their_id_and_absent_when_the_row_has_none():
    batch = pa.table({"email": ["a@x.co", "b@x.co"], "plan": ["gold", None], "fn": ["A", "B"]})

    result = transform(
        {"email": "email", "first_name": "fn", "custom_fields": {"plan_tier": "plan"}},
        batch,
        {"plan_tier": "Text"},
        {"plan_tier": "e7_T"},
    )

    assert parsed(result) == [
        {"email": "a@x.co", "first_name": "A", "custom_fields": {"e7_T": "gold"}},
        {"email": "b@x.co", "first_name": "B"},
    ]


# -- Numbers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arrow_type", "values"),
    [
        (pa.int64(), [0, -7, 2**53 + 1, 2**63 - 1]),
        (pa.uint64(), [2**64 - 1]),
        (pa.int8(), [-128, 127]),
        (pa.float64(), [0.1, -2.5, 1e300, 5e-324]),
        (pa.decimal128(10, 3), [Decimal("-0.001"), Decimal("1234567.890")]),
    ],
)
def test_numeric_columns_become_json_numbers_with_their_exact_value(arrow_type, values):
    result = one_custom(pa.array(values, arrow_type), "Number")

    cells = [c[:-1] for c in result.contacts["contact_json"].to_pylist()]
    as_python = [json.loads(c)["custom_fields"]["e1_X"] for c in cells]
    as_decimal = [json.loads(c, parse_float=Decimal)["custom_fields"]["e1_X"] for c in cells]
    assert all(type(v) in (int, float) for v in as_python)  # JSON numbers, not strings
    if pa.types.is_decimal(arrow_type):
        assert as_decimal == values
    else:
        assert as_python == values


def test_a_decimal_with_trailing_zeros_is_the_same_number():
    result = one_custom(pa.array([Decimal("12.30")], pa.decimal128(6, 2)), "Number")

    value = json.loads(result.contacts["contact_json"][0].as_py()[:-1], parse_float=Decimal)
    assert value["custom_fields"]["e1_X"] == Decimal("12.3")


def test_a_large_decimal_keeps_every_digit_in_the_json_text():
    big = Decimal("123456789012345678.12")

    result = one_custom(pa.array([big], pa.decimal128(38, 2)), "Number")

    cell = result.contacts["contact_json"][0].as_py()
    assert '"e1_X":123456789012345678.12}' in cell
    parsed_exactly = json.loads(cell[:-1], parse_float=Decimal)
    assert parsed_exactly["custom_fields"]["e1_X"] == big


def test_numeric_strings_are_parsed_into_numbers():
    result = one_custom(pa.array([" 12.5 ", "-3", "1e3", "+4", "", "   ", None]), "Number")

    assert custom_values(result) == {0: 12.5, 1: -3, 2: 1000, 3: 4}
    assert result.rejects.num_rows == 0


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_float_rejects_the_row(value):
    result = one_custom(pa.array([1.0, value], pa.float64()), "Number")

    assert custom_values(result) == {0: 1.0}
    [(row, key, column, reason)] = rejects(result)
    assert (row, key, column) == (1, "email:u1@x.co", "c")
    assert reason.startswith("f: not a finite number")


@pytest.mark.parametrize("text", ["NaN", "nan", "inf", "Infinity", "-Infinity", " -inf "])
def test_a_non_finite_numeric_string_rejects_the_row(text):
    result = one_custom(pa.array([text]), "Number")

    assert result.contacts.num_rows == 0
    assert [reason for *_, reason in rejects(result)] == ["f: not a finite number"]


@pytest.mark.parametrize("text", ["abc", "12abc", "1,5", "0x10", "--1", "١٢"])
def test_a_non_numeric_string_is_rejected_as_not_a_number(text):
    result = one_custom(pa.array(["7", text]), "Number")

    assert custom_values(result) == {0: 7}
    assert rejects(result) == [(1, "email:u1@x.co", "c", "f: not a number")]


# -- Dates -------------------------------------------------------------------------------------


def test_dates_and_timestamps_of_every_kind_are_sent_in_utc():
    paris = dt.timezone(dt.timedelta(hours=2))
    cases = {
        "date": (pa.array([dt.date(2024, 1, 2)]), "2024-01-02T00:00:00Z"),
        "naive": (
            pa.array([dt.datetime(2024, 1, 2, 3, 4, 5)], pa.timestamp("us")),
            "2024-01-02T03:04:05Z",
        ),
        "aware": (
            pa.array(
                [dt.datetime(2024, 7, 2, 3, 4, 5, tzinfo=paris)], pa.timestamp("us", "UTC")
            ).cast(pa.timestamp("us", "Europe/Paris")),
            "2024-07-02T01:04:05Z",
        ),
        "aware_ns": (
            pa.array([dt.datetime(2024, 1, 2, 23, 30, tzinfo=UTC)], pa.timestamp("ns", "UTC")).cast(
                pa.timestamp("ns", "Asia/Tokyo")
            ),
            "2024-01-02T23:30:00Z",
        ),
        "offset_text": (pa.array(["2024-01-02T10:00:00+02:00"]), "2024-01-02T08:00:00Z"),
        "zulu_text": (pa.array([" 2024-01-02T10:00:00.123Z "]), "2024-01-02T10:00:00Z"),
        "date_text": (pa.array(["2024-01-02"]), "2024-01-02T00:00:00Z"),
        "naive_text": (pa.array(["2024-01-02 23:59:59"]), "2024-01-02T23:59:59Z"),
    }

    for name, (column, expected) in cases.items():
        result = one_custom(column, "Date")
        assert custom_values(result) == {0: expected}, name


def test_dates_are_sent_in_utc_even_when_the_state_databases_default_zone_is_not_utc(
    tmp_path,
):
    # A DuckDB cursor is a new session in the database's default zone (here forced to New
    # York), not in the zone an earlier SET chose on the connection: the plan's workspace
    # sets UTC on every cursor it opens.
    with StateStore.open(tmp_path / "state.duckdb") as store:
        store.con.execute("SET GLOBAL TimeZone = 'America/New_York'")
        store.con.execute("SET TimeZone = 'UTC'")

        result = one_custom(
            pa.array(["2024-01-02T03:04:05+00:00", "2024-07-02T10:00:00+02:00"]),
            "Date",
            store=store,
        )

    assert custom_values(result) == {0: "2024-01-02T03:04:05Z", 1: "2024-07-02T08:00:00Z"}


def test_a_tz_aware_timestamp_column_in_a_record_batch_is_converted_to_utc():
    ny = pa.array(
        [dt.datetime(2024, 1, 2, 5, 0, tzinfo=UTC)], pa.timestamp("ms", "America/New_York")
    )
    batch = pa.RecordBatch.from_pydict({"email": ["a@x.co"], "ts": ny})

    result = transform(
        {"email": "email", "custom_fields": {"seen": "ts"}},
        batch,
        {"seen": "Date"},
        {"seen": "e2_D"},
    )

    assert parsed(result) == [
        {"email": "a@x.co", "custom_fields": {"e2_D": "2024-01-02T05:00:00Z"}}
    ]


@pytest.mark.parametrize(
    "text", ["yesterday", "2024-13-01", "2024-02-30", "02/30/2024", "2024-01-02T25:00:00", "1e3"]
)
def test_an_unparseable_date_string_is_rejected(text):
    result = one_custom(pa.array(["2024-01-02", text]), "Date")

    assert custom_values(result) == {0: "2024-01-02T00:00:00Z"}
    assert rejects(result) == [(1, "email:u1@x.co", "c", "f: not a date or timestamp")]


@pytest.mark.parametrize("text", ["infinity", "-infinity"])
def test_an_infinite_date_string_is_rejected_rather_than_sent_as_a_date(text):
    # DuckDB parses 'infinity' as a TIMESTAMPTZ and strftime renders it as the word itself,
    # so without a finiteness check the contact would carry {"e1_X": "infinity"}.
    result = one_custom(pa.array([text]), "Date")

    assert result.contacts.num_rows == 0
    assert [reason for *_, reason in rejects(result)] == ["f: not a date or timestamp"]


@pytest.mark.parametrize("unit", ["s", "ms"])
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.datetime(9999, 12, 31, 23, 59, 59), "9999-12-31T23:59:59Z"),
        (dt.datetime(1, 1, 1), "0001-01-01T00:00:00Z"),
    ],
    ids=["end-of-time", "start-of-time"],
)
def test_a_second_or_millisecond_timestamp_at_the_ends_of_the_calendar_is_formatted(
    unit, value, expected
):
    # Warehouses use 9999-12-31 as "never" and 0001-01-01 as "unknown"; both fit Arrow's
    # timestamp[s]/[ms] and DuckDB's TIMESTAMP, so one such row must not fail the whole batch.
    result = one_custom(pa.array([value], pa.timestamp(unit)), "Date")

    assert custom_values(result) == {0: expected}


@pytest.mark.parametrize(
    "value",
    [
        pa.array([dt.datetime(9999, 12, 31, 23, 59, 59, 999999)], pa.timestamp("us")),
        pa.array(
            [dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)], pa.timestamp("us", "UTC")
        ),
        pa.array(["9999-12-31 23:59:59.5"]),
    ],
    ids=["timestamp", "timestamptz", "text"],
)
def test_the_last_second_of_9999_with_its_fraction_is_a_date_not_out_of_range(value):
    # psycopg2 reads PostgreSQL's 'infinity' timestamp as 9999-12-31 23:59:59.999999.
    result = one_custom(value, "Date")

    assert custom_values(result) == {0: "9999-12-31T23:59:59Z"}


def test_a_custom_date_format_applies_to_every_date_source():
    fmt = "%d/%m/%Y %H:%M"
    sources = [
        pa.array([dt.date(2024, 3, 4)]),
        pa.array([dt.datetime(2024, 3, 4, 5, 6)], pa.timestamp("us")),
        pa.array([dt.datetime(2024, 3, 4, 5, 6, tzinfo=UTC)], pa.timestamp("us", "UTC")),
        pa.array(["2024-03-04T07:06:00+02:00"]),
    ]
    expected = ["04/03/2024 00:00", "04/03/2024 05:06", "04/03/2024 05:06", "04/03/2024 05:06"]

    got = [custom_values(one_custom(s, "Date", date_format=fmt))[0] for s in sources]

    assert got == expected


# -- Text from other types ---------------------------------------------------------------------


def test_text_fields_fed_by_non_text_columns_are_stringified():
    columns = {
        "i": pa.array([42], pa.int64()),
        "f": pa.array([1.5], pa.float64()),
        "d": pa.array([Decimal("1.50")], pa.decimal128(5, 2)),
        "b": pa.array([True]),
        "nb": pa.array([False]),
        "day": pa.array([dt.date(2024, 1, 2)]),
        "ts": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5)], pa.timestamp("us")),
    }
    batch = pa.table({"email": ["a@x.co"], **columns})
    names = list(columns)

    result = transform(
        {"email": "email", "custom_fields": {n: n for n in names}},
        batch,
        dict.fromkeys(names, "Text"),
        {n: f"e{i}_T" for i, n in enumerate(names)},
    )

    assert parsed(result)[0]["custom_fields"] == {
        "e0_T": "42",
        "e1_T": "1.5",
        "e2_T": "1.50",
        "e3_T": "true",
        "e4_T": "false",
        "e5_T": "2024-01-02",
        "e6_T": "2024-01-02T03:04:05Z",
    }


def test_reserved_text_fields_are_stringified_too_and_timestamps_follow_the_date_format():
    batch = pa.table(
        {
            "email": ["a@x.co"],
            "zip": pa.array([94107], pa.int32()),
            "ts": pa.array([dt.datetime(2024, 1, 2, 3, 4, tzinfo=UTC)], pa.timestamp("s", "UTC")),
        }
    )

    result = transform(
        {"email": "email", "postal_code": "zip", "unique_name": "ts"}, batch, date_format="%Y%m%d"
    )

    assert parsed(result) == [
        {"email": "a@x.co", "postal_code": "94107", "unique_name": "20240102"}
    ]


# -- alternate_emails --------------------------------------------------------------------------


def test_alternate_emails_from_a_list_column_are_trimmed_lower_cased_and_emptied_out():
    alts = pa.array([[" Q@R.co", "", None, "s@t.CO "], ["", None], None], pa.list_(pa.string()))
    batch = pa.table({"email": ["a@x.co", "b@x.co", "c@x.co"], "alts": alts})

    result = transform({"email": "email", "alternate_emails": "alts"}, batch)

    assert parsed(result) == [
        {"email": "a@x.co", "alternate_emails": ["q@r.co", "s@t.co"]},
        {"email": "b@x.co"},
        {"email": "c@x.co"},
    ]


def test_alternate_emails_from_a_comma_separated_string_are_split_and_cleaned():
    batch = pa.table({"email": ["a@x.co", "b@x.co"], "alts": [" X@Y.co, ,z@w.co,", " , "]})

    result = transform({"email": "email", "alternate_emails": "alts"}, batch)

    assert parsed(result) == [
        {"email": "a@x.co", "alternate_emails": ["x@y.co", "z@w.co"]},
        {"email": "b@x.co"},
    ]


def test_five_alternate_emails_pass_and_six_are_rejected():
    five = ",".join(f"alt{i}@x.co" for i in range(5))
    batch = pa.table({"email": ["a@x.co", "b@x.co"], "alts": [five, five + ",alt5@x.co"]})

    result = transform({"email": "email", "alternate_emails": "alts"}, batch)

    assert len(parsed(result)[0]["alternate_emails"]) == 5
    assert rejects(result) == [
        (1, "email:b@x.co", "alts", "alternate_emails: more than 5 addresses")
    ]


@pytest.mark.parametrize("alts", [["ok@x.co", "not-an-email"], ["a" * 250 + "@x.co"], ["a b@x.co"]])
def test_an_invalid_alternate_email_rejects_the_row(alts):
    batch = pa.table({"email": ["a@x.co"], "alts": pa.array([alts], pa.list_(pa.string()))})

    result = transform({"email": "email", "alternate_emails": "alts"}, batch)

    assert result.contacts.num_rows == 0
    assert [reason for *_, reason in rejects(result)] == [
        "alternate_emails: contains an invalid email address"
    ]


# -- maxLength ---------------------------------------------------------------------------------

LIMITED = [
    (f.name, f.max_length)
    for f in RESERVED_FIELDS + UPSERT_ONLY_FIELDS
    if f.max_length and not f.read_only and f.name not in ("email", "alternate_emails")
]


@pytest.mark.parametrize(("field", "limit"), LIMITED)
def test_a_reserved_text_value_may_reach_its_max_length_but_not_exceed_it(field, limit):
    # Multi-byte characters: the limit counts characters, not bytes.
    batch = pa.table({"email": ["a@x.co", "b@x.co"], "c": ["é" * limit, "é" * (limit + 1)]})

    result = transform({"email": "email", field: "c"}, batch)

    assert parsed(result) == [{"email": "a@x.co", field: "é" * limit}]
    assert rejects(result) == [(1, "email:b@x.co", "c", f"{field}: longer than {limit} characters")]


def test_the_documented_limits_are_the_ones_enforced():
    assert dict(LIMITED) == {
        "first_name": 50,
        "last_name": 50,
        "address_line_1": 100,
        "address_line_2": 100,
        "city": 60,
        "state_province_region": 50,
        "country": 50,
        "external_id": 254,
        "anonymous_id": 254,
    }


def test_an_email_longer_than_254_characters_is_rejected_for_its_length():
    email = "a" * 249 + "@x.co"  # 254 characters: allowed
    batch = pa.table({"email": [email, "b" + email]})

    result = transform({"email": "email"}, batch)

    assert parsed(result) == [{"email": email}]
    assert [reason for *_, reason in rejects(result)] == ["email: longer than 254 characters"]


def test_a_text_custom_field_is_limited_to_1000_characters_not_bytes():
    assert MAX_CUSTOM_TEXT_LENGTH == 1000
    result = one_custom(pa.array(["日" * 1000, "日" * 1001]), "Text")

    assert custom_values(result) == {0: "日" * 1000}
    assert rejects(result) == [(1, "email:u1@x.co", "c", "f: longer than 1000 characters")]


# -- reject rows -------------------------------------------------------------------------------


def test_a_row_with_several_problems_yields_one_reject_per_problem_at_its_job_row_number():
    batch = pa.table(
        {
            "mail": ["ok@x.co", "Bad Email"],
            "given_name": ["Ann", "SECRET-NAME-" + "x" * 50],
            "alts": ["", "SECRET-ALT"],
            "amount": ["1", "SECRET-AMOUNT"],
        }
    )

    result = transform(
        {
            "email": "mail",
            "first_name": "given_name",
            "alternate_emails": "alts",
            "custom_fields": {"spend": "amount"},
        },
        batch,
        {"spend": "Number"},
        {"spend": "e3_N"},
        first_row=1000,
    )

    assert result.contacts["row_number"].to_pylist() == [1000]
    assert rejects(result) == [
        (1001, "email:bad email", "mail", "email: not a valid email address"),
        (1001, "email:bad email", "given_name", "first_name: longer than 50 characters"),
        (1001, "email:bad email", "alts", "alternate_emails: contains an invalid email address"),
        (1001, "email:bad email", "amount", "spend: not a number"),
    ]
    for *_, reason in rejects(result):
        assert "SECRET" not in reason.upper()
        assert "bad email" not in reason.lower()


def test_rejects_have_the_documented_columns_and_types_even_when_empty():
    result = transform({"email": "email"}, pa.table({"email": ["a@x.co"]}))

    assert result.rejects.num_rows == 0
    assert result.rejects.column_names == ["row_number", "contact_key", "column", "reason"]
    assert result.contacts.column_names == [
        "row_number",
        "contact_key",
        "fingerprint",
        "is_new",
        "prev_hash",
        "prev_sha256",
        "pending",
        "retry",
        "refused_hash",
        "contact_json",
        "content_hash",
        "ids",
        "list_scope",
    ]
    assert pa.types.is_integer(result.rejects.schema.field("row_number").type)


def test_a_mapping_with_seventy_custom_text_fields_still_checks_every_field():
    # Each Text custom field adds one length check; SendGrid allows 500 custom fields, so the
    # transform must cope with more than 64 checks per row.
    names = [f"f{i}" for i in range(70)]
    batch = pa.table({"email": ["a@x.co", "b@x.co"], **{n: ["v", "y" * 1001] for n in names}})

    result = transform(
        {"email": "email", "custom_fields": {n: n for n in names}},
        batch,
        dict.fromkeys(names, "Text"),
        {n: f"e{i}_T" for i, n in enumerate(names)},
    )

    assert parsed(result) == [
        {"email": "a@x.co", "custom_fields": {f"e{i}_T": "v" for i in range(70)}}
    ]
    assert [(row, column) for row, _, column, _ in rejects(result)] == [(1, n) for n in names]


# -- JSON escaping -----------------------------------------------------------------------------

AWKWARD = [
    'he said "hi"',
    "back\\slash and \\u0041",
    "new\nline\ttab\rreturn",
    "ctl\x00\x01\x1f\x7f",
    "é 日本 😀 🇫🇷",
    "</script><!--",
    "\u2028\u2029",
    "'single' `tick` {brace} [x],",
]


def test_awkward_text_round_trips_exactly_through_json():
    batch = pa.table({"email": [f"u{i}@x.co" for i in range(len(AWKWARD))], "fn": AWKWARD})

    result = transform({"email": "email", "last_name": "fn"}, batch)

    assert [c["last_name"] for c in parsed(result)] == AWKWARD


def test_awkward_text_in_custom_fields_and_alternate_email_lists_round_trips_too():
    batch = pa.table({"email": ["a@x.co"], "t": ['q"\\\n日😀'], "a": ["b@x.co"]})

    result = transform(
        {"email": "email", "alternate_emails": "a", "custom_fields": {"note": "t"}},
        batch,
        {"note": "Text"},
        {"note": "e9_T"},
    )

    assert parsed(result) == [
        {"email": "a@x.co", "alternate_emails": ["b@x.co"], "custom_fields": {"e9_T": 'q"\\\n日😀'}}
    ]


@pytest.mark.parametrize(
    "field_id", ['e1"_T', "e1\\_T", "e1\n_T", "e1\x01_T", "e1'_T", "e1\u2028_T", "é_T"]
)
def test_a_custom_field_id_is_written_as_a_proper_json_key_whatever_it_holds(field_id):
    result = transform(
        {"email": "email", "custom_fields": {"f": "c"}},
        pa.table({"email": ["a@x.co"], "c": ["v"]}),
        {"f": "Text"},
        {"f": field_id},
    )

    assert parsed(result) == [{"email": "a@x.co", "custom_fields": {field_id: "v"}}]


@pytest.mark.parametrize("column", ['a "quoted" name', "e FROM src) x", 'x"" FROM "y', "it's"])
def test_a_column_name_holding_quotes_or_sql_is_read_as_a_name(column):
    result = transform(
        {"email": "email", "first_name": column},
        pa.table({"email": ["a@x.co"], column: ["Ann"]}),
    )

    assert parsed(result) == [{"email": "a@x.co", "first_name": "Ann"}]


# -- look-alikes and texts DuckDB would read too generously ------------------------------------


@pytest.mark.parametrize("look_alike", ["\u212aate@x.co", "\u212aATE@X.CO", "\u0130nfo@x.co"])
def test_a_look_alike_address_is_refused_and_never_takes_the_real_contacts_key(look_alike):
    real = "kate@x.co" if "ate" in look_alike.lower() else "info@x.co"
    batch = pa.table({"email": [real, look_alike], "fn": ["Real", "Fake"]})

    result = transform({"email": "email", "first_name": "fn"}, batch)

    assert parsed(result) == [{"email": real, "first_name": "Real"}]  # not superseded
    ((row, key, column, reason),) = rejects(result)
    assert (row, column, reason) == (1, "email", "email: not a valid email address")
    assert key != f"email:{real}"


def test_look_alike_alternate_emails_are_refused():
    batch = pa.table({"email": ["a@x.co"], "alt": ["b@x.co, \u212aate@x.co"]})

    result = transform({"email": "email", "alternate_emails": "alt"}, batch)

    assert [reason for *_, reason in rejects(result)] == [
        "alternate_emails: contains an invalid email address"
    ]


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ("2024-01-01t10:00:00z", "2024-01-01T10:00:00Z"),  # RFC 3339 allows lowercase
        ("2024-01-01 10:00:00 +05:30", "2024-01-01T04:30:00Z"),
        ("2024-01-01 10:00:00 Z", "2024-01-01T10:00:00Z"),
        ("2024-01-01Z", "2024-01-01T00:00:00Z"),
        ("2024-01-01-05:00", "2024-01-01T05:00:00Z"),
    ],
)
def test_iso_date_text_in_its_other_spellings_is_read_as_that_date(text, sent):
    result = one_custom(pa.array([text]), "Date")

    assert custom_values(result) == {0: sent}


@pytest.mark.parametrize(
    "text",
    [
        "epoch",
        "infinity",
        "-infinity",
        "today",
        "now",
        "10000-01-01",
        "0000-12-31",
        "2024-13-01",
        "2024-01-01T10:00:00+99:00",
        "2024-01-01T10:00:00+05:75",
        "2024-01-01T10:00:00+14:30",
    ],
)
def test_date_text_that_is_not_an_iso_date_of_years_1_to_9999_is_refused(text):
    result = one_custom(pa.array([text]), "Date")

    assert result.contacts.num_rows == 0
    assert len(rejects(result)) >= 1


def test_dates_beyond_year_9999_in_a_date_column_are_refused():
    column = pa.array([dt.date(2024, 1, 2), None], pa.date32())
    far = pa.array([(dt.date(9999, 12, 31) - dt.date(1970, 1, 1)).days + 5], pa.int32())
    dates = pa.concat_arrays([column, far.cast(pa.date32())])

    result = one_custom(dates, "Date")

    assert custom_values(result) == {0: "2024-01-02T00:00:00Z"}
    assert [(row, reason) for row, _, _, reason in rejects(result)] == [
        (2, "f: a date outside years 1 to 9999")
    ]


@pytest.mark.parametrize("text", ["1_000", "0x10", "1e999", "1,5", "1.2.3", "--1", "e5", "."])
def test_number_text_is_refused_unless_it_is_a_plain_finite_number(text):
    result = one_custom(pa.array([text]), "Number")

    assert result.contacts.num_rows == 0
    assert len(rejects(result)) == 1


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ("12345678901234567890", "12345678901234567890"),
        ("+007.50", "7.50"),
        (" -0.000001 ", "-0.000001"),
        (".5", "0.5"),
        ("5.", "5"),
        ("1E5", "1e5"),
        ("-2.5e-3", "-2.5e-3"),
        ("0", "0"),
    ],
)
def test_number_text_is_sent_as_the_json_number_it_spells_digit_for_digit(text, sent):
    result = one_custom(pa.array([text]), "Number")

    (cell,) = result.contacts["contact_json"].to_pylist()
    assert cell == '{"email":"u0@x.co","custom_fields":{"e1_X":' + sent + "}},"


def test_bytes_that_are_not_utf8_in_any_text_column_refuse_the_row_naming_each_column():
    def text(*values: bytes | None) -> pa.Array:
        return pa.array(list(values), pa.binary()).view(pa.string())

    alternates = pa.array([["b@x.co"], [b"c\xff@x.co".decode("latin-1")], None])
    bad_child = pa.ListArray.from_arrays(
        alternates.offsets, text(b"b@x.co", b"c\xff@x.co"), mask=alternates.is_null()
    )
    batch = pa.table(
        {
            "email": ["a@x.co", "b@x.co", "c@x.co"],
            "fn": text(b"Ann", b"\xc3", b"Cy"),
            "city": text(b"Oslo", b"\xe9", b"Rome"),
            "alt": bad_child,
        }
    )

    result = transform(
        {"email": "email", "first_name": "fn", "city": "city", "alternate_emails": "alt"}, batch
    )

    assert [(row, column) for row, _, column, _ in rejects(result)] == [
        (1, "fn"),
        (1, "city"),
        (1, "alt"),
    ]
    assert [c["email"] for c in parsed(result)] == ["a@x.co", "c@x.co"]
