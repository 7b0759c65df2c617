"""CSV imports (issue 16.7): PUT /v3/marketing/contacts/imports answers an upload URI and
headers; the (gzip) CSV PUT there becomes an import job with per-row errors; and the
failure modes: upload refused, job failed, rows errored, a file that cannot be read."""

from __future__ import annotations

import csv
import gzip
import io
from typing import TYPE_CHECKING, Any

import pytest
import requests

from sendgrid_destination.emulator import Emulator

from .support import OpenApi

if TYPE_CHECKING:
    from .support import Api

IMPORT = "PUT /v3/marketing/contacts/imports"
IMPORTS = "/v3/marketing/contacts/imports"
EMAIL, FIRST_NAME, CITY = "_rf2_T", "_rf0_T", "_rf6_T"
NOT_A_NUMBER = "error storing custom field name=seats type=Number: value is not a number"
ALL_IDENTIFIERS = "email, phone_number_id, external_id, anonymous_id"


def _start(api: Api, mappings: list[str | None], **extra: Any) -> dict[str, Any]:
    response = api.put(IMPORTS, json={"file_type": "csv", "field_mappings": mappings, **extra})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _csv(rows: list[list[str]], gzipped: bool = True) -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    data = out.getvalue().encode()
    return gzip.compress(data) if gzipped else data


def _upload(started: dict[str, Any], data: bytes, **headers: str) -> requests.Response:
    given = {h["header"]: h["value"] for h in started["upload_headers"]}
    return requests.put(started["upload_uri"], data=data, headers=given | headers, timeout=10)


def _errors(job: dict[str, Any]) -> list[dict[str, str]]:
    response = requests.get(job["results"]["errors_url"], timeout=5)
    return list(csv.DictReader(io.StringIO(response.text)))


@pytest.fixture
def fields(emu: Emulator) -> dict[str, str]:
    return {
        "plan": emu.add_custom_field("plan", "Text"),
        "seats": emu.add_custom_field("seats", "Number"),
        "renewal": emu.add_custom_field("renewal", "Date"),
        "list": emu.add_list("Imported"),
    }


# -- the import request -----------------------------------------------------------------------


def test_an_import_answers_a_job_an_upload_uri_and_headers_as_the_spec_says(
    api: Api, emu: Emulator, fields: dict[str, str], openapi: OpenApi
) -> None:
    body = {
        "file_type": "csv",
        "field_mappings": [EMAIL, None, fields["plan"]],
        "list_ids": [fields["list"]],
    }
    openapi.check_request(IMPORT, body)

    response = api.put(IMPORTS, json=body)

    assert response.status_code == 200
    openapi.check_response(IMPORT, response)
    started = response.json()
    assert started["upload_uri"].startswith(emu.base_url + "/_uploads/" + started["job_id"])
    assert [h["header"] for h in started["upload_headers"]] == ["X-Upload-Token"]
    job = api.job(started["job_id"])
    assert (job["status"], job["job_type"], job["results"]) == (
        "pending",
        "upsert",
        {"requested_count": 0},
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"file_type": "json", "field_mappings": [EMAIL]}, "file_type"),
        ({"file_type": "csv"}, "field_mappings"),
        ({"file_type": "csv", "field_mappings": []}, "field_mappings"),
        ({"file_type": "csv", "field_mappings": [EMAIL, "e99_T"]}, "field_mappings"),
        ({"file_type": "csv", "field_mappings": [EMAIL, "_rf21_D"]}, "field_mappings"),
        ({"file_type": "csv", "field_mappings": [EMAIL, "_rf2"]}, "field_mappings"),
        ({"file_type": "csv", "field_mappings": [FIRST_NAME, CITY]}, "field_mappings"),
        ({"file_type": "csv", "field_mappings": [EMAIL, CITY, CITY]}, "field_mappings"),
    ],
    ids=[
        "not-csv",
        "no-mappings",
        "empty-mappings",
        "unknown-id",
        "read-only",
        "spec-example-short-id",
        "no-identifier",
        "mapped-twice",
    ],
)
def test_an_import_request_the_emulator_cannot_map_is_a_400_naming_the_field(
    api: Api, openapi: OpenApi, body: dict[str, Any], field: str
) -> None:
    response = api.put(IMPORTS, json=body)

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == field
    openapi.check_response(IMPORT, response)


def test_an_import_into_an_unknown_list_is_the_specs_404(api: Api, openapi: OpenApi) -> None:
    body = {"file_type": "csv", "field_mappings": [EMAIL], "list_ids": ["no-such-list"]}

    response = api.put(IMPORTS, json=body)

    assert response.status_code == 404
    assert response.json()["errors"][0]["field"] == "list_ids"
    openapi.check_response(IMPORT, response)


# -- the upload and the job --------------------------------------------------------------------


def test_a_gzip_csv_upload_is_imported_into_contacts_lists_and_typed_custom_fields(
    api: Api, emu: Emulator, fields: dict[str, str]
) -> None:
    started = _start(
        api,
        [EMAIL, FIRST_NAME, None, fields["seats"], fields["renewal"]],
        list_ids=[fields["list"]],
    )
    rows = [
        ["email", "first", "ignored", "seats", "renewal"],
        ["Ann@Example.com", "Ann", "x", "3", "01/31/2025"],
        ["bob@example.com", "", "y", "2.5", "2025-01-31T00:00:00Z"],
    ]

    uploaded = _upload(started, _csv(rows))
    job = api.finish(started["job_id"])

    assert (uploaded.status_code, uploaded.content) == (200, b"")
    assert (job["status"], job["results"]["requested_count"]) == ("completed", 2)
    assert job["results"]["created_count"] == 2
    ann = emu.contact("ann@example.com") or {}
    assert (ann["first_name"], ann["list_ids"]) == ("Ann", [fields["list"]])
    assert ann["custom_fields"] == {fields["seats"]: 3, fields["renewal"]: "01/31/2025"}
    bob = emu.contact("bob@example.com") or {}
    assert "first_name" not in bob  # an empty cell leaves the field unset
    assert bob["custom_fields"] == {fields["seats"]: 2.5}  # an ISO date: dropped (below)


@pytest.mark.parametrize(
    ("cell", "kept"),
    [
        ("01/31/2025", True),
        ("1/5/2025", True),
        ("12/5/2025", True),
        ("1/05/2025", True),
        ("2025-01-31T00:00:00Z", False),  # what upserts take; undocumented for CSV
        ("2025-01-31", False),
        ("31/01/2025", False),  # not a calendar date read month first
        ("02/30/2025", False),
        ("01/31/25", False),
    ],
)
def test_a_date_cell_not_in_the_csv_guides_forms_is_dropped_silently_and_the_rest_imports(
    api: Api, emu: Emulator, fields: dict[str, str], cell: str, kept: bool
) -> None:
    started = _start(api, [EMAIL, FIRST_NAME, fields["renewal"]])

    _upload(started, _csv([["email", "first", "renewal"], ["ann@example.com", "Ann", cell]]))
    job = api.finish(started["job_id"])

    assert (job["status"], job["results"]["errored_count"]) == ("completed", 0)
    ann = emu.contact("ann@example.com") or {}
    assert ann["first_name"] == "Ann"
    assert ann.get("custom_fields", {}) == ({fields["renewal"]: cell} if kept else {})


def test_an_uncompressed_csv_upload_updates_existing_contacts(
    api: Api, emu: Emulator, fields: dict[str, str]
) -> None:
    api.upsert_and_finish([{"email": "ann@example.com", "city": "Oslo"}])
    started = _start(api, [EMAIL, FIRST_NAME])

    _upload(started, _csv([["e", "f"], ["ann@example.com", "Ann"]], gzipped=False))
    job = api.finish(started["job_id"])

    assert (job["results"]["created_count"], job["results"]["updated_count"]) == (0, 1)
    ann = emu.contact("ann@example.com") or {}
    assert (ann["first_name"], ann["city"]) == ("Ann", "Oslo")


def test_a_cell_longer_than_pythons_csv_default_is_imported_as_an_upsert_would_take_it(
    api: Api, emu: Emulator
) -> None:
    long_code = "9" * 140_000  # postal_code has no maxLength; csv's default limit is 131,072
    started = _start(api, [EMAIL, "_rf8_T"])

    _upload(started, _csv([["e", "p"], ["ann@example.com", long_code], ["bo@example.com", "1"]]))
    job = api.finish(started["job_id"])

    assert job["status"] == "completed"
    assert (emu.contact("ann@example.com") or {})["postal_code"] == long_code


def test_bad_rows_error_alone_and_are_listed_in_the_errors_file(
    api: Api, emu: Emulator, fields: dict[str, str]
) -> None:
    emu.force_contact_errors({"blocked@example.com": "mailbox rejected"})
    started = _start(api, [EMAIL, fields["seats"], CITY])
    rows = [
        ["email", "seats", "city"],
        ["good@example.com", "1", "Oslo"],
        ["not-an-email", "1", "Oslo"],
        ["short@example.com", "1"],
        ["seats@example.com", "many", "Oslo"],
        ["", "1", "Oslo"],
        ["long@example.com", "1", "x" * 61],
        ["blocked@example.com", "1", "Oslo"],
    ]

    _upload(started, _csv(rows))
    job = api.finish(started["job_id"])

    assert (job["status"], job["results"]["requested_count"]) == ("errored", 7)
    assert (job["results"]["created_count"], job["results"]["errored_count"]) == (1, 6)
    reasons = {(r["primary_email"], r["errors_occurred"]) for r in _errors(job)}
    assert reasons == {
        ("not-an-email", "email 'not-an-email' is not valid"),
        ("short@example.com", "the row has 2 columns, not 3"),
        ("seats@example.com", NOT_A_NUMBER),
        ("", f"contact must have at least one identifier: {ALL_IDENTIFIERS}"),
        ("long@example.com", "city must be at most 60 characters"),
        ("blocked@example.com", "mailbox rejected"),
    }
    assert [c["email"] for c in emu.contacts()] == ["good@example.com"]


def test_a_job_waits_for_its_file_and_is_processed_once_it_comes(api: Api, emu: Emulator) -> None:
    started = _start(api, [EMAIL])

    before = [api.job(started["job_id"])["status"] for _ in range(3)]
    processed = emu.process_jobs()
    _upload(started, _csv([["email"], ["a@example.com"]]))
    job = api.finish(started["job_id"])

    assert before == ["pending"] * 3
    assert processed == 0
    assert job["status"] == "completed"


def test_the_upload_is_recorded_without_its_signature(api: Api, emu: Emulator) -> None:
    started = _start(api, [EMAIL])

    _upload(started, _csv([["email"], ["a@example.com"]]))

    recorded = emu.requests[-1]
    assert (recorded.route, recorded.status) == ("PUT /_uploads/{job_id}", 200)
    assert "signature" not in recorded.path
    assert recorded.header("X-Upload-Token") is not None


# -- failure modes ------------------------------------------------------------------------------


def test_an_upload_carrying_the_api_key_is_refused_and_the_file_is_not_taken(
    api: Api, emu: Emulator
) -> None:
    started = _start(api, [EMAIL])
    data = _csv([["email"], ["a@example.com"]])

    with_key = _upload(started, data, Authorization=f"Bearer {emu.api_key}")
    unsigned = requests.put(started["upload_uri"].split("?")[0], data=data, timeout=5)
    no_header = requests.put(started["upload_uri"], data=data, timeout=5)
    emu.process_jobs()

    assert (with_key.status_code, unsigned.status_code, no_header.status_code) == (400, 403, 403)
    assert with_key.headers["Content-Type"] == "application/xml"
    assert b"<Code>InvalidArgument</Code>" in with_key.content
    assert api.job(started["job_id"])["status"] == "pending"


def test_an_upload_url_takes_one_file(api: Api) -> None:
    started = _start(api, [EMAIL])

    first = _upload(started, _csv([["email"], ["a@example.com"]]))
    second = _upload(started, _csv([["email"], ["b@example.com"]]))

    assert (first.status_code, second.status_code) == (200, 403)


def test_a_rejected_upload_can_be_sent_again(api: Api, emu: Emulator) -> None:
    emu.faults.add("PUT /_uploads/{job_id}", status=503, times=1)
    started = _start(api, [EMAIL])
    data = _csv([["email"], ["a@example.com"]])

    rejected = _upload(started, data)
    accepted = _upload(started, data)

    assert (rejected.status_code, accepted.status_code) == (503, 200)
    assert api.finish(started["job_id"])["status"] == "completed"


def test_a_failed_import_job_lists_every_row_with_the_reason(api: Api, emu: Emulator) -> None:
    emu.fail_next_jobs(1, reason="you have hit your contact limit")
    started = _start(api, [EMAIL])

    _upload(started, _csv([["email"], ["a@example.com"], ["b@example.com"]]))
    job = api.finish(started["job_id"])

    assert (job["status"], job["results"]["errored_count"]) == ("failed", 2)
    assert [r["primary_email"] for r in _errors(job)] == ["a@example.com", "b@example.com"]
    assert emu.contacts() == []


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_csv([["email", "extra"], ["a@example.com", "x"]]), "the header has 2 columns"),
        (b"", "the header has 0 columns"),
        (b"\x1f\x8bnot really gzip", "cannot be read as CSV"),
        (gzip.compress(b"email\n\xff\xfe@example.com\n"), "cannot be read as CSV"),
    ],
    ids=["header-width", "empty", "broken-gzip", "not-utf8"],
)
def test_a_file_that_cannot_be_read_fails_the_job_before_any_row_applies(
    api: Api, emu: Emulator, data: bytes, reason: str
) -> None:
    started = _start(api, [EMAIL])

    _upload(started, data)
    job = api.finish(started["job_id"])

    assert job["status"] == "failed"
    [row] = _errors(job)
    assert reason in row["errors_occurred"]
    assert emu.contacts() == []


def test_without_retaining_contacts_an_import_counts_its_rows_but_stores_none(
    api_for: type[Api],
) -> None:
    with Emulator("SG.k", job_polls_until_done=0, retain_contacts=False) as emu:
        api = api_for(emu)
        started = _start(api, [EMAIL])
        _upload(started, _csv([["email"], ["a@example.com"], ["x"]]))
        job = api.finish(started["job_id"])

    assert (job["results"]["created_count"], job["results"]["errored_count"]) == (1, 1)
    assert emu.contacts() == []


def test_a_file_of_more_than_a_million_contacts_fails_the_job(api: Api, emu: Emulator) -> None:
    started = _start(api, [EMAIL])
    lines = "\n".join(f"u{i}@example.com" for i in range(1_000_001))
    data = gzip.compress(("email\n" + lines + "\n").encode(), compresslevel=1)

    assert _upload(started, data).status_code == 200
    job = api.finish(started["job_id"])

    assert job["status"] == "failed"
    assert _errors(job)[0]["errors_occurred"] == "the file has more than 1000000 contacts"
    assert emu.contacts() == []
