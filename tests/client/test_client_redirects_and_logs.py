"""No call follows a redirect, and no log record carries a query string or URL credentials."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import pytest

from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.errors import ContactsRejectedError, RequestRejectedError

PUT = "PUT /v3/marketing/contacts"
LISTS = "GET /v3/marketing/lists"
SIGNATURE = "X-Amz-Signature=s3cr3t-signature"

MakeClient = Callable[..., SendGridClient]


def body_for(*emails: str) -> bytes:
    return json.dumps({"contacts": [{"email": email} for email in emails]}).encode()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_on_the_upsert_is_an_error_and_no_body_reaches_the_other_host(
    status: int, emu: Any, client: SendGridClient, presigned_host: Any
) -> None:
    # The other host would answer 202 with a job id: taking that as success loses contacts.
    presigned_host.body = b'{"job_id": "forged"}'
    location = f"{presigned_host.url}/v3/marketing/contacts?{SIGNATURE}"
    emu.faults.add(PUT, status=status, headers={"Location": location}, body={})

    with pytest.raises(RequestRejectedError) as caught:
        client.upsert_contacts(body_for("a@x.com"))

    error = caught.value
    assert not isinstance(error, ContactsRejectedError)
    assert (error.status, error.route) == (status, PUT)
    assert str(status) in str(error) and PUT in str(error) and "redirect" in str(error)
    assert presigned_host.url in str(error) and "s3cr3t" not in str(error)
    assert presigned_host.requests == []
    assert [r.status for r in emu.requests] == [status]  # refused once, not retried


def test_a_redirect_on_a_read_is_an_error_naming_the_status_and_route(
    emu: Any, client: SendGridClient, presigned_host: Any
) -> None:
    emu.faults.add(LISTS, status=301, headers={"Location": presigned_host.url + "/lists"})

    with pytest.raises(RequestRejectedError, match=r"GET /v3/marketing/lists answered 301"):
        client.lists()

    assert presigned_host.requests == []


def test_a_redirected_errors_file_is_an_error_and_is_not_followed(
    make_client: MakeClient, presigned_host: Any
) -> None:
    client = make_client(presigned_host.url)
    presigned_host.status = 302
    presigned_host.headers = {"Location": f"{presigned_host.url}/elsewhere.csv?{SIGNATURE}"}

    with pytest.raises(RequestRejectedError, match=r"GET errors_url answered 302") as caught:
        client.download_errors(f"{presigned_host.url}/errors.csv?{SIGNATURE}")

    assert len(presigned_host.requests) == 1
    assert "s3cr3t" not in str(caught.value)


def test_no_log_record_carries_the_errors_url_query_or_any_query_string(
    emu: Any, client: SendGridClient, presigned_host: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    presigned_host.body = b"email,errors\r\nb@x.com,bounced\r\n"

    client.download_errors(f"{presigned_host.url}/errors.csv?{SIGNATURE}&X-Amz-Credential=AKIA")
    client.lists(page_size=7)

    urllib3_lines = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    # urllib3 did log both request lines, with their paths but without their queries.
    assert any("/errors.csv?<redacted>" in line for line in urllib3_lines)
    assert any("/v3/marketing/lists?<redacted>" in line for line in urllib3_lines)
    for record in caplog.records:
        text = record.getMessage()
        assert "s3cr3t" not in text and "AKIA" not in text and "page_size=7" not in text
