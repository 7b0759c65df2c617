"""A real PostgreSQL table as the source: dlt's sql_table with the pyarrow backend, into the
emulator. Skips (visibly) only when PostgreSQL is unreachable, and fails instead when
SENDGRID_DESTINATION_REQUIRE_POSTGRES=1 (CI sets it)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import rejects_of, run_summary


@pytest.fixture
def customers_table(postgres_url: str) -> Iterator[str]:
    """A uniquely named, filled table; dropped after the test."""
    import psycopg2

    name = f"sg_e2e_customers_{uuid.uuid4().hex[:10]}"
    con = psycopg2.connect(postgres_url.replace("+psycopg2", ""))
    con.autocommit = True
    try:
        with con.cursor() as cur:
            cur.execute(
                f"""
                CREATE TABLE {name} (
                    id integer PRIMARY KEY,
                    email text,
                    first_name text,
                    amount numeric(12, 2),
                    ratio numeric,
                    signed_up_at timestamptz,
                    birthday date,
                    active boolean,
                    note text
                )"""
            )
            cur.execute(
                f"""
                INSERT INTO {name} VALUES
                (1, 'Ann@Example.com', 'Ann', 1234.50, 0.125,
                 '2024-03-05 10:11:12+02', '1990-07-14', true, 'likes tea'),
                (2, 'bob@example.com', NULL, NULL, NULL, NULL, NULL, NULL, NULL),
                (3, 'cid@example.com', 'Cid', -0.01, 42,
                 '1999-12-31 23:59:59+00', '2000-02-29', false, ''),
                (4, 'not-an-email', 'Bad', 1, 1, NULL, NULL, true, NULL)
                """
            )
        yield name
    finally:
        with con.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {name}")
        con.close()


def test_a_postgres_table_loads_through_sql_table_with_typed_values(
    postgres_url, customers_table, emulator, destination, run, state_path
) -> None:
    from dlt.sources.sql_database import sql_table

    ids = {
        "amount": emulator.add_custom_field("amount", "Number"),
        "ratio": emulator.add_custom_field("ratio", "Number"),
        "signed_up": emulator.add_custom_field("signed_up", "Date"),
        "birthday": emulator.add_custom_field("birthday", "Date"),
        "active": emulator.add_custom_field("active", "Text"),
        "note": emulator.add_custom_field("note", "Text"),
    }
    mapping = {
        "email": "email",
        "first_name": "first_name",
        "custom_fields": {
            "amount": "amount",
            "ratio": "ratio",
            "signed_up": "signed_up_at",
            "birthday": "birthday",
            "active": "active",
            "note": "note",
        },
    }
    source = sql_table(credentials=postgres_url, table=customers_table, backend="pyarrow")

    info = run(source, destination(mapping=mapping))

    contacts = {c["email"]: c for c in emulator.contacts()}
    assert sorted(contacts) == ["ann@example.com", "bob@example.com", "cid@example.com"]
    assert contacts["ann@example.com"]["first_name"] == "Ann"
    assert contacts["ann@example.com"]["custom_fields"] == {
        ids["amount"]: 1234.5,
        ids["ratio"]: 0.125,
        ids["signed_up"]: "2024-03-05T08:11:12Z",
        ids["birthday"]: "1990-07-14T00:00:00Z",
        ids["active"]: "true",
        ids["note"]: "likes tea",
    }
    assert "first_name" not in contacts["bob@example.com"]
    assert contacts["bob@example.com"]["custom_fields"] == {}
    assert contacts["cid@example.com"]["custom_fields"] == {
        ids["amount"]: -0.01,
        ids["ratio"]: 42,
        ids["signed_up"]: "1999-12-31T23:59:59Z",
        ids["birthday"]: "2000-02-29T00:00:00Z",
        ids["active"]: "false",
    }
    assert [(r["row_number"], r["reason"]) for r in rejects_of(state_path)] == [
        (3, "email: not a valid email address")
    ]
    summary = run_summary(state_path, info)
    assert (summary["rows_read"], summary["contacts_sent"], summary["rejected"]) == (4, 3, 1)
