"""CSV import files from rendered contacts: every cell says what the contact's JSON says, the
files stay within SendGrid's limits, and only contacts a CSV can carry go into one.

Contacts here are JSON cells as the render writes them (one object, then a comma); the file
is read back with Python's ``csv`` module (what the emulator uses) after gunzipping it.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sendgrid_destination.bulk_csv import (
    FILE_CONTACTS,
    CsvFile,
    CsvLayout,
    ImportFile,
    file_contacts,
)
from sendgrid_destination.mapping import Binding
from sendgrid_destination.schemas import RENDERED

RESERVED_IDS = {"email": "_rf2_T", "first_name": "_rf0_T", "alternate_emails": "_rf3_T"}
BINDINGS = [
    Binding("email", "email", "identifier", "string", "Text"),
    Binding("first_name", "first_name", "reserved", "string", "Text"),
    Binding("alternate_emails", "alts", "alternate_emails", "string_list", "Text"),
    Binding("external_id", "ext", "identifier", "string", "Text"),
    Binding("plan", "plan", "custom", "string", "Text", custom_field_id="e1_T"),
    Binding("seats", "seats", "custom", "string", "Number", custom_field_id="e2_N"),
    Binding("renewal", "renewal", "custom", "string", "Date", custom_field_id="e3_D"),
]
LAYOUT = CsvLayout.of(BINDINGS, RESERVED_IDS)
HEADERS = ["email", "first_name", "alternate_emails", "plan", "seats", "renewal"]

# Any text JSON can hold and UTF-8 can carry, NUL aside (the layout keeps it off the CSV).
TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12
)
NUMBER = st.from_regex(
    r"-?(0|[1-9][0-9]{0,25})(\.[0-9]{1,25})?([eE][+-]?[0-9]{1,3})?", fullmatch=True
)
CONTACT = st.fixed_dictionaries(
    {"email": st.from_regex(r"[a-z]{1,8}@[a-z]{1,5}\.com", fullmatch=True)},
    optional={
        "first_name": TEXT.filter(bool),
        "alternate_emails": st.lists(
            st.from_regex(r"[a-z]{1,6}@x\.org", fullmatch=True), min_size=1, max_size=3
        ),
        "plan": TEXT.filter(bool),
        "seats": NUMBER,
        "renewal": st.sampled_from(["2024-01-31T00:00:00Z", "1999-12-31T23:59:59Z"]),
    },
)


def contact_json(contact: dict[str, Any]) -> str:
    """The render's cell: top-level fields, then custom_fields; Numbers as their digits."""
    top = {k: contact[k] for k in ("email", "first_name", "alternate_emails") if k in contact}
    parts = [f"{json.dumps(k)}:{json.dumps(v, ensure_ascii=False)}" for k, v in top.items()]
    custom = []
    for name, field_id in (("plan", "e1_T"), ("seats", "e2_N"), ("renewal", "e3_D")):
        if name in contact:
            value = (
                contact[name] if name == "seats" else json.dumps(contact[name], ensure_ascii=False)
            )
            custom.append(f'"{field_id}":{value}')
    if custom:
        parts.append('"custom_fields":{' + ",".join(custom) + "}")
    return "{" + ",".join(parts) + "},"


def rendered(contacts: list[dict[str, Any]], *, new: bool = True) -> pa.Table:
    """``RENDERED`` rows for these contacts."""
    n = len(contacts)
    table = pa.table(
        {
            "row_number": pa.array(range(n), pa.int64()),
            "contact_key": [f"email:{c['email']}" for c in contacts],
            "fingerprint": pa.array(range(n), pa.uint64()),
            "is_new": [new] * n,
            "prev_hash": pa.nulls(n, pa.uint64()),
            "prev_sha256": pa.nulls(n, pa.string()),
            "pending": [False] * n,
            "retry": [False] * n,
            "refused_hash": pa.nulls(n, pa.uint64()),
            "contact_json": [contact_json(c) for c in contacts],
            "content_hash": pa.array(range(n), pa.uint64()),
            "ids": pa.nulls(n, pa.string()),
            "list_scope": [""] * n,
        }
    )
    return table.cast(RENDERED)


def expected_row(contact: dict[str, Any]) -> list[str]:
    alternates = ",".join(contact.get("alternate_emails", []))
    fields = ("first_name", "plan", "seats", "renewal")
    first, plan, seats, renewal = (contact.get(name, "") for name in fields)
    if renewal:  # SendGrid documents only M/D/YYYY forms for a CSV's Date cells
        renewal = datetime.strptime(renewal, "%Y-%m-%dT%H:%M:%SZ").strftime("%m/%d/%Y")
    return [contact["email"], first, alternates, plan, seats, renewal]


def read_back(done: ImportFile) -> list[list[str]]:
    done.data.seek(0)
    raw = gzip.decompress(done.data.read())
    assert len(raw) == done.csv_bytes
    return list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect() as connection:
        yield connection


@pytest.fixture(scope="module")
def spill(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("spill")


def test_the_layout_maps_every_field_with_an_id_and_leaves_the_other_identifiers_outside() -> None:
    assert LAYOUT is not None
    assert LAYOUT.field_mappings == ["_rf2_T", "_rf0_T", "_rf3_T", "e1_T", "e2_N", "e3_D"]
    assert LAYOUT.outside == ("external_id",)


@pytest.mark.parametrize(
    ("bindings", "reserved"),
    [(BINDINGS, {"first_name": "_rf0_T"}), (BINDINGS[1:], RESERVED_IDS)],
    ids=["email-has-no-id", "no-email-mapped"],
)
def test_without_an_email_column_there_is_no_layout(
    bindings: list[Binding], reserved: dict[str, str]
) -> None:
    assert CsvLayout.of(bindings, reserved) is None


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(contacts=st.lists(CONTACT, min_size=1, max_size=30))
def test_every_cell_of_the_file_is_the_value_the_contacts_json_carries_a_date_as_its_day(
    con: duckdb.DuckDBPyConnection, spill: Path, contacts: list[dict[str, Any]]
) -> None:
    assert LAYOUT is not None
    file = CsvFile(LAYOUT, con, spill)
    file.add(rendered(contacts))
    done = file.finish()

    header, *rows = read_back(done)
    assert header == HEADERS
    assert rows == [expected_row(c) for c in contacts]
    assert done.contact_count == len(contacts)
    assert done.file_bytes == done.data.seek(0, 2) > 0
    recorded = file_contacts(con, done)
    assert recorded.column_names == list(FILE_CONTACTS)
    assert recorded["contact_key"].to_pylist() == [f"email:{c['email']}" for c in contacts]
    assert recorded["content_hash"].to_pylist() == list(range(len(contacts)))
    done.close()


@pytest.mark.parametrize(
    ("date_format", "rendered_date", "csv_date_format", "cell"),
    [
        ("%Y-%m-%d", "2024-02-29", "%m/%d/%Y", "02/29/2024"),
        ("%d.%m.%Y %H:%M", "31.12.1999 23:59", "%m/%d/%Y", "12/31/1999"),
        ("%Y-%m-%dT%H:%M:%SZ", "2024-01-05T10:00:00Z", "%-m/%-d/%Y", "1/5/2024"),
    ],
)
def test_a_date_cell_is_the_rendered_date_read_back_in_the_csv_date_format(
    con: duckdb.DuckDBPyConnection,
    spill: Path,
    date_format: str,
    rendered_date: str,
    csv_date_format: str,
    cell: str,
) -> None:
    layout = CsvLayout.of(
        BINDINGS, RESERVED_IDS, date_format=date_format, csv_date_format=csv_date_format
    )
    assert layout is not None
    file = CsvFile(layout, con, spill)
    file.add(rendered([{"email": "a@x.com", "renewal": rendered_date}]))

    _, row = read_back(file.finish())

    assert row[HEADERS.index("renewal")] == cell


def test_only_new_contacts_by_email_carrying_nothing_outside_the_file_are_eligible() -> None:
    assert LAYOUT is not None
    contacts = rendered(
        [
            {"email": "a@x.com", "first_name": '"external_id":"looks like a key"'},
            {"email": "b@x.com"},
            {"email": "c@x.com", "first_name": "nul \x00 inside"},
            {"email": "d@x.com"},
        ]
    )
    with_key = contacts["contact_json"].to_pylist()
    with_key[1] = with_key[1][:-2] + ',"external_id":"e-1"},'
    contacts = contacts.set_column(
        contacts.schema.get_field_index("contact_json"), "contact_json", [with_key]
    )
    keys = contacts["contact_key"].to_pylist()
    keys[3] = "phone_number_id:+14155550100"
    contacts = contacts.set_column(
        contacts.schema.get_field_index("contact_key"), "contact_key", [keys]
    )

    assert LAYOUT.eligible(contacts).to_pylist() == [True, False, False, False]
    assert LAYOUT.eligible(rendered([{"email": "a@x.com"}], new=False)).to_pylist() == [False]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    contacts=st.lists(CONTACT, min_size=1, max_size=40),
    max_contacts=st.integers(1, 12),
    spare_bytes=st.integers(0, 2000),
    cut=st.integers(0, 40),
)
def test_files_filled_by_room_stay_within_both_limits_and_hold_every_contact_once_in_order(
    con: duckdb.DuckDBPyConnection,
    spill: Path,
    contacts: list[dict[str, Any]],
    max_contacts: int,
    spare_bytes: int,
    cut: int,
) -> None:
    assert LAYOUT is not None
    table = rendered(contacts)
    # Room for the header and the largest contact's bound (its JSON, one byte per column).
    largest = max(len(contact_json(c).encode()) for c in contacts)
    max_bytes = 2 * sum(len(h) + 2 for h in HEADERS) + largest + len(HEADERS) + spare_bytes
    files = []

    def new_file() -> CsvFile:
        name = f"file_{len(files)}"
        return CsvFile(
            LAYOUT, con, spill, table=name, max_contacts=max_contacts, max_bytes=max_bytes
        )

    current = new_file()
    for part in (table.slice(0, cut), table.slice(cut)):
        while part.num_rows:  # bounded: each turn adds rows or closes a non-empty file
            room = current.room(part)
            if room == 0:
                assert current.rows > 0, "a contact no file can hold"
                files.append(current.finish())
                current = new_file()
                continue
            current.add(part.slice(0, room))
            part = part.slice(room)
    files.append(current.finish())

    rows, keys = [], []
    for done in files:
        assert 0 < done.contact_count <= max_contacts
        assert done.csv_bytes <= max_bytes
        header, *body = read_back(done)
        assert header == HEADERS
        rows += body
        keys += file_contacts(con, done)["contact_key"].to_pylist()
        done.close()
    assert rows == [expected_row(c) for c in contacts]
    assert keys == [f"email:{c['email']}" for c in contacts]
