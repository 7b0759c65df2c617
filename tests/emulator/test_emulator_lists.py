"""GET/POST /v3/marketing/lists, DELETE /v3/marketing/lists/{id} and its /contacts."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest

from sendgrid_destination.clock import FakeClock
from sendgrid_destination.emulator import Emulator
from sendgrid_destination.emulator.rules import MAX_LISTS

from .support import API_KEY

if TYPE_CHECKING:
    from .support import Api

LISTS = "/v3/marketing/lists"


def test_creating_a_list_answers_201_with_the_list(api: Api) -> None:
    response = api.post(LISTS, json={"name": "Customers"})

    assert response.status_code == 201
    body = response.json()
    assert uuid.UUID(body["id"])
    assert (body["name"], body["contact_count"]) == ("Customers", 0)
    assert body["_metadata"]["self"].endswith(f"{LISTS}/{body['id']}")


@pytest.mark.parametrize("name", ["", "x" * 101, None, 5])
def test_a_list_name_must_be_1_to_100_characters(api: Api, name: object) -> None:
    response = api.post(LISTS, json={"name": name})

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "name"


def test_a_duplicate_list_name_is_refused(api: Api) -> None:
    api.post(LISTS, json={"name": "Customers"})

    response = api.post(LISTS, json={"name": "Customers"})

    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": "name", "message": "Name already exists"}]


def test_an_account_can_still_hold_two_lists_of_one_name(api: Api, emu: Emulator) -> None:
    first = emu.add_list("VIP")
    second = emu.add_list("VIP", allow_duplicate_name=True)

    listed = api.get(LISTS).json()["result"]

    assert first != second
    assert [(item["id"], item["name"]) for item in listed] == [(first, "VIP"), (second, "VIP")]
    with pytest.raises(ValueError, match="Name already exists"):
        emu.add_list("VIP")


def test_duplicate_list_names_can_be_allowed_for_the_api_too(api_for: type[Api]) -> None:
    with Emulator("SG.k", unique_list_names=False) as emu:
        api = api_for(emu)
        created = [api.post(LISTS, json={"name": "VIP"}) for _ in range(2)]

    assert [r.status_code for r in created] == [201, 201]
    assert created[0].json()["id"] != created[1].json()["id"]


def test_the_1001st_list_is_refused(api: Api, emu: Emulator) -> None:
    for i in range(MAX_LISTS):
        emu.add_list(f"list {i}")

    response = api.post(LISTS, json={"name": "one too many"})

    assert response.status_code == 400
    assert "1000" in response.json()["errors"][0]["message"]


def test_lists_page_with_a_full_next_url_until_the_end(api: Api, emu: Emulator) -> None:
    created = [emu.add_list(f"list {i}") for i in range(250)]

    seen: list[str] = []
    url: str | None = emu.base_url + LISTS + "?page_size=100"
    pages = 0
    for _ in range(10):  # bounded: 3 pages expected
        if url is None:
            break
        body = api.session.get(url, timeout=5).json()
        seen += [item["id"] for item in body["result"]]
        assert body["_metadata"]["count"] == 250
        url = body["_metadata"].get("next")
        pages += 1

    assert seen == created
    assert pages == 3
    assert url is None


def test_a_page_limit_makes_pages_smaller_than_asked_with_next_urls_to_the_end(
    api_for: type[Api], clock: FakeClock
) -> None:
    with Emulator(API_KEY, clock=clock, lists_page_limit=40) as emu:
        created = [emu.add_list(f"list {i}") for i in range(90)]
        api = api_for(emu)
        sizes: list[int] = []
        seen: list[str] = []
        url: str | None = emu.base_url + LISTS + "?page_size=1000"
        for _ in range(10):  # bounded: 3 pages expected
            if url is None:
                break
            body = api.session.get(url, timeout=5).json()
            sizes.append(len(body["result"]))
            seen += [item["id"] for item in body["result"]]
            url = body["_metadata"].get("next")
        api.session.close()

    assert sizes == [40, 40, 10]
    assert seen == created


def test_the_default_page_size_is_100(api: Api, emu: Emulator) -> None:
    for i in range(101):
        emu.add_list(f"list {i}")

    body = api.get(LISTS).json()

    assert len(body["result"]) == 100
    assert body["_metadata"]["next"].startswith("http://")
    assert body["_metadata"]["self"].startswith(emu.base_url + LISTS)


@pytest.mark.parametrize("size", ["0", "1001", "ten", "-5"])
def test_a_page_size_outside_1_to_1000_is_refused(api: Api, size: str) -> None:
    response = api.get(LISTS, params={"page_size": size})

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "page_size"


def test_a_garbage_page_token_is_refused(api: Api) -> None:
    response = api.get(LISTS, params={"page_token": "not-a-token"})

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "page_token"


def test_lists_count_their_contacts(api: Api, emu: Emulator) -> None:
    list_id = emu.add_list("Customers")
    api.upsert_and_finish(
        [{"email": "a@example.com"}, {"email": "b@example.com"}], list_ids=[list_id]
    )

    [listed] = api.get(LISTS).json()["result"]

    assert listed["contact_count"] == 2


def test_removing_contacts_from_a_list_is_a_job_that_keeps_the_contacts(
    api: Api, emu: Emulator
) -> None:
    keep, drop = emu.add_list("keep"), emu.add_list("drop")
    api.upsert_and_finish([{"email": "a@example.com"}], list_ids=[keep, drop])
    contact_id = (emu.contact("a@example.com") or {})["id"]

    response = api.delete(f"{LISTS}/{drop}/contacts", params={"contact_ids": contact_id})

    assert response.status_code == 202
    job = api.finish(response.json()["job_id"])
    assert (job["status"], job["job_type"]) == ("completed", "delete_contacts")
    assert (emu.contact("a@example.com") or {})["list_ids"] == [keep]


def test_removing_contacts_from_an_unknown_list_is_a_404(api: Api) -> None:
    response = api.delete(f"{LISTS}/{uuid.uuid4()}/contacts", params={"contact_ids": "x"})

    assert response.status_code == 404


def test_removing_unknown_contact_ids_from_a_list_is_a_404(api: Api, emu: Emulator) -> None:
    list_id = emu.add_list("Customers")

    response = api.delete(f"{LISTS}/{list_id}/contacts", params={"contact_ids": "nope"})

    assert response.status_code == 404
    assert emu.jobs() == []


def test_removing_contacts_from_a_list_needs_contact_ids(api: Api, emu: Emulator) -> None:
    list_id = emu.add_list("Customers")

    response = api.delete(f"{LISTS}/{list_id}/contacts")

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "contact_ids"


def test_deleting_a_list_answers_204_and_no_contact_holds_it_any_more(
    api: Api, emu: Emulator
) -> None:
    keep, gone = emu.add_list("keep"), emu.add_list("gone")
    api.upsert_and_finish([{"email": "a@example.com"}], list_ids=[keep, gone])

    response = api.delete(f"{LISTS}/{gone}")

    assert (response.status_code, response.content) == (204, b"")
    assert [item["id"] for item in api.get(LISTS).json()["result"]] == [keep]
    assert (emu.contact("a@example.com") or {})["list_ids"] == [keep]
    assert api.delete(f"{LISTS}/{gone}").status_code == 404
    refused = api.put(
        "/v3/marketing/contacts", json={"list_ids": [gone], "contacts": [{"email": "b@x.com"}]}
    )
    assert refused.status_code in (400, 404)


def test_deleting_a_list_with_its_contacts_is_a_job_that_deletes_only_them(
    api: Api, emu: Emulator
) -> None:
    gone = emu.add_list("gone")
    api.upsert_and_finish([{"email": "a@example.com"}], list_ids=[gone])
    api.upsert_and_finish([{"email": "b@example.com"}])

    response = api.delete(f"{LISTS}/{gone}", params={"delete_contacts": "true"})

    assert response.status_code == 200
    job = api.finish(response.json()["job_id"])
    assert (job["status"], job["job_type"]) == ("completed", "delete_contacts")
    assert [c["email"] for c in emu.contacts()] == ["b@example.com"]


def test_deleting_a_list_with_a_delete_contacts_flag_not_a_boolean_is_refused(
    api: Api, emu: Emulator
) -> None:
    list_id = emu.add_list("Customers")

    response = api.delete(f"{LISTS}/{list_id}", params={"delete_contacts": "yes"})

    assert response.status_code == 400
    assert [item["id"] for item in api.get(LISTS).json()["result"]] == [list_id]
