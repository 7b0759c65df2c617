"""Search by email or identifier, delete contacts, and count them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from sendgrid_destination.emulator import Emulator

if TYPE_CHECKING:
    from .support import Api

EMAILS = "/v3/marketing/contacts/search/emails"
IDENTIFIERS = "/v3/marketing/contacts/search/identifiers/"
CONTACTS = "/v3/marketing/contacts"
COUNT = "/v3/marketing/contacts/count"


def test_search_by_email_maps_each_searched_address_to_a_contact_or_an_error(api: Api) -> None:
    api.upsert_and_finish([{"email": "jane@example.com", "first_name": "Jane"}])

    response = api.post(EMAILS, json={"emails": ["Jane@Example.com", "nobody@example.com"]})

    assert response.status_code == 200
    result = response.json()["result"]
    assert set(result) == {"jane@example.com", "nobody@example.com"}
    assert result["jane@example.com"]["contact"]["first_name"] == "Jane"
    assert result["nobody@example.com"] == {"error": "contact not found"}


def test_search_by_email_also_matches_alternate_emails(api: Api) -> None:
    api.upsert_and_finish([{"email": "jane@example.com", "alternate_emails": ["j@work.example"]}])

    result = api.post(EMAILS, json={"emails": ["j@work.example"]}).json()["result"]

    assert result["j@work.example"]["contact"]["email"] == "jane@example.com"


def test_search_by_email_with_no_match_is_a_404(api: Api) -> None:
    response = api.post(EMAILS, json={"emails": ["nobody@example.com"]})

    assert response.status_code == 404
    assert response.json()["errors"][0]["message"] == "contacts not found"


def test_search_by_email_takes_at_most_100_addresses(api: Api) -> None:
    emails = [f"u{i}@example.com" for i in range(101)]

    response = api.post(EMAILS, json={"emails": emails})

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "emails"
    assert api.post(EMAILS, json={"emails": emails[:100]}).status_code == 404


def test_search_by_email_refuses_an_invalid_address(api: Api) -> None:
    response = api.post(EMAILS, json={"emails": ["not-an-email"]})

    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == "email 'not-an-email' is not valid"


def test_search_by_identifier_refuses_the_whole_search_for_one_invalid_address(
    api: Api,
) -> None:
    api.upsert_and_finish([{"email": "ann@example.com"}])

    response = api.post(
        IDENTIFIERS + "email", json={"identifiers": ["ann@example.com", "a..b@x.co"]}
    )
    other_kind = api.post(IDENTIFIERS + "external_id", json={"identifiers": ["a..b@x.co"]})

    assert response.status_code == 400
    assert response.json()["errors"][0] == {
        "field": "identifiers",
        "message": "email 'a..b@x.co' is not valid",
    }
    assert other_kind.status_code == 404  # only addresses are checked


def test_search_by_email_refuses_an_address_over_the_specs_100_characters(
    api: Api, emu: Emulator
) -> None:
    long_email = "x" * 60 + "@" + "d" * 27 + ".example.com"  # 100 characters: searchable
    api.upsert_and_finish([{"email": long_email}])

    found = api.post(EMAILS, json={"emails": [long_email]})
    refused = api.post(EMAILS, json={"emails": ["x" + long_email]})
    by_identifier = api.post(
        "/v3/marketing/contacts/search/identifiers/email", json={"identifiers": ["x" + long_email]}
    )

    assert found.status_code == 200
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["field"] == "emails"
    assert by_identifier.status_code == 404  # longer addresses are searched by identifier


def test_search_does_not_see_contacts_whose_job_is_still_pending(api: Api) -> None:
    api.upsert([{"email": "jane@example.com"}])

    assert api.post(EMAILS, json={"emails": ["jane@example.com"]}).status_code == 404


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("email", "jane@example.com"),
        ("phone_number_id", "+14155550100"),
        ("external_id", "crm-1"),
        ("anonymous_id", "anon-1"),
    ],
)
def test_search_by_identifier_finds_the_contact_by_that_identifier(
    api: Api, kind: str, value: str
) -> None:
    api.upsert_and_finish(
        [
            {
                "email": "jane@example.com",
                "phone_number_id": "+14155550100",
                "external_id": "crm-1",
                "anonymous_id": "anon-1",
            }
        ]
    )

    missing = "missing@example.com" if kind == "email" else "missing"
    response = api.post(IDENTIFIERS + kind, json={"identifiers": [value, missing]})

    assert response.status_code == 200
    result = response.json()["result"]
    assert result[value]["contact"]["external_id"] == "crm-1"
    assert result[missing] == {"error": "contact not found"}


def test_search_by_identifier_with_no_match_is_a_404(api: Api) -> None:
    response = api.post(IDENTIFIERS + "external_id", json={"identifiers": ["nope"]})

    assert response.status_code == 404


def test_search_by_identifier_takes_at_most_100_values(api: Api) -> None:
    values = [f"id-{i}" for i in range(101)]

    response = api.post(IDENTIFIERS + "external_id", json={"identifiers": values})

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "identifiers"


def test_search_by_an_unknown_identifier_type_is_refused(api: Api) -> None:
    response = api.post(IDENTIFIERS + "contact_id", json={"identifiers": ["x"]})

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "identifier_type"


def test_search_with_the_wrong_body_shape_is_refused(api: Api) -> None:
    assert api.post(EMAILS, json={}).status_code == 400
    assert api.post(EMAILS, json={"emails": "a@example.com"}).json()["errors"] == [
        {"field": "", "message": "invalid input"}
    ]


def test_deleting_contacts_by_id_is_a_delete_job(api: Api, emu: Emulator) -> None:
    api.upsert_and_finish([{"email": "a@example.com"}, {"email": "b@example.com"}])
    doomed = (emu.contact("a@example.com") or {})["id"]

    response = api.delete(CONTACTS, params={"ids": f"{doomed},unknown-id"})

    assert response.status_code == 202
    assert emu.contact("a@example.com") is not None  # not before the job runs
    job = api.finish(response.json()["job_id"])
    assert job["job_type"] == "delete_contacts"
    assert job["results"]["requested_count"] == 2
    assert job["results"]["deleted_count"] == 1
    assert [c["email"] for c in emu.contacts()] == ["b@example.com"]


def test_a_contact_deleted_by_id_leaves_its_lists_and_its_identifiers_free(
    api: Api, emu: Emulator
) -> None:
    list_id = emu.add_list("Customers")
    api.upsert_and_finish([{"email": "a@example.com", "external_id": "crm-1"}], list_ids=[list_id])
    doomed = (emu.contact("a@example.com") or {})["id"]

    api.finish(api.delete(CONTACTS, params={"ids": doomed}).json()["job_id"])
    again = api.upsert_and_finish([{"external_id": "crm-1"}])

    assert api.get("/v3/marketing/lists").json()["result"][0]["contact_count"] == 0
    assert again["results"]["created_count"] == 1
    assert emu.contact("a@example.com") is None


def test_a_request_url_over_8_kib_is_refused_with_414_and_changes_nothing(
    api: Api, emu: Emulator
) -> None:
    api.upsert_and_finish([{"email": "a@example.com"}])
    contact_id = (emu.contact("a@example.com") or {})["id"]
    ids_that_fit = ",".join([contact_id] * ((8_192 - 60) // 37))
    too_many = ids_that_fit + "," + ",".join([contact_id] * 5)

    refused = api.delete(f"{CONTACTS}?ids={too_many}")
    accepted = api.delete(f"{CONTACTS}?ids={ids_that_fit}")

    assert len(refused.request.path_url) > 8_192 >= len(accepted.request.path_url)
    assert refused.status_code == 414
    assert refused.json() == {"errors": [{"field": None, "message": "request URI too long"}]}
    assert "X-RateLimit-Limit" in refused.headers
    assert accepted.status_code == 202
    assert len(emu.jobs()) == 2  # the upsert and the accepted delete only


def test_deleting_all_contacts_needs_the_string_true(api: Api, emu: Emulator) -> None:
    api.upsert_and_finish([{"email": "a@example.com"}, {"email": "b@example.com"}])

    refused = api.delete(CONTACTS, params={"delete_all_contacts": "yes"})
    accepted = api.delete(CONTACTS, params={"delete_all_contacts": "true"})

    assert refused.status_code == 400
    assert accepted.status_code == 202
    assert api.finish(accepted.json()["job_id"])["results"]["deleted_count"] == 2
    assert emu.contacts() == []


@pytest.mark.parametrize("query", [{}, {"ids": ""}, {"ids": "a", "delete_all_contacts": "true"}])
def test_deleting_needs_exactly_one_of_ids_or_delete_all(
    api: Api, emu: Emulator, query: dict[str, str]
) -> None:
    response = api.delete(CONTACTS, params=query)

    assert response.status_code == 400
    assert emu.jobs() == []


def test_count_reports_stored_contacts_once_their_job_ran(api: Api) -> None:
    assert api.get(COUNT).json() == {"contact_count": 0, "billable_count": 0}

    api.upsert_and_finish([{"email": "a@example.com"}, {"email": "b@example.com"}])

    assert api.get(COUNT).json() == {"contact_count": 2, "billable_count": 2}
