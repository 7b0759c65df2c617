"""Values end to end: every valid row arrives with the right values under the right custom
field IDs, every bad row is rejected with the right reason, and nothing else is lost."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import dlt
import pyarrow as pa
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from sendgrid_destination.clock import FakeClock
from sendgrid_destination.emulator import Emulator
from sendgrid_destination.errors import ConfigurationError
from tests.e2e.conftest import (
    API_KEY,
    cause_of,
    contacts_table,
    destination_for,
    rejects_of,
    run_summary,
    upserts,
)

UTC = dt.UTC
MINUS_TWO = dt.timezone(dt.timedelta(hours=-2))

# custom field name -> (SendGrid type, source column)
CUSTOM_FIELDS: dict[str, tuple[str, str]] = {
    "plan": ("Text", "plan"),
    "seats": ("Number", "seats"),
    "score": ("Number", "score"),
    "mrr": ("Number", "mrr"),
    "is_vip": ("Text", "is_vip"),
    "seats_label": ("Text", "seats_label"),
    "signup_day": ("Date", "signup_day"),
    "last_seen": ("Date", "last_seen"),
    "renewal": ("Date", "renewal"),
    "visits": ("Number", "visits_text"),
    "renewed_on": ("Date", "renewed_text"),
}

VALID = "valid"


def _row(email: str | None, **values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "email": email,
        "ext": None,
        "phone": None,
        "zip": None,
        "city": None,
        "first_name": None,
        "alt": None,
        "plan": None,
        "seats": None,
        "score": None,
        "mrr": None,
        "is_vip": None,
        "seats_label": None,
        "signup_day": None,
        "last_seen": None,
        "renewal": None,
        "visits_text": None,
        "renewed_text": None,
    }
    base.update(values)
    return base


# Each row: (row, expected). expected is VALID or a list of (column, reason) problems.
ROWS: list[tuple[dict[str, Any], Any]] = [
    (  # 0: every type, all set; email trimmed and lower-cased
        _row(
            "  Alice@Example.COM ",
            ext=1001,
            phone=" +14155550100 ",
            zip=94105,
            city="San Francisco",
            first_name="Alice",
            alt=["A.Two@Example.com", " a3@example.org "],
            plan="pro",
            seats=3,
            score=1.5,
            mrr=Decimal("12.50"),
            is_vip=True,
            seats_label=3,
            signup_day=dt.date(2024, 1, 31),
            last_seen=dt.datetime(2024, 3, 1, 12, 30, 45),
            renewal=dt.datetime(2024, 5, 1, 23, 0, 0, tzinfo=MINUS_TWO),
            visits_text=" 42 ",
            renewed_text="2024-02-03T04:05:06+02:00",
        ),
        VALID,
    ),
    (  # 1: nulls everywhere but the identifier and two falsy values
        _row("bob@example.com", is_vip=False, seats=0),
        VALID,
    ),
    (_row("not-an-email", plan="pro"), [("email", "email: not a valid email address")]),
    (
        _row(None, first_name="Nobody"),
        [("email, ext, phone", "no identifier: every mapped identifier column is empty")],
    ),
    (  # 4: two problems in one row: both are recorded, the row counts once
        _row("broken@", score=float("nan")),
        [
            ("email", "email: not a valid email address"),
            ("score", "score: not a finite number (NaN or infinity)"),
        ],
    ),
    (
        _row("carol@example.com", score=float("inf")),
        [("score", "score: not a finite number (NaN or infinity)")],
    ),
    (
        _row("dave@example.com", first_name="D" * 51),
        [("first_name", "first_name: longer than 50 characters")],
    ),
    (
        _row("erin@example.com", alt=["ok@example.com", "broken"]),
        [("alt", "alternate_emails: contains an invalid email address")],
    ),
    (
        _row("frank@example.com", alt=[f"f{i}@example.com" for i in range(6)]),
        [("alt", "alternate_emails: more than 5 addresses")],
    ),
    (_row("grace@example.com", plan="x" * 1001), [("plan", "plan: longer than 1000 characters")]),
    (_row("heidi@example.com", visits_text="lots"), [("visits_text", "visits: not a number")]),
    (
        _row("ivan@example.com", renewed_text="next tuesday"),
        [("renewed_text", "renewed_on: not a date or timestamp")],
    ),
    (  # 12: empty strings and an empty list are omitted like nulls
        _row("judy@example.com", first_name="", plan="", alt=[], visits_text="  ", renewed_text=""),
        VALID,
    ),
    (  # 13: a naive midnight timestamp and an epoch-era date
        _row(
            "Mallory@Example.com",
            last_seen=dt.datetime(2024, 3, 2),
            signup_day=dt.date(1969, 12, 31),
            mrr=Decimal("100.00"),
            score=-0.25,
        ),
        VALID,
    ),
    (_row(None, ext=2002, first_name="Ext Only"), VALID),  # 14: identified by external_id
    (
        _row("pat@example.com", phone="555-1234"),
        [("phone", "phone_number_id: not an E.164 number like +14155550100")],
    ),
]


def _typed_table() -> pa.Table:
    rows = [r for r, _ in ROWS]
    column = {name: [r[name] for r in rows] for name in rows[0]}
    return pa.table(
        {
            "email": pa.array(column["email"], pa.string()),
            "ext": pa.array(column["ext"], pa.int64()),
            "phone": pa.array(column["phone"], pa.string()),
            "zip": pa.array(column["zip"], pa.int32()),
            "city": pa.array(column["city"], pa.string()),
            "first_name": pa.array(column["first_name"], pa.string()),
            "alt": pa.array(column["alt"], pa.list_(pa.string())),
            "plan": pa.array(column["plan"], pa.string()),
            "seats": pa.array(column["seats"], pa.int64()),
            "score": pa.array(column["score"], pa.float64()),
            "mrr": pa.array(column["mrr"], pa.decimal128(10, 2)),
            "is_vip": pa.array(column["is_vip"], pa.bool_()),
            "seats_label": pa.array(column["seats_label"], pa.int32()),
            "signup_day": pa.array(column["signup_day"], pa.date32()),
            "last_seen": pa.array(column["last_seen"], pa.timestamp("us")),
            "renewal": pa.array(column["renewal"], pa.timestamp("us", tz="America/New_York")),
            "visits_text": pa.array(column["visits_text"], pa.string()),
            "renewed_text": pa.array(column["renewed_text"], pa.string()),
        }
    )


TYPED_MAPPING: dict[str, Any] = {
    "email": "email",
    "external_id": "ext",
    "phone_number_id": "phone",
    "postal_code": "zip",
    "city": "city",
    "first_name": "first_name",
    "alternate_emails": "alt",
    "custom_fields": {name: column for name, (_, column) in CUSTOM_FIELDS.items()},
}


def _identity(contact: dict[str, Any]) -> str:
    return contact.get("email") or f"external_id:{contact['external_id']}"


@dataclass
class TypedLoad:
    ids: dict[str, str]
    contacts: dict[str, dict[str, Any]]
    rejects: list[dict[str, Any]]
    summary: dict[str, Any]
    put_counts: list[int | None]
    run_id: str


@pytest.fixture(scope="module")
def typed_load(tmp_path_factory: pytest.TempPathFactory) -> TypedLoad:
    """One real run of the typed table, shared by the tests that only read its outcome."""
    root = tmp_path_factory.mktemp("typed")
    state_path = root / "state" / "sendgrid.duckdb"
    clock = FakeClock()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for name in ("DESTINATION__SENDGRID__API_KEY", "DESTINATION__SENDGRID__BASE_URL"):
            mp.delenv(name, raising=False)
        with Emulator(api_key=API_KEY, clock=clock) as emu:
            ids = {
                name: emu.add_custom_field(name, kind) for name, (kind, _) in CUSTOM_FIELDS.items()
            }
            destination = destination_for(emu, state_path, mapping=TYPED_MAPPING)
            pipeline = dlt.pipeline("typed", destination=destination, pipelines_dir=str(root))
            info = pipeline.run(_typed_table(), table_name="contacts")
            return TypedLoad(
                ids=ids,
                contacts={_identity(c): c for c in emu.contacts()},
                rejects=rejects_of(state_path),
                summary=run_summary(state_path, info),
                put_counts=[r.contact_count for r in upserts(emu) if r.status == 202],
                run_id=f"{info.loads_ids[-1]}:contacts",
            )


def test_every_valid_row_arrives_with_typed_values_under_the_custom_field_ids(
    typed_load: TypedLoad,
) -> None:
    ids, contacts = typed_load.ids, typed_load.contacts

    alice = contacts["alice@example.com"]
    assert alice["first_name"] == "Alice"
    assert alice["external_id"] == "1001"
    assert alice["phone_number_id"] == "+14155550100"
    assert alice["postal_code"] == "94105"
    assert alice["city"] == "San Francisco"
    assert alice["alternate_emails"] == ["a.two@example.com", "a3@example.org"]
    assert alice["custom_fields"] == {
        ids["plan"]: "pro",
        ids["seats"]: 3,
        ids["score"]: 1.5,
        ids["mrr"]: 12.5,
        ids["is_vip"]: "true",
        ids["seats_label"]: "3",
        ids["signup_day"]: "2024-01-31T00:00:00Z",
        ids["last_seen"]: "2024-03-01T12:30:45Z",
        ids["renewal"]: "2024-05-02T01:00:00Z",
        ids["visits"]: 42,
        ids["renewed_on"]: "2024-02-03T02:05:06Z",
    }
    bob = contacts["bob@example.com"]
    assert "first_name" not in bob
    assert "alternate_emails" not in bob
    assert bob["custom_fields"] == {ids["is_vip"]: "false", ids["seats"]: 0}
    judy = contacts["judy@example.com"]
    assert "first_name" not in judy and "alternate_emails" not in judy
    assert judy["custom_fields"] == {}
    ext_only = contacts["external_id:2002"]
    assert "email" not in ext_only
    assert ext_only["first_name"] == "Ext Only"
    assert ext_only["custom_fields"] == {}
    assert contacts["mallory@example.com"]["custom_fields"] == {
        ids["last_seen"]: "2024-03-02T00:00:00Z",
        ids["signup_day"]: "1969-12-31T00:00:00Z",
        ids["mrr"]: 100,
        ids["score"]: -0.25,
    }


def test_only_the_valid_rows_become_contacts_and_nothing_else_is_lost(
    typed_load: TypedLoad,
) -> None:
    expected = sorted(
        r["email"].strip().lower() if r["email"] else f"external_id:{r['ext']}"
        for r, outcome in ROWS
        if outcome == VALID
    )

    assert sorted(typed_load.contacts) == expected
    assert sum(n or 0 for n in typed_load.put_counts) == len(expected)


def test_every_bad_row_is_in_the_rejects_table_with_its_column_and_reason(
    typed_load: TypedLoad,
) -> None:
    rejects = typed_load.rejects

    got = sorted((r["row_number"], r["column"], r["reason"]) for r in rejects)
    wanted = sorted(
        (i, column, reason)
        for i, (_, outcome) in enumerate(ROWS)
        if outcome != VALID
        for column, reason in outcome
    )
    assert got == wanted
    assert {r["stage"] for r in rejects} == {"validation"}
    assert {r["run_id"] for r in rejects} == {typed_load.run_id}
    keys = {r["row_number"]: r["contact_key"] for r in rejects}
    assert keys[2] == "email:not-an-email"
    assert keys[3] is None
    assert keys[5] == "email:carol@example.com"
    # Reasons never carry the value.
    assert not any("lots" in r["reason"] or "next tuesday" in r["reason"] for r in rejects)


def test_the_run_summary_counts_rows_contacts_and_rejects_by_reason(
    typed_load: TypedLoad,
) -> None:
    summary = typed_load.summary

    valid = sum(1 for _, outcome in ROWS if outcome == VALID)
    assert summary["rows_read"] == len(ROWS)
    assert summary["new"] == valid
    assert summary["contacts_sent"] == valid
    assert summary["rejected"] == len(ROWS) - valid
    assert summary["rejected_by_api"] == 0
    by_reason: dict[str, int] = {}
    for _, outcome in ROWS:
        if outcome != VALID:
            for _, reason in outcome:
                by_reason[reason] = by_reason.get(reason, 0) + 1
    assert summary["rejected_by_reason"] == by_reason
    assert summary["jobs"].get("completed") == summary["requests"] == 1


def test_a_rerun_of_the_same_rows_sends_nothing_and_rejects_the_same_rows_again(
    emulator, destination, run, state_path
) -> None:
    for name, (kind, _) in CUSTOM_FIELDS.items():
        emulator.add_custom_field(name, kind)
    first = run(_typed_table(), destination(mapping=TYPED_MAPPING))
    puts = len(upserts(emulator))

    second = run(_typed_table(), destination(mapping=TYPED_MAPPING))

    assert len(upserts(emulator)) == puts
    summary = run_summary(state_path, second)
    assert summary["unchanged"] == sum(1 for _, o in ROWS if o == VALID)
    assert summary["rejected"] == sum(1 for _, o in ROWS if o != VALID)
    assert summary["contacts_sent"] == 0
    refused = {
        load: sorted(
            (r["row_number"], r["contact_key"] or "", r["column"] or "", r["reason"])
            for r in rejects_of(state_path)
            if r["run_id"].startswith(load)
        )
        for load in (first.loads_ids[-1], second.loads_ids[-1])
    }
    assert refused[second.loads_ids[-1]] == refused[first.loads_ids[-1]] != []


def test_of_duplicate_rows_of_one_contact_the_last_wins_whole_and_an_invalid_last_sends_nothing(
    emulator, destination, run, state_path
) -> None:
    # transform.py: "the last row wins whole: earlier ones are dropped before validation, and
    # if the last one is invalid it is rejected and nothing is sent for that key".
    plan = emulator.add_custom_field("plan", "Text")
    seats = emulator.add_custom_field("seats", "Number")
    data = pa.table(
        {
            "email": [
                "ann@example.com",
                "other@example.com",
                "dup@example.com",
                "ANN@example.com ",
                "dup@example.com",
            ],
            "first_name": ["Ann", "Other", "Dup", None, "D" * 51],
            "plan": ["pro", "free", "pro", None, None],
            "seats": pa.array([3, None, 1, 5, None], pa.int64()),
        }
    )
    mapping = {
        "email": "email",
        "first_name": "first_name",
        "custom_fields": {"plan": "plan", "seats": "seats"},
    }

    info = run(data, destination(mapping=mapping))

    assert sorted(c["email"] for c in emulator.contacts()) == [
        "ann@example.com",
        "other@example.com",
    ]
    ann = emulator.contact("ann@example.com")
    assert "first_name" not in ann
    assert ann["custom_fields"] == {seats: 5}
    assert emulator.contact("other@example.com")["custom_fields"] == {plan: "free"}
    assert [r.contact_count for r in upserts(emulator)] == [2]
    assert [(r["row_number"], r["contact_key"], r["reason"]) for r in rejects_of(state_path)] == [
        (4, "email:dup@example.com", "first_name: longer than 50 characters")
    ]
    summary = run_summary(state_path, info)
    assert (summary["rows_read"], summary["superseded"], summary["rejected"]) == (5, 2, 1)
    assert summary["contacts_sent"] == 2


@pytest.mark.parametrize("batch_rows", [1, 100])
def test_earlier_rows_of_a_contact_whose_last_row_is_unchanged_are_neither_sent_nor_rejected(
    emulator, destination, run, state_path, batch_rows
) -> None:
    emails = ["ann@example.com", "bob@example.com"]
    first = pa.table({"email": emails, "first_name": ["Ann", "Bob"]})
    run(first, destination())
    emulator.clear_requests()
    again = pa.table(
        {
            "email": ["ann@example.com", "bob@example.com", "ann@example.com", "bob@example.com"],
            "first_name": ["Changed", "B" * 51, "Ann", "Bob"],
        }
    )

    info = run(again, destination(read_batch_rows=batch_rows))

    assert upserts(emulator) == []
    assert rejects_of(state_path) == []
    summary = run_summary(state_path, info)
    assert (summary["superseded"], summary["unchanged"], summary["rejected"]) == (2, 2, 0)


def test_a_job_file_read_in_two_row_batches_delivers_every_contact_in_one_request(
    emulator, destination, run, state_path
) -> None:
    plan = emulator.add_custom_field("plan", "Text")
    data = contacts_table(7, plan=[f"p{i}" for i in range(7)])
    mapping = {"email": "email", "first_name": "first_name", "custom_fields": {"plan": "plan"}}

    info = run(data, destination(mapping=mapping, read_batch_rows=2))

    contacts = {c["email"]: c for c in emulator.contacts()}
    assert sorted(contacts) == sorted(f"user{i}@example.com" for i in range(7))
    for i in range(7):
        assert contacts[f"user{i}@example.com"]["first_name"] == f"First{i}"
        assert contacts[f"user{i}@example.com"]["custom_fields"] == {plan: f"p{i}"}
    # Bodies pack across the whole file, whatever the batches it is read in.
    assert [r.contact_count for r in upserts(emulator)] == [7]
    summary = run_summary(state_path, info)
    assert summary["rows_read"] == 7
    assert summary["contacts_sent"] == 7
    assert summary["requests"] == 1


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_dlt_record_batches_are_refused_before_any_request_saying_why(
    emulator, destination, run, monkeypatch, how
) -> None:
    # batch_size > 0 would plan each RecordBatch on its own: last row wins, "only changes are
    # sent" and "never backwards" could not hold across the load.
    if how == "environment":
        monkeypatch.setenv("DESTINATION__SENDGRID__BATCH_SIZE", "2")
        dest = destination()
    else:
        dest = destination(batch_size=2)

    with pytest.raises(PipelineStepFailed) as failed:
        run(contacts_table(4), dest)

    message = str(cause_of(failed.value, ConfigurationError))
    assert "batch_size" in message and "0" in message
    assert upserts(emulator) == []


def test_a_bad_row_keeps_its_row_number_in_the_file_across_batches(
    emulator, destination, run, state_path
) -> None:
    emails = [f"user{i}@example.com" for i in range(6)]
    emails[1] = "bad-one"
    emails[4] = "bad-four"
    data = contacts_table(6, email=emails)

    run(data, destination(read_batch_rows=2))

    rejects = rejects_of(state_path)
    assert sorted((r["contact_key"], r["row_number"]) for r in rejects) == [
        ("email:bad-four", 4),
        ("email:bad-one", 1),
    ]
    assert len(emulator.contacts()) == 4


def test_streaming_one_job_file_in_small_arrow_batches_loses_no_row(
    emulator, destination, run, state_path
) -> None:
    emails = [f"user{i}@example.com" for i in range(10)]
    emails[7] = "seven-is-bad"
    data = contacts_table(10, email=emails)

    info = run(data, destination(read_batch_rows=3))

    assert len(emulator.contacts()) == 9
    assert [(r["row_number"], r["contact_key"]) for r in rejects_of(state_path)] == [
        (7, "email:seven-is-bad")
    ]
    summary = run_summary(state_path, info)
    assert summary["rows_read"] == 10
    assert summary["contacts_sent"] == 9


def test_the_date_format_setting_shapes_dates_and_timestamps_rendered_as_text(
    emulator, destination, run, state_path
) -> None:
    since = emulator.add_custom_field("since", "Date")
    seen = emulator.add_custom_field("seen", "Date")
    seen_text = emulator.add_custom_field("seen_text", "Text")
    data = contacts_table(
        1,
        since=pa.array([dt.date(2024, 3, 5)], pa.date32()),
        seen=pa.array([dt.datetime(2024, 3, 5, 23, 30, tzinfo=MINUS_TWO)]),
    )
    mapping = {
        "email": "email",
        "custom_fields": {"since": "since", "seen": "seen", "seen_text": "seen"},
    }

    info = run(data, destination(mapping=mapping, date_format="%m/%d/%Y"))

    assert emulator.contact("user0@example.com")["custom_fields"] == {
        since: "03/05/2024",
        seen: "03/06/2024",  # 23:30 at -02:00 is the next day in UTC
        seen_text: "03/06/2024",
    }
    assert run_summary(state_path, info)["failed_in_jobs"] == 0


def test_a_mapped_column_dlt_left_out_as_untyped_and_empty_fails_explaining_how_to_keep_it(
    emulator, destination, run
) -> None:
    # dlt drops a column that has neither a type nor a value in the first load it sees (an
    # all-null Arrow column, SELECT NULL). It cannot be told from a typo, so the run stops
    # before any request, and the message says how to keep the column.
    data = contacts_table(2, last=pa.array([None, None], pa.null()))
    mapping = {"email": "email", "first_name": "first_name", "last_name": "last"}

    with pytest.raises(PipelineStepFailed) as failed:
        run(data, destination(mapping=mapping))

    message = str(cause_of(failed.value, ConfigurationError))
    assert "last" in message
    assert "data_type" in message
    assert emulator.requests == []


def test_a_mapped_column_that_is_null_in_a_later_load_is_omitted(
    emulator, destination, run
) -> None:
    mapping = {"email": "email", "first_name": "first_name", "last_name": "last"}
    run(contacts_table(2, last=["Smith", "Jones"]), destination(mapping=mapping))

    run(
        contacts_table(2, start=2, last=pa.array([None, None], pa.null())),
        destination(mapping=mapping),
    )

    assert emulator.contact("user2@example.com") is not None
    assert "last_name" not in emulator.contact("user2@example.com")


@pytest.mark.parametrize(
    "column",
    # dlt's "direct" naming keeps these as they are (it replaces quotes: see the unit tests).
    ["e FROM src) x", "semi; DROP TABLE contacts; --", "日本 名", "a) x UNION SELECT (b"],
)
def test_a_column_name_with_sql_syntax_in_it_is_only_ever_quoted_never_rewritten(
    emulator, destination, run, state_path, column
) -> None:
    data = pa.table({"email": ["a@x.co", "b@x.co"], column: ["Ann", "Bob"]})

    run(data, destination(mapping={"email": "email", "first_name": column}))
    emulator.clear_requests()
    run(data, destination(mapping={"email": "email", "first_name": column}))

    assert {c["email"]: c["first_name"] for c in emulator.contacts()} == {
        "a@x.co": "Ann",
        "b@x.co": "Bob",
    }
    assert upserts(emulator) == []  # the state and its fingerprints work with the name too


def test_text_that_is_not_utf8_refuses_its_row_and_the_other_rows_are_sent(
    emulator, destination, run, state_path
) -> None:
    names = pa.array([b"Ann", b"B\xff\xfeb", b"Cy"], pa.binary()).view(pa.string())
    data = pa.table({"email": ["a@x.co", "b@x.co", "c@x.co"], "first_name": names})

    run(data, destination())

    assert sorted(c["email"] for c in emulator.contacts()) == ["a@x.co", "c@x.co"]
    (refused,) = rejects_of(state_path)
    assert (refused["row_number"], refused["column"]) == (1, "first_name")
    assert refused["reason"] == "first_name: not valid UTF-8 text"

    fixed = data.set_column(1, "first_name", [["Ann", "Bob", "Cy"]])
    run(fixed, destination())  # the next load, with the value repaired, goes through

    assert emulator.contact("b@x.co")["first_name"] == "Bob"
