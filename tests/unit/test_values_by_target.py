"""Values as warehouses hand them over, cleaned by their target (issue 18), and the field-level
policy ``on_invalid_value``, through the real plan and render.

The end-to-end counterparts, from a real PostgreSQL schema, are in
tests/e2e/test_postgres_warehouse.py.
"""

from __future__ import annotations

import datetime as dt
import json
import math

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.planning import Planned, contact_sql, plan_rows

BLANKS = " \t\n\r\f\v\u00a0"


def transform(mapping: dict, batch: pa.Table, types=None, ids=None, **options) -> Planned:
    return plan_rows(contact_sql(mapping, batch.schema, types, ids, **options), batch)


def parsed(result: Planned) -> list[dict]:
    return [json.loads(cell[:-1]) for cell in result.contacts["contact_json"].to_pylist()]


def problems(table: pa.Table) -> list[tuple[int, str | None, str, str]]:
    return [
        (r["row_number"], r["contact_key"], r["column"], r["reason"]) for r in table.to_pylist()
    ]


def emails(n: int) -> list[str]:
    return [f"u{i}@x.co" for i in range(n)]


# -- text, cleaned by target -------------------------------------------------------------------


def test_char_padding_is_trimmed_before_the_length_and_empty_checks_of_a_name():
    # char(10) 'Gre', a blank char(10), and char(60) 'Greta' as PostgreSQL pads them.
    names = ["Gre".ljust(10), " " * 10, "Greta".ljust(60)]
    batch = pa.table({"email": emails(3), "fn": names})

    result = transform({"email": "email", "first_name": "fn"}, batch)

    assert parsed(result) == [
        {"email": "u0@x.co", "first_name": "Gre"},
        {"email": "u1@x.co"},  # nothing to send: SendGrid keeps the name it has
        {"email": "u2@x.co", "first_name": "Greta"},
    ]
    assert problems(result.rejects) == []


def test_every_reserved_text_field_loses_surrounding_whitespace_like_an_email():
    batch = pa.table(
        {
            "email": emails(1),
            "city": ["\u00a0 Oslo\t"],
            "zip": ["\n0150 "],
            "line": ["  @ann  "],
        }
    )

    result = transform(
        {"email": "email", "city": "city", "postal_code": "zip", "line": "line"}, batch
    )

    assert parsed(result) == [
        {"email": "u0@x.co", "city": "Oslo", "postal_code": "0150", "line": "@ann"}
    ]


def test_a_custom_text_value_loses_its_trailing_padding_and_keeps_leading_blanks():
    batch = pa.table({"email": emails(3), "c": ["  indented  ", "code".ljust(20), " " * 20]})

    result = transform(
        {"email": "email", "custom_fields": {"note": "c"}},
        batch,
        {"note": "Text"},
        {"note": "e1_T"},
    )

    assert [c.get("custom_fields") for c in parsed(result)] == [
        {"e1_T": "  indented"},
        {"e1_T": "code"},
        None,  # nothing left: no custom_fields object at all
    ]


# The ends of a value, where the blanks are told apart from their neighbours: other control
# characters, other spaces (em space), a character after the no-break space (U+00A1), text.
EDGY_TEXT = st.text(alphabet=BLANKS + "\x01\x1f\x7f\u2003\u00a1ab é", max_size=10)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(EDGY_TEXT, min_size=1, max_size=8))
def test_a_name_loses_exactly_its_blanks_at_both_ends_and_custom_text_at_its_end(values):
    batch = pa.table({"email": emails(len(values)), "fn": values, "c": values})

    result = transform(
        {"email": "email", "first_name": "fn", "custom_fields": {"note": "c"}},
        batch,
        {"note": "Text"},
        {"note": "e1_T"},
    )

    assert [
        (c.get("first_name"), (c.get("custom_fields") or {}).get("e1_T")) for c in parsed(result)
    ] == [(v.strip(BLANKS) or None, v.rstrip(BLANKS) or None) for v in values]


@pytest.mark.parametrize("blank", list(BLANKS))
def test_number_and_date_text_lose_the_same_blanks_as_names(blank):
    # DuckDB's own trim() takes spaces and the no-break space, not tabs or line ends: a
    # padded number was refused, and a no-break space alone was blank for Number, not Text.
    texts = [f"{blank}42{blank}", f"{blank}2024-01-02{blank}", blank]
    numbers, dates = [texts[0], texts[2], None], [texts[1], texts[2], None]
    batch = pa.table({"email": emails(3), "n": numbers, "d": dates})

    result = transform(
        {"email": "email", "custom_fields": {"score": "n", "since": "d"}},
        batch,
        {"score": "Number", "since": "Date"},
        {"score": "e1_N", "since": "e2_D"},
    )

    assert problems(result.rejects) == []
    assert [c.get("custom_fields") for c in parsed(result)] == [
        {"e1_N": 42, "e2_D": "2024-01-02T00:00:00Z"},
        None,
        None,
    ]


def test_a_padded_custom_value_is_measured_after_trimming():
    batch = pa.table({"email": emails(2), "c": ["x" * 1000 + " " * 50, "x" * 1001]})

    result = transform(
        {"email": "email", "custom_fields": {"note": "c"}},
        batch,
        {"note": "Text"},
        {"note": "e1_T"},
    )

    assert [c["email"] for c in parsed(result)] == ["u0@x.co"]
    assert problems(result.rejects) == [
        (1, "email:u1@x.co", "c", "note: longer than 1000 characters")
    ]


def test_a_json_array_in_text_feeds_alternate_emails_as_a_list():
    batch = pa.table(
        {
            "email": emails(5),
            "alts": [
                '["G2@x.com","g3@x.com"]',  # dlt's form of a PostgreSQL text[]
                ' [ " g4@x.com ", null, "" ] ',
                "[]",
                "g5@x.com, g6@x.com",  # comma-separated text still works
                None,
            ],
        }
    )

    result = transform({"email": "email", "alternate_emails": "alts"}, batch)

    assert [c.get("alternate_emails") for c in parsed(result)] == [
        ["g2@x.com", "g3@x.com"],
        ["g4@x.com"],
        None,
        ["g5@x.com", "g6@x.com"],
        None,
    ]
    assert problems(result.rejects) == []


@pytest.mark.parametrize("text", ['["a@x.com","not an email"]', "[1,2]", '["a@x.com"', '{"a":1}'])
def test_a_json_array_or_text_holding_something_else_than_addresses_is_refused(text):
    batch = pa.table({"email": emails(1), "alts": [text]})

    result = transform({"email": "email", "alternate_emails": "alts"}, batch)

    assert parsed(result) == []
    assert problems(result.rejects) == [
        (0, "email:u0@x.co", "alts", "alternate_emails: contains an invalid email address")
    ]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize("target", ["custom", "reserved"])
def test_nan_and_infinity_are_refused_for_text_fields_as_for_number_fields(value, target):
    batch = pa.table({"email": emails(2), "f": pa.array([1.5, value], pa.float64())})
    if target == "custom":
        result = transform(
            {"email": "email", "custom_fields": {"ratio": "f"}},
            batch,
            {"ratio": "Text"},
            {"ratio": "e1_T"},
        )
        field = "ratio"
    else:
        result = transform({"email": "email", "first_name": "f"}, batch)
        field = "first_name"

    assert len(parsed(result)) == 1
    assert problems(result.rejects) == [
        (1, "email:u1@x.co", "f", f"{field}: not a finite number (NaN or infinity)")
    ]


def test_a_time_of_day_feeds_text_as_hh_mm_ss():
    times = pa.array([dt.time(10, 11, 12), dt.time(0, 0, 0, 500_000), None], pa.time64("us"))
    batch = pa.table({"email": emails(3), "t": times})

    result = transform(
        {"email": "email", "custom_fields": {"at": "t"}}, batch, {"at": "Text"}, {"at": "e1_T"}
    )

    assert [c.get("custom_fields") for c in parsed(result)] == [
        {"e1_T": "10:11:12"},
        {"e1_T": "00:00:00.5"},
        None,
    ]


# -- on_invalid_value --------------------------------------------------------------------------

WIDE = {
    "email": "email",
    "first_name": "fn",
    "phone_number": "phone",
    "alternate_emails": "alts",
    "custom_fields": {"score": "score", "seen": "seen"},
}
WIDE_TYPES = {"score": "Number", "seen": "Date"}
WIDE_IDS = {"score": "e1_N", "seen": "e2_D"}


def wide(rows: list[tuple]) -> pa.Table:
    names = ["email", "fn", "phone", "alts", "score", "seen"]
    return pa.table(
        {n: [r[i] for r in rows] for i, n in enumerate(names)},
        schema=pa.schema([(n, pa.float64() if n == "score" else pa.string()) for n in names]),
    )


def test_omit_field_leaves_out_each_invalid_value_and_sends_the_rest_of_the_contact():
    batch = wide(
        [
            ("a@x.co", "Ann", "+14155550100", "b@x.co", 1.5, "2024-01-02"),
            ("c@x.co", "C" * 51, "555-0100", "nope", math.nan, "someday"),
        ]
    )

    result = transform(WIDE, batch, WIDE_TYPES, WIDE_IDS, on_invalid_value="omit_field")

    assert parsed(result) == [
        {
            "email": "a@x.co",
            "first_name": "Ann",
            "phone_number": "+14155550100",
            "alternate_emails": ["b@x.co"],
            "custom_fields": {"e1_N": 1.5, "e2_D": "2024-01-02T00:00:00Z"},
        },
        {"email": "c@x.co"},
    ]
    assert problems(result.rejects) == []
    assert problems(result.omitted) == [
        (1, "email:c@x.co", "fn", "first_name: longer than 50 characters"),
        (1, "email:c@x.co", "phone", "phone_number: not an E.164 number like +14155550100"),
        (1, "email:c@x.co", "alts", "alternate_emails: contains an invalid email address"),
        (1, "email:c@x.co", "score", "score: not a finite number (NaN or infinity)"),
        (1, "email:c@x.co", "seen", "seen: not a date or timestamp"),
    ]


def test_omit_field_still_refuses_a_row_whose_identifier_is_invalid_listing_all_its_problems():
    batch = wide(
        [("not-an-email", "C" * 51, None, None, 1.0, None), (None, "Dee", None, None, None, None)]
    )

    result = transform(WIDE, batch, WIDE_TYPES, WIDE_IDS, on_invalid_value="omit_field")

    assert parsed(result) == []
    assert problems(result.omitted) == []
    assert [(row, reason) for row, _, _, reason in problems(result.rejects)] == [
        (0, "email: not a valid email address"),
        (0, "first_name: longer than 50 characters"),
        (1, "no identifier: every mapped identifier column is empty"),
    ]


def test_omit_field_still_refuses_text_that_is_not_utf8():
    bad = pa.array([b"Ann", b"\xc3"], pa.binary()).view(pa.string())
    batch = pa.table({"email": emails(2), "fn": bad})

    result = transform({"email": "email", "first_name": "fn"}, batch, on_invalid_value="omit_field")

    assert [c["email"] for c in parsed(result)] == ["u0@x.co"]
    assert problems(result.rejects) == [
        (1, "email:u1@x.co", "fn", "first_name: not valid UTF-8 text")
    ]


def test_reject_row_is_the_default_and_refuses_the_whole_contact():
    batch = wide([("c@x.co", "Cy", None, None, math.nan, None)])

    result = transform(WIDE, batch, WIDE_TYPES, WIDE_IDS)

    assert parsed(result) == []
    assert problems(result.omitted) == []
    assert problems(result.rejects) == [
        (0, "email:c@x.co", "score", "score: not a finite number (NaN or infinity)")
    ]


def test_the_same_row_under_the_two_policies_never_shares_a_fingerprint():
    batch = wide([("c@x.co", "Cy", None, None, 2.0, None)])

    default = transform(WIDE, batch, WIDE_TYPES, WIDE_IDS)
    omitting = transform(WIDE, batch, WIDE_TYPES, WIDE_IDS, on_invalid_value="omit_field")

    assert parsed(default) == parsed(omitting)
    assert (
        default.contacts["fingerprint"].to_pylist() != omitting.contacts["fingerprint"].to_pylist()
    )


NAMES = st.one_of(st.none(), st.text(alphabet="ab \t", max_size=55))
SCORES = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))
CELLS = st.tuples(st.sampled_from(["a@x.co", "b@x.co", "bad", None]), NAMES, SCORES)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(CELLS, max_size=12))
def test_omit_field_sends_every_identified_row_with_exactly_its_valid_fields(rows):
    mapping = {"email": "email", "first_name": "fn", "custom_fields": {"score": "score"}}
    schema = pa.schema([("email", pa.string()), ("fn", pa.string()), ("score", pa.float64())])
    batch = pa.Table.from_pylist([dict(zip(schema.names, r, strict=True)) for r in rows], schema)

    result = transform(
        mapping, batch, {"score": "Number"}, {"score": "e1_N"}, on_invalid_value="omit_field"
    )

    last = {r[0]: i for i, r in enumerate(rows) if r[0] is not None}
    kept = [i for i, r in enumerate(rows) if r[0] is None or last[r[0]] == i]
    sent, omitted = [], []
    for i in kept:
        email, name, score = rows[i]
        if email in (None, "bad"):
            continue
        contact: dict = {"email": email}
        name = (name or "").strip(BLANKS)
        if len(name) > 50:
            omitted.append((i, "fn"))
        elif name:
            contact["first_name"] = name
        if score is not None and not math.isfinite(score):
            omitted.append((i, "score"))
        elif score is not None:
            contact["custom_fields"] = {"e1_N": score}
        sent.append(contact)
    assert parsed(result) == sent
    assert [(row, column) for row, _, column, _ in problems(result.omitted)] == omitted
    refused = {row for row, *_ in problems(result.rejects)}
    assert refused == {i for i in kept if rows[i][0] in (None, "bad")}
