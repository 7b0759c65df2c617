"""The identifier rule (issue 17): "In order to update a contact, all of its existing
identifiers must be present", an email change, identifiers that point at two contacts,
and removing one identifier with DELETE /v3/marketing/contacts/{id}/identifiers."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING, Any

import pytest
import requests

from sendgrid_destination.emulator import Emulator

from .support import OpenApi

if TYPE_CHECKING:
    from .support import Api

FULL = {
    "email": "a@example.com",
    "phone_number_id": "+14155550100",
    "external_id": "crm-1",
    "anonymous_id": "anon-1",
}
REMOVE = "DELETE /v3/marketing/contacts/{contact_id}/identifiers"


def _reasons(job: dict[str, Any]) -> list[str]:
    response = requests.get(job["results"]["errors_url"], timeout=5)
    return [row["errors_occurred"] for row in csv.DictReader(io.StringIO(response.text))]


def _one_contact(emu: Emulator) -> dict[str, Any]:
    [contact] = emu.contacts()
    return contact


@pytest.mark.parametrize("omitted", sorted(FULL))
def test_a_row_omitting_any_identifier_its_contact_has_fails_naming_it(
    api: Api, emu: Emulator, omitted: str
) -> None:
    api.upsert_and_finish([FULL])
    row = {k: v for k, v in FULL.items() if k != omitted} | {"first_name": "Ann"}

    job = api.upsert_and_finish([row])

    assert job["status"] == "failed"
    assert _reasons(job) == [f"contact is missing existing identifier(s): {omitted}"]
    assert "first_name" not in _one_contact(emu)


def test_a_new_email_beside_an_existing_external_id_fails_and_changes_nothing(
    api: Api, emu: Emulator
) -> None:
    api.upsert_and_finish([{"email": "old@example.com", "external_id": "crm-1"}])

    job = api.upsert_and_finish([{"email": "new@example.com", "external_id": "crm-1"}])

    assert job["status"] == "failed"
    assert _reasons(job) == ["contact is missing existing identifier(s): email"]
    assert [c["email"] for c in emu.contacts()] == ["old@example.com"]


def test_another_value_for_an_existing_identifier_counts_as_missing(
    api: Api, emu: Emulator
) -> None:
    api.upsert_and_finish([{"email": "a@example.com", "external_id": "crm-1"}])

    job = api.upsert_and_finish([{"email": "a@example.com", "external_id": "crm-2"}])

    assert _reasons(job) == ["contact is missing existing identifier(s): external_id"]
    assert _one_contact(emu)["external_id"] == "crm-1"


def test_a_new_email_alone_creates_a_second_contact(api: Api, emu: Emulator) -> None:
    api.upsert_and_finish([{"email": "old@example.com", "external_id": "crm-1"}])

    job = api.upsert_and_finish([{"email": "new@example.com"}])

    assert (job["status"], job["results"]["created_count"]) == ("completed", 1)
    assert sorted(c["email"] for c in emu.contacts()) == ["new@example.com", "old@example.com"]


def test_identifiers_of_two_different_contacts_fail_and_leave_both_alone(
    api: Api, emu: Emulator
) -> None:
    api.upsert_and_finish([{"email": "a@example.com"}, {"external_id": "crm-2"}])

    job = api.upsert_and_finish([{"email": "a@example.com", "external_id": "crm-2", "city": "X"}])

    assert _reasons(job) == ["identifiers match more than one existing contact"]
    assert len(emu.contacts()) == 2
    assert all("city" not in c for c in emu.contacts())


def test_an_update_may_add_an_unused_identifier_but_not_one_another_contact_holds(
    api: Api, emu: Emulator
) -> None:
    api.upsert_and_finish([{"email": "a@example.com"}, {"email": "b@example.com"}])

    added = api.upsert_and_finish([{"email": "a@example.com", "external_id": "crm-1"}])
    taken = api.upsert_and_finish([{"email": "b@example.com", "external_id": "crm-1"}])

    assert added["status"] == "completed"
    assert _reasons(taken) == ["identifiers match more than one existing contact"]
    assert emu.contact("b@example.com") is not None
    assert "external_id" not in (emu.contact("b@example.com") or {})


def test_all_identifiers_present_updates_even_with_a_differently_cased_email(
    api: Api, emu: Emulator
) -> None:
    api.upsert_and_finish([FULL])

    job = api.upsert_and_finish([FULL | {"email": "A@Example.COM", "first_name": "Ann"}])

    assert (job["status"], job["results"]["updated_count"]) == ("completed", 1)
    assert _one_contact(emu)["first_name"] == "Ann"


def test_the_rule_applies_in_request_order_within_one_job(api: Api, emu: Emulator) -> None:
    job = api.upsert_and_finish(
        [{"email": "a@example.com", "external_id": "crm-1"}, {"email": "a@example.com"}]
    )

    assert (job["status"], job["results"]["created_count"]) == ("errored", 1)
    assert _reasons(job) == ["contact is missing existing identifier(s): external_id"]


# -- removing one identifier: the documented way to change an email ---------------------------


def _remove(api: Api, contact_id: str, kind: str, value: str) -> requests.Response:
    body = {"identifier_type": kind, "identifier_value": value}
    return api.delete(f"/v3/marketing/contacts/{contact_id}/identifiers", json=body)


def test_an_email_changes_by_removing_the_old_one_then_upserting_the_new_one(
    api: Api, emu: Emulator
) -> None:
    api.upsert_and_finish([{"email": "old@example.com", "external_id": "crm-1"}])
    contact_id = _one_contact(emu)["id"]

    removed = _remove(api, contact_id, "EMAIL", "Old@Example.com")
    removal = api.finish(removed.json()["job_id"])
    changed = api.upsert_and_finish([{"email": "new@example.com", "external_id": "crm-1"}])

    assert removed.status_code == 202
    assert (removal["status"], removal["job_type"]) == ("completed", "delete_contacts")
    assert removal["results"]["deleted_count"] == 1
    assert changed["results"]["updated_count"] == 1
    contact = _one_contact(emu)
    assert (contact["id"], contact["email"], contact["external_id"]) == (
        contact_id,
        "new@example.com",
        "crm-1",
    )


def test_removing_a_contacts_only_identifier_fails_in_the_job(api: Api, emu: Emulator) -> None:
    api.upsert_and_finish([{"email": "a@example.com"}])

    job = api.finish(
        _remove(api, _one_contact(emu)["id"], "EMAIL", "a@example.com").json()["job_id"]
    )

    assert job["status"] == "failed"
    assert _reasons(job) == ["a contact must keep at least one identifier"]
    assert _one_contact(emu)["email"] == "a@example.com"


def test_removing_an_identifier_the_contact_does_not_hold_fails_in_the_job(
    api: Api, emu: Emulator
) -> None:
    api.upsert_and_finish([{"email": "a@example.com", "external_id": "crm-1"}])

    removed = _remove(api, _one_contact(emu)["id"], "EXTERNALID", "crm-9")
    job = api.finish(removed.json()["job_id"])

    assert _reasons(job) == ["contact has no such external_id"]
    assert _one_contact(emu)["external_id"] == "crm-1"


def test_identifier_removal_refusals_match_the_spec(
    api: Api, emu: Emulator, openapi: OpenApi
) -> None:
    api.upsert_and_finish([{"email": "a@example.com", "external_id": "crm-1"}])
    contact_id = _one_contact(emu)["id"]
    body = {"identifier_type": "EXTERNALID", "identifier_value": "crm-1"}
    openapi.check_request(REMOVE, body)

    accepted = _remove(api, contact_id, "EXTERNALID", "crm-1")
    lower_case = _remove(api, contact_id, "external_id", "crm-1")
    no_value = api.delete(
        f"/v3/marketing/contacts/{contact_id}/identifiers", json={"identifier_type": "EMAIL"}
    )
    unknown = _remove(api, "no-such-contact", "EMAIL", "a@example.com")

    statuses = [r.status_code for r in (accepted, lower_case, no_value, unknown)]
    assert statuses == [202, 400, 400, 404]
    for response in (accepted, lower_case, no_value, unknown):
        openapi.check_response(REMOVE, response)
    assert lower_case.json()["errors"][0]["field"] == "identifier_type"
