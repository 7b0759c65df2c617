"""A job's errors file: read whatever its layout, matched to contact keys, and never taken as
"nothing failed" when it cannot be matched."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import pytest
from dlt.common.destination.exceptions import DestinationTransientException
from hypothesis import given, settings
from hypothesis import strategies as st

from sendgrid_destination.api import errors_file
from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.contact_model import BLANKS
from sendgrid_destination.errors import ErrorsFileUnreadableError

MakeClient = Callable[..., SendGridClient]


def csv_bytes(*lines: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(lines)
    return out.getvalue().encode()


def test_every_identifier_of_a_row_becomes_a_contact_key_with_the_rows_reason() -> None:
    body = csv_bytes(
        ["primary_email", "external_id", "phone_number_id", "errors_occurred"],
        [" Ann@X.co ", "crm-1", "+14155550100", "bad date"],
    )

    found = errors_file.parse(body)

    assert found.failed == {
        "email:ann@x.co": "bad date",
        "external_id:crm-1": "bad date",
        "phone_number_id:+14155550100": "bad date",
    }
    assert (found.rows, found.unmatched_rows) == (1, 0)


# Every character Python's str.strip() takes: the project's blanks, and the other Unicode
# spaces and separators (U+3000, U+2028, U+0085, U+001C...), which a sent key keeps.
STRIPPED_BY_PYTHON = [chr(c) for c in range(0x110000) if not chr(c).strip()]


@pytest.mark.parametrize("blank", STRIPPED_BY_PYTHON, ids=lambda c: f"U+{ord(c):04X}")
def test_an_identifier_is_trimmed_of_the_blanks_a_sent_key_loses_and_of_no_other_space(
    blank: str,
) -> None:
    body = csv_bytes(["external_id", "errors_occurred"], [f"{blank}E1{blank}", "bad"])

    (key,) = errors_file.parse(body).failed

    # A key keeps what it was sent with: trimming more names another contact's key ("E1").
    kept = "E1" if blank in BLANKS else f"{blank}E1{blank}"
    assert key == f"external_id:{kept}"


@pytest.mark.parametrize(
    "header",
    [["Email", "Errors"], ["EMAIL", "Reason"], ["Primary Email", "Errors Occurred"]],
    ids=["capitalised", "upper-case", "spaced"],
)
def test_a_header_spelled_differently_is_still_matched(header: list[str]) -> None:
    found = errors_file.parse(csv_bytes(header, ["b@x.com", "bounced"]))

    assert found.failed == {"email:b@x.com": "bounced"}
    assert found.unmatched_rows == 0


def test_a_header_without_any_identifier_column_is_unreadable_not_zero_failures() -> None:
    body = csv_bytes(["Contact", "Problem"], ["b@x.com", "bounced"])

    with pytest.raises(ErrorsFileUnreadableError, match="no identifier column") as caught:
        errors_file.parse(body)

    assert isinstance(caught.value, DestinationTransientException)
    assert "b@x.com" not in str(caught.value)


def test_a_header_alone_is_an_empty_file_not_an_error() -> None:
    assert errors_file.parse(b"Contact,Problem\r\n") == errors_file.ErrorsFile(rows=0)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"<!DOCTYPE html><html><body>Sign in</body></html>", "text/html"),
        (b"  <html><body>502</body></html>", None),
        (b"<?xml version='1.0'?><Error><Code>AccessDenied</Code></Error>", "application/xml"),
        (b'{"errors": [{"message": "expired"}]}', "application/json"),
        (b"email,errors\r\nb@x.com,bounced\r\n", "text/html; charset=utf-8"),
        (b"email,errors\r\nb@x.com,boun\x00ced\r\n", "text/csv"),
    ],
    ids=["html", "html-without-type", "s3-xml-error", "json", "csv-served-as-html", "binary"],
)
def test_a_body_that_is_not_a_csv_is_unreadable(body: bytes, content_type: str | None) -> None:
    with pytest.raises(ErrorsFileUnreadableError, match="not CSV"):
        errors_file.parse(body, content_type)


def test_a_field_over_the_csv_modules_default_limit_is_read_and_its_reason_bounded() -> None:
    limit = csv.field_size_limit()
    body = csv_bytes(["email", "errors"], ["b@x.com", "x" * 200_000], ["c@x.com", "short"])

    found = errors_file.parse(body)

    assert found.failed["email:c@x.com"] == "short"
    assert len(found.failed["email:b@x.com"]) == errors_file.MAX_REASON_CHARS
    assert csv.field_size_limit() == limit  # the process-wide limit is restored


def test_rows_that_name_no_usable_identifier_are_counted_as_unmatched() -> None:
    body = csv_bytes(
        ["email", "external_id", "errors"],
        ["", "", "no identifier at all"],
        ["\u212aate@x.com", "", "a look-alike of kate@x.com"],
        ["\u0130nfo@x.com", "", "a look-alike of info@x.com"],
        ["ok@x.com", "", "bounced"],
    )

    found = errors_file.parse(body)

    # Lower-casing the Kelvin sign or the dotted I gives someone else's ASCII key.
    assert found.failed == {"email:ok@x.com": "bounced"}
    assert (found.rows, found.unmatched_rows) == (4, 3)


def test_a_contact_named_twice_appears_once_with_the_last_reason() -> None:
    body = csv_bytes(
        ["primary_email", "email", "errors_occurred"],
        ["ann@x.co", "ANN@x.co", "first"],
        ["ann@x.co", "", "second"],
        ["bob@x.co", "", ""],
    )

    found = errors_file.parse(body)

    assert found.failed == {"email:ann@x.co": "second", "email:bob@x.co": "failed in import job"}


_cells = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)


@settings(max_examples=200, deadline=None)
@given(
    header=st.lists(
        st.sampled_from(["email", "Email", "external_id", "errors", "Contact", "note", ""]),
        min_size=1,
        max_size=5,
    ),
    rows=st.lists(st.lists(_cells, max_size=6), max_size=8),
)
def test_an_errors_file_never_crashes_and_never_looks_complete_when_nothing_matched(
    header: list[str], rows: list[list[str]]
) -> None:
    try:
        found = errors_file.parse(csv_bytes(header, *rows))
    except ErrorsFileUnreadableError:
        return  # unreadable is an allowed answer: the job's contacts are then resent
    assert 0 <= found.unmatched_rows <= found.rows
    if found.rows and not found.failed:
        assert found.unmatched_rows == found.rows


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_an_errors_file_or_the_typed_error(body: bytes) -> None:
    try:
        found = errors_file.parse(body)
    except ErrorsFileUnreadableError:
        return
    assert 0 <= found.unmatched_rows <= found.rows


# --- over HTTP --------------------------------------------------------------------------


def test_an_errors_url_answering_an_html_page_raises_the_transient_unreadable_error(
    presigned_host: Any, make_client: MakeClient
) -> None:
    client = make_client(presigned_host.url)
    presigned_host.body = b"<html><body>Please sign in</body></html>"

    with pytest.raises(ErrorsFileUnreadableError):
        client.fetch_errors_file(presigned_host.url + "/errors.csv?sig=1")
    with pytest.raises(ErrorsFileUnreadableError):
        client.download_errors(presigned_host.url + "/errors.csv?sig=1")


def test_an_errors_file_is_fetched_and_matched_whatever_its_header_case(
    presigned_host: Any, make_client: MakeClient
) -> None:
    client = make_client(presigned_host.url)
    presigned_host.body = b"\xef\xbb\xbfEmail,Errors\r\nB@x.com,bounced\r\n,orphan\r\n"

    found = client.fetch_errors_file(presigned_host.url + "/errors.csv?sig=1")

    assert found.failed == {"email:b@x.com": "bounced"}
    assert (found.rows, found.unmatched_rows) == (2, 1)
    assert client.download_errors(presigned_host.url + "/errors.csv?sig=1") == [
        {"email": "B@x.com", "errors": "bounced"},
        {"email": "", "errors": "orphan"},
    ]


def test_an_errored_job_of_the_emulator_has_an_errors_file_that_matches_its_contacts(
    emu: Any, client: SendGridClient
) -> None:
    emu.force_contact_errors({"b@x.com": "email is on a suppression list"})
    job_id = client.upsert_contacts(b'{"contacts":[{"email":"a@x.com"},{"email":"b@x.com"}]}')
    for _ in range(10):
        job = client.import_status(job_id)
        if job.is_terminal:
            break

    found = client.fetch_errors_file(job.errors_url or "")

    assert found.failed == {"email:b@x.com": "email is on a suppression list"}
    assert found.rows == job.errored_count == 1
