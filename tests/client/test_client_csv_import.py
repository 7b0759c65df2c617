"""The two calls of a CSV import: the import request to the API, and the file to its upload
URL, which gets the upload headers and never the API key, only over https (or loopback),
and never by following a redirect."""

from __future__ import annotations

import gzip
import tempfile
from collections.abc import Callable
from typing import Any

import pytest

from sendgrid_destination.api.client import ROUTE_CSV_IMPORT, SendGridClient
from sendgrid_destination.api.models import CsvImport
from sendgrid_destination.errors import ImportRejectedError, ServerError, UploadRefusedError

SIGNATURE = "X-Amz-Signature=s3cr3t-signature"
FILE = gzip.compress(b"email\r\nann@example.com\r\n")

MakeClient = Callable[..., SendGridClient]


def test_an_import_answers_its_job_and_where_to_upload_and_the_upload_is_taken(
    emu: Any, client: SendGridClient
) -> None:
    started = client.start_csv_import(["_rf2_T"])

    assert started.upload_uri.startswith(f"{emu.base_url}/_uploads/{started.job_id}?")
    assert [name for name, _ in started.upload_headers] == ["X-Upload-Token"]
    assert "signature" not in repr(started) and started.job_id in repr(started)

    client.upload_file(started, FILE)

    upload = emu.requests[-1]
    assert (upload.route, upload.status, upload.body_bytes) == (
        "PUT /_uploads/{job_id}",
        200,
        len(FILE),
    )
    assert "Authorization" not in upload.headers
    emu.process_jobs()
    assert emu.contact("ann@example.com") is not None


def test_an_import_the_api_refuses_keeps_sendgrids_errors_for_the_caller(
    client: SendGridClient,
) -> None:
    with pytest.raises(ImportRejectedError) as refused:
        client.start_csv_import(["_rf2_T", "e99_T"])

    error = refused.value
    assert (error.status, error.route) == (400, ROUTE_CSV_IMPORT)
    assert [e.field for e in error.errors] == ["field_mappings"]
    assert "e99_T" in error.errors[0].message and 'bulk = "never"' in str(error)


def test_the_upload_carries_its_upload_headers_and_never_the_key_or_the_subuser(
    make_client: MakeClient, presigned_host: Any
) -> None:
    client = make_client("https://api.sendgrid.com", on_behalf_of="subuser-7")
    started = CsvImport("job-1", f"{presigned_host.url}/file?{SIGNATURE}", (("X-Token", "t1"),))

    client.upload_file(started, FILE)

    (headers,) = presigned_host.requests
    assert headers["x-token"] == "t1" and headers["content-length"] == str(len(FILE))
    assert "authorization" not in headers and "on-behalf-of" not in headers


@pytest.mark.parametrize(
    ("status", "extra"),
    [(403, {}), (400, {}), (307, {"Location": "https://elsewhere.example/x"})],
    ids=["access-denied", "bad-request", "redirect"],
)
def test_an_upload_url_that_refuses_or_redirects_is_an_upload_refused_error_naming_no_secret(
    make_client: MakeClient, presigned_host: Any, status: int, extra: dict[str, str]
) -> None:
    client = make_client("https://api.sendgrid.com")
    presigned_host.status, presigned_host.headers = status, extra
    presigned_host.body = b"<Error><Code>AccessDenied</Code></Error>"
    started = CsvImport("job-1", f"{presigned_host.url}/file?{SIGNATURE}", ())

    with pytest.raises(UploadRefusedError) as refused:
        client.upload_file(started, FILE)

    assert refused.value.status == status and "job-1" in str(refused.value)
    assert "s3cr3t" not in str(refused.value)
    assert len(presigned_host.requests) == 1  # not retried, not followed


def test_an_upload_url_over_plain_http_to_another_host_gets_no_file(
    make_client: MakeClient, presigned_host: Any
) -> None:
    client = make_client("https://api.sendgrid.com")
    started = CsvImport("job-1", f"http://uploads.example.com/file?{SIGNATURE}", ())

    with pytest.raises(ServerError, match="not https") as refused:
        client.upload_file(started, FILE)

    assert "s3cr3t" not in str(refused.value)
    assert client.stats.snapshot()["requests_by_route"] == {}


def test_a_file_body_is_sent_whole_again_on_each_attempt(emu: Any, client: SendGridClient) -> None:
    started = client.start_csv_import(["_rf2_T"])
    emu.faults.add("PUT /_uploads/{job_id}", status=503)
    with tempfile.TemporaryFile() as body:
        body.write(FILE)
        body.seek(len(FILE))  # wherever the file stands, the upload starts at its beginning

        client.upload_file(started, body)

    uploads = [r for r in emu.requests if r.route == "PUT /_uploads/{job_id}"]
    assert [(r.status, r.body_bytes) for r in uploads] == [(503, len(FILE)), (200, len(FILE))]
    assert client.stats.snapshot()["bytes_sent"] >= 2 * len(FILE)
    emu.process_jobs()
    assert emu.contact("ann@example.com") is not None
