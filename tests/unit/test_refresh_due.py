"""What counts as a new source for ``refresh_due``: anything that changes what dlt reads, not
the credentials it reads it with."""

from __future__ import annotations

from sendgrid_destination.refresh_due import digest
from sendgrid_destination.sync_file import SourceSpec

URL = "postgresql://reader:{password}@db.internal:5432/warehouse?sslmode=require"


def test_a_new_password_is_not_a_new_source_and_the_digest_holds_no_credential() -> None:
    old = SourceSpec("sql", url=URL.format(password="first"), table="people")
    new = SourceSpec("sql", url=URL.format(password="second"), table="people")

    assert digest(old) == digest(new)


def test_another_table_query_cursor_host_or_resource_is_a_new_source() -> None:
    base = SourceSpec("sql", url=URL.format(password="x"), table="people", cursor="updated_at")
    others = [
        SourceSpec("sql", url=URL.format(password="x"), table="leads", cursor="updated_at"),
        SourceSpec("sql", url=URL.format(password="x"), query="SELECT 1", cursor="updated_at"),
        SourceSpec("sql", url=URL.format(password="x"), table="people", cursor="created_at"),
        SourceSpec(
            "sql",
            url="postgresql://reader:x@other:5432/warehouse",
            table="people",
            cursor="updated_at",
        ),
        SourceSpec(
            "sql",
            url=URL.format(password="x"),
            table="people",
            cursor="updated_at",
            resource="customers",
        ),
    ]

    assert all(digest(other) != digest(base) for other in others)
