"""Rows of a job's errors file become one (contact key, reason) per contact."""

from __future__ import annotations

from sendgrid_destination.api.errors_file import match_rows
from sendgrid_destination.import_jobs import failed_contacts


def _failed_contacts(rows: list[dict[str, str]]):
    """The job tracker's failed contacts for these errors-file rows (key and reason)."""
    return failed_contacts(match_rows(rows)).select(["contact_key", "reason"])


def test_a_failure_only_a_change_of_data_can_fix_is_marked_permanent():
    rows = [
        {"email": "a@x.co", "errors": "contact is missing existing identifier(s): external_id"},
        {"email": "b@x.co", "errors": "email 'b@x.co' is not valid"},
        {"email": "c@x.co", "errors": "internal error, try again"},
    ]

    failed = failed_contacts(match_rows(rows)).to_pylist()

    assert [f["permanent"] for f in failed] == [True, True, False]


def test_every_identifier_of_an_error_row_becomes_a_contact_key_with_its_reason():
    rows = [{"primary_email": " Ann@X.co ", "external_id": "crm-1", "errors_occurred": "bad date"}]

    failed = _failed_contacts(rows).to_pylist()

    assert failed == [
        {"contact_key": "email:ann@x.co", "reason": "bad date"},
        {"contact_key": "external_id:crm-1", "reason": "bad date"},
    ]


def test_a_contact_named_twice_in_the_errors_file_appears_once():
    rows = [
        {"primary_email": "ann@x.co", "email": "ANN@x.co", "errors_occurred": "first"},
        {"primary_email": "ann@x.co", "errors_occurred": "second"},
    ]

    failed = _failed_contacts(rows).to_pylist()

    assert failed == [{"contact_key": "email:ann@x.co", "reason": "second"}]


def test_a_row_without_a_reason_column_gets_a_generic_reason():
    assert _failed_contacts([{"primary_email": "a@x.co"}]).to_pylist() == [
        {"contact_key": "email:a@x.co", "reason": "failed in import job"}
    ]
