"""The API layer without the network: error bodies, contact indexes, lenient results, masking."""

from __future__ import annotations

import json

import pytest

from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.api.messages import parse_error_body
from sendgrid_destination.api.models import FieldDefinitions, ImportJob
from sendgrid_destination.errors import ApiErrorDetail, ConfigurationError, ContactsRejectedError
from sendgrid_destination.redaction import redact

KEY = "SG.unit-test-key.abcdefghijklmnopqrstuvwxyz0123456789"


def body(doc: object) -> bytes:
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            body({"errors": [{"field": "contacts[0].identifier", "message": "bad"}]}),
            [ApiErrorDetail("contacts[0].identifier", "bad")],
        ),
        (
            body({"errors": {"field": "job_id", "message": "bad id"}}),
            [ApiErrorDetail("job_id", "bad id")],
        ),
        (body({"error": "Name already exists"}), [ApiErrorDetail(None, "Name already exists")]),
        (
            body({"field": "emails", "message": "not found"}),
            [ApiErrorDetail("emails", "not found")],
        ),
        (
            body({"errors": [{"field": None, "message": "too many requests"}]}),
            [ApiErrorDetail(None, "too many requests")],
        ),
        (
            body({"errors": [{"field": "", "message": "invalid input"}]}),
            [ApiErrorDetail(None, "invalid input")],
        ),
        (
            body({"errors": [{"message": "access forbidden"}]}),
            [ApiErrorDetail(None, "access forbidden")],
        ),
        (body({"errors": ["plain string"]}), [ApiErrorDetail(None, "plain string")]),
        (
            body({"errors": [{"field": "x", "error_id": "E1"}]}),
            [ApiErrorDetail("x", '{"field": "x", "error_id": "E1"}')],
        ),
        (body([{"message": "top-level list"}]), [ApiErrorDetail(None, "top-level list")]),
        (body({"errors": None}), []),
        (body({"id": "abc"}), []),
        (b"<html>502 Bad Gateway</html>", [ApiErrorDetail(None, "<html>502 Bad Gateway</html>")]),
        (b"\xff\xfe not utf-8", [ApiErrorDetail(None, "\ufffd\ufffd not utf-8")]),
        (b"", []),
    ],
    ids=[
        "errors-list",
        "errors-single-object",
        "singular-error-string",
        "bare-error-object",
        "field-null",
        "field-empty",
        "field-absent",
        "errors-of-strings",
        "entry-without-message",
        "top-level-list",
        "errors-null",
        "unrelated-object",
        "html-page",
        "undecodable-bytes",
        "empty-body",
    ],
)
def test_error_bodies_of_every_known_shape_are_parsed(
    raw: bytes, expected: list[ApiErrorDetail]
) -> None:
    assert parse_error_body(raw) == expected


def test_a_long_non_json_body_is_truncated() -> None:
    [detail] = parse_error_body(b"x" * 10_000)
    assert len(detail.message) == 200


def test_contact_errors_map_to_request_indexes_and_unindexed_errors_are_kept_apart() -> None:
    details = parse_error_body(
        body(
            {
                "errors": [
                    {"field": "contacts[3].identifier", "message": "email 'a@x.com' is not valid"},
                    {"field": "contacts[3].first_name", "message": "too long"},
                    {"field": "contacts[0]", "message": "missing identifier"},
                    {"field": "contacts[12].custom_fields.e1_T", "message": "cannot be null"},
                    {"field": None, "message": "invalid custom field ids supplied - e1_T,e9_N"},
                    {"field": "", "message": "invalid JSON"},
                    {"field": "contacts[x]", "message": "odd"},
                    {"field": "list_ids", "message": "unknown list"},
                ]
            }
        )
    )
    error = ContactsRejectedError("rejected", errors=details)
    by_contact = error.errors_by_contact()
    assert sorted(by_contact) == [0, 3, 12]
    assert [e.field for e in by_contact[3]] == ["contacts[3].identifier", "contacts[3].first_name"]
    assert [e.message for e in error.unindexed_errors] == [
        "invalid custom field ids supplied - e1_T,e9_N",
        "invalid JSON",
        "odd",
        "unknown list",
    ]
    assert error.status == 400


def test_an_error_detail_repr_shows_the_message_length_not_the_message() -> None:
    detail = ApiErrorDetail("contacts[1].identifier", "email 'jane@example.com' is not valid")
    assert "jane@example.com" not in repr(detail)
    assert repr(detail) == "ApiErrorDetail(field='contacts[1].identifier', message=<37 chars>)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("email 'x@y' is not valid", "email '<redacted>' is not valid"),
        ("Jane.Doe+tag@Example.co.uk bounced", "<redacted> bounced"),
        ("contacts a@b.com,c@d.com", "contacts <redacted>,<redacted>"),
        ("key SG.abc_DEF-123.xyz leaked", "key <redacted> leaked"),
        (
            "invalid custom field ids supplied - e1_T,e9_N",
            "invalid custom field ids supplied - e1_T,e9_N",
        ),
    ],
    ids=["quoted-email", "plus-address", "comma-list", "api-key", "no-pii"],
)
def test_redact_hides_emails_and_keys_but_keeps_the_rest(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_redact_keeps_quoted_column_names_it_is_told_of_and_hides_other_quoted_text() -> None:
    text = "field `meta` refused 'a value', column \"segs\", 'x@y.com'"

    kept = redact(text, keep={"meta", "segs", "x@y.com"})

    assert kept == "field `meta` refused '<redacted>', column \"segs\", '<redacted>'"


def test_an_import_job_is_parsed_leniently_and_ends_only_on_status() -> None:
    doc = {
        "id": "job-1",
        "status": "pending",
        "job_type": "upsert_contacts",
        "results": {"requested_count": 2, "created_count": 2},
    }
    job = ImportJob.from_json(doc)
    assert (job.id, job.status, job.job_type) == ("job-1", "pending", "upsert_contacts")
    assert (job.requested_count, job.created_count, job.updated_count) == (2, 2, 0)
    assert (job.deleted_count, job.errored_count, job.errors_url) == (0, 0, None)
    assert not job.is_terminal  # counts already complete, status still pending: keep polling


@pytest.mark.parametrize(
    ("status", "terminal"),
    [("pending", False), ("completed", True), ("errored", True), ("failed", True), ("", False)],
    ids=["pending", "completed", "errored", "failed", "missing"],
)
def test_an_import_job_is_terminal_on_completed_errored_or_failed(
    status: str, terminal: bool
) -> None:
    assert ImportJob.from_json({"status": status}, "j").is_terminal is terminal


def test_an_import_job_without_results_has_zero_counts_and_keeps_the_raw_document() -> None:
    doc = {"status": "FAILED", "job_type": "something_new", "results": "nonsense", "extra": 1}
    job = ImportJob.from_json(doc, "job-2")
    assert job.id == "job-2" and job.status == "failed" and job.is_terminal
    assert job.requested_count == job.errored_count == 0
    assert job.raw["extra"] == 1


@pytest.mark.parametrize(
    ("sent", "read"),
    [
        *[(3, 3), (3.0, 3), ("3", 3), ("3.0", 3), ("2.5", 0), ("many", 0), (None, 0)],
        *[("nan", 0), (float("inf"), 0), ("-Infinity", 0), (float("nan"), 0)],
    ],
)
def test_an_import_jobs_counts_are_read_as_numbers_or_as_text_and_anything_else_is_zero(
    sent: object, read: int
) -> None:
    job = ImportJob.from_json({"status": "completed", "results": {"errored_count": sent}}, "j")
    assert job.errored_count == read


def test_an_import_job_repr_hides_the_pre_signed_errors_url() -> None:
    job = ImportJob.from_json(
        {
            "status": "errored",
            "results": {"errored_count": "1", "errors_url": "https://s3/x?sig=abc"},
        }
    )
    assert job.errored_count == 1
    assert job.errors_url == "https://s3/x?sig=abc"
    assert "sig=abc" not in repr(job)


def test_field_definitions_keep_reserved_read_only_flags_and_tolerate_missing_ids() -> None:
    defs = FieldDefinitions.from_json(
        {
            "custom_fields": [{"id": "e1_T", "name": "Plan", "field_type": "Text"}, "junk"],
            "reserved_fields": [
                {"name": "first_name", "field_type": "Text"},
                {"id": "_rf16_D", "name": "last_clicked", "field_type": "Date", "read_only": True},
            ],
        }
    )
    assert defs.custom_by_name()["plan"].id == "e1_T"
    assert [(r.id, r.read_only) for r in defs.reserved] == [("", False), ("_rf16_D", True)]


@pytest.mark.parametrize(
    "key",
    ["", "   ", "SG.with space", "SG.line\nbreak", "SG.tab\tkey"],
    ids=["empty", "blank", "inner-space", "newline", "tab"],
)
def test_a_malformed_api_key_is_refused_before_any_request_without_echoing_it(key: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        SendGridClient(key)
    message = str(caught.value)
    assert "DESTINATION__SENDGRID__API_KEY" in message
    assert (key.strip() or "<none>") not in message


def test_a_base_url_that_is_not_http_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"api\.eu\.sendgrid\.com"):
        SendGridClient(KEY, base_url="api.sendgrid.com")


def test_the_client_repr_masks_the_api_key() -> None:
    client = SendGridClient(KEY, on_behalf_of="sub1")
    assert KEY not in repr(client)
    assert "<masked>" in repr(client)
    assert KEY not in repr(client._auth)
    client.close()
