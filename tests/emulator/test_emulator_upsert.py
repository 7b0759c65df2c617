"""PUT /v3/marketing/contacts: what is accepted (202 + job) and what refuses the whole request."""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from sendgrid_destination.emulator import Emulator
from sendgrid_destination.emulator.rules import (
    MAX_CONTACTS_PER_REQUEST,
    MAX_LENGTHS,
    MAX_REQUEST_BYTES,
)

if TYPE_CHECKING:
    from .support import Api

CONTACTS = "/v3/marketing/contacts"
LIMITED = sorted(
    (name, limit)
    for name, limit in MAX_LENGTHS.items()
    if name not in ("email", "alternate_emails")
)


def test_an_accepted_upsert_answers_202_with_a_uuid_job_id(api: Api) -> None:
    response = api.upsert([{"email": "a@example.com"}])

    assert response.status_code == 202
    assert uuid.UUID(response.json()["job_id"]).version == 4


def test_an_accepted_upsert_is_queued_not_applied(api: Api, emu: Emulator) -> None:
    api.upsert([{"email": "a@example.com"}])

    assert emu.contacts() == []
    assert [job["status"] for job in emu.jobs()] == ["pending"]


def test_invalid_json_is_refused_with_the_observed_body(api: Api) -> None:
    response = api.put(
        CONTACTS, data=b'{"contacts": [', headers={"Content-Type": "application/json"}
    )

    assert response.status_code == 400
    assert response.json() == {"errors": [{"field": "", "message": "invalid JSON"}]}


@pytest.mark.parametrize("body", [[], "contacts", {"contacts": {"email": "a@example.com"}}])
def test_a_body_of_the_wrong_shape_is_invalid_input(api: Api, body: Any) -> None:
    response = api.put(CONTACTS, json=body)

    assert response.status_code == 400
    assert response.json() == {"errors": [{"field": "", "message": "invalid input"}]}


@pytest.mark.parametrize("body", [{}, {"contacts": []}, {"list_ids": []}])
def test_missing_or_empty_contacts_are_refused_naming_contacts(api: Api, body: Any) -> None:
    response = api.put(CONTACTS, json=body)

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["contacts"]


def test_more_than_30000_contacts_are_refused(api: Api, emu: Emulator) -> None:
    contact = {"email": "a@example.com"}
    response = api.upsert([contact] * (MAX_CONTACTS_PER_REQUEST + 1))

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "contacts", "message": "contacts must contain at most 30000 items"}
    ]
    assert emu.jobs() == []


def test_a_full_6mb_upsert_of_30000_contacts_is_accepted(api: Api, emu: Emulator) -> None:
    field_id = emu.add_custom_field("plan", "Text")
    contacts = [
        {
            "email": f"user{i:05d}@example.com",
            "first_name": "F" * 30,
            "last_name": "L" * 30,
            "city": "C" * 20,
            "custom_fields": {field_id: "p" * 12},
        }
        for i in range(MAX_CONTACTS_PER_REQUEST)
    ]
    body = json.dumps({"contacts": contacts}, separators=(",", ":")).encode()
    assert 5_500_000 < len(body) <= MAX_REQUEST_BYTES

    started = time.perf_counter()
    response = api.put(CONTACTS, data=body, headers={"Content-Type": "application/json"})
    print(f"\n30,000 contacts / {len(body):,} bytes: 202 in {time.perf_counter() - started:.3f}s")

    assert response.status_code == 202
    assert emu.jobs()[0]["contact_count"] == MAX_CONTACTS_PER_REQUEST


def test_a_body_over_6000000_bytes_is_refused_with_413(api: Api, emu: Emulator) -> None:
    padding = "x" * (MAX_REQUEST_BYTES - 40)
    body = json.dumps({"contacts": [{"email": "a@example.com", "first_name": padding}]})
    assert len(body.encode()) > MAX_REQUEST_BYTES

    response = api.put(CONTACTS, data=body, headers={"Content-Type": "application/json"})

    assert response.status_code == 413
    assert "X-RateLimit-Remaining" in response.headers
    assert emu.jobs() == []


def test_a_contact_without_any_identifier_is_refused_naming_it(api: Api) -> None:
    response = api.upsert([{"email": "a@example.com"}, {"first_name": "Ann"}])

    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == "contacts[1]"
    assert "identifier" in error["message"]


def test_an_invalid_email_refuses_the_whole_request_naming_the_contact(
    api: Api, emu: Emulator
) -> None:
    contacts = [{"email": f"ok{i}@example.com"} for i in range(3)] + [{"email": "x@y"}]

    response = api.upsert(contacts)

    assert response.status_code == 400
    assert response.json() == {
        "errors": [{"field": "contacts[3].identifier", "message": "email 'x@y' is not valid"}]
    }
    assert emu.jobs() == []


@pytest.mark.parametrize("email", [" a@example.com", "a@example.com ", "a@example.com\n", ""])
def test_an_email_with_surrounding_whitespace_or_empty_is_invalid(api: Api, email: str) -> None:
    response = api.upsert([{"email": email}])

    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == f"email '{email}' is not valid"


@pytest.mark.parametrize("phone", ["4155550100", "+0123", "+1 415 555 0100", "+1234567890123456"])
def test_a_phone_number_id_that_is_not_e164_is_refused(api: Api, phone: str) -> None:
    response = api.upsert([{"phone_number_id": phone}])

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "contacts[0].identifier", "message": f"phone_number_id '{phone}' is not valid"}
    ]


def test_an_e164_phone_number_id_is_an_identifier(api: Api) -> None:
    assert api.upsert([{"phone_number_id": "+14155550100"}]).status_code == 202


@pytest.mark.parametrize(("name", "limit"), LIMITED)
def test_a_reserved_field_over_its_max_length_is_refused_naming_it(
    api: Api, name: str, limit: int
) -> None:
    at_limit = {"email": "a@example.com", name: "x" * limit}
    over = {"email": "b@example.com", name: "x" * (limit + 1)}

    response = api.upsert([at_limit, over])

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == [f"contacts[1].{name}"]


def test_an_email_over_254_characters_is_refused(api: Api) -> None:
    email = "a" * 64 + "@" + ".".join(["d" * 60] * 4) + ".com"
    assert len(email) > 254

    response = api.upsert([{"email": email}])

    assert response.json()["errors"][0]["field"] == "contacts[0].email"


def test_more_than_five_alternate_emails_are_refused(api: Api) -> None:
    five = [f"alt{i}@example.com" for i in range(5)]
    ok = {"email": "a@example.com", "alternate_emails": five}
    bad = {"email": "b@example.com", "alternate_emails": [*five, "alt5@example.com"]}

    response = api.upsert([ok, bad])

    assert [e["field"] for e in response.json()["errors"]] == ["contacts[1].alternate_emails"]


def test_a_null_custom_field_value_is_refused_with_the_observed_message(
    api: Api, emu: Emulator
) -> None:
    field_id = emu.add_custom_field("plan", "Text")

    response = api.upsert([{"email": "a@example.com", "custom_fields": {field_id: None}}])

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "field": f"contacts[0].custom_fields.{field_id}",
            "message": f'custom field "{field_id}" cannot be null',
        }
    ]


def test_unknown_custom_field_ids_are_refused_listing_them(api: Api, emu: Emulator) -> None:
    known = emu.add_custom_field("plan", "Text")
    custom = {"plan": "pro", known: "x", "emailVerified": "yes"}

    response = api.upsert([{"email": "a@example.com", "custom_fields": custom}])

    assert response.json()["errors"] == [
        {
            "field": "contacts[0].custom_fields",
            "message": "invalid custom field ids supplied - plan,emailVerified",
        }
    ]


def test_a_text_custom_field_over_1000_characters_is_refused(api: Api, emu: Emulator) -> None:
    field_id = emu.add_custom_field("bio", "Text")

    response = api.upsert([{"email": "a@example.com", "custom_fields": {field_id: "x" * 1001}}])

    assert response.json()["errors"][0]["field"] == f"contacts[0].custom_fields.{field_id}"


def test_custom_fields_sent_as_an_array_is_invalid_input(api: Api) -> None:
    response = api.upsert([{"email": "a@example.com", "custom_fields": [{"e1_T": "x"}]}])

    assert response.json() == {"errors": [{"field": "", "message": "invalid input"}]}


@pytest.mark.parametrize("value", [None, 42, ["Ann"], {"x": 1}])
def test_a_reserved_field_that_is_not_a_string_is_invalid_input(api: Api, value: Any) -> None:
    response = api.upsert([{"email": "a@example.com", "first_name": value}])

    assert response.json() == {"errors": [{"field": "", "message": "invalid input"}]}


def test_unknown_list_ids_are_refused(api: Api, emu: Emulator) -> None:
    known = emu.add_list("known")
    missing = str(uuid.uuid4())

    response = api.upsert([{"email": "a@example.com"}], list_ids=[known, missing])

    assert response.json()["errors"] == [
        {"field": "list_ids", "message": f"invalid list ids supplied - {missing}"}
    ]


@pytest.mark.parametrize("key", ["created_at", "email_domains", "last_clicked"])
def test_a_read_only_reserved_field_is_refused(api: Api, key: str) -> None:
    response = api.upsert([{"email": "a@example.com", key: "2024-01-01T00:00:00Z"}])

    assert response.json()["errors"] == [
        {"field": f"contacts[0].{key}", "message": f"{key} is a read-only field"}
    ]


def test_an_unknown_top_level_field_is_refused(api: Api) -> None:
    response = api.upsert([{"email": "a@example.com", "phone": "+14155550100"}])

    assert response.json()["errors"] == [
        {"field": "contacts[0].phone", "message": "unknown field 'phone'"}
    ]


@pytest.mark.parametrize("name", ["phone_number", "whatsapp", "line", "facebook", "unique_name"])
def test_reserved_fields_the_spec_omits_from_contact_request_are_accepted(
    api: Api, name: str
) -> None:
    value = "+14155550100" if name == "phone_number" else "value"

    assert api.upsert([{"email": "a@example.com", name: value}]).status_code == 202


def test_a_phone_number_that_is_not_e164_is_refused_like_phone_number_id(api: Api) -> None:
    response = api.upsert([{"email": "a@example.com", "phone_number": "415-555-0100"}])

    assert response.json()["errors"] == [
        {"field": "contacts[0].phone_number", "message": "phone_number '415-555-0100' is not valid"}
    ]


def test_every_bad_contact_is_reported_once_in_request_order(api: Api) -> None:
    contacts = [
        {"email": "bad"},
        {"email": "ok@example.com"},
        {"email": "also-bad", "first_name": "x" * 51},
        {"external_id": "e" * 255},
    ]

    response = api.upsert(contacts)

    assert [e["field"] for e in response.json()["errors"]] == [
        "contacts[0].identifier",
        "contacts[2].identifier",
        "contacts[3].external_id",
    ]


def test_sending_an_id_is_accepted_but_that_contact_errors_in_the_job(
    api: Api, emu: Emulator
) -> None:
    job = api.upsert_and_finish(
        [{"email": "a@example.com", "id": "custom-id"}, {"email": "b@example.com"}]
    )

    assert job["status"] == "errored"
    assert job["results"]["errored_count"] == 1
    assert emu.contact("a@example.com") is None
    assert emu.contact("b@example.com") is not None
