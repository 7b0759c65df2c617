"""The typed calls removals need: search by identifiers, delete contacts, remove from a list.

Against the emulator over loopback HTTP; the transport's retries and pacing apply to them as
to every call, and a redirect is never followed.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from sendgrid_destination.api.client import SEARCH_TYPES, SendGridClient
from sendgrid_destination.errors import RateLimitedError, RequestRejectedError

SEARCH = "POST /v3/marketing/contacts/search/identifiers/{identifier_type}"


def seed(client: SendGridClient, emu: Any, *contacts: dict[str, Any], lists: list[str] = ()):
    body: dict[str, Any] = {"contacts": list(contacts)}
    if lists:
        body["list_ids"] = list(lists)
    client.upsert_contacts(json.dumps(body).encode())
    emu.process_jobs()


def test_a_search_finds_contacts_by_identifier_emails_in_any_case(
    client: SendGridClient, emu: Any
) -> None:
    seed(client, emu, {"email": "ann@example.com", "external_id": "crm-1"}, {"email": "b@x.co"})

    by_email = client.search_contacts("email", ["ANN@example.com", "nobody@example.com"])
    by_id = client.search_contacts("external_id", ["crm-1"])

    assert set(by_email) == {"ann@example.com"}
    assert by_email["ann@example.com"].id == by_id["crm-1"].id
    assert by_id["crm-1"].identifiers == {"email": "ann@example.com", "external_id": "crm-1"}


def test_a_search_that_matches_nothing_is_empty_not_an_error(client: SendGridClient) -> None:
    assert client.search_contacts("email", ["nobody@example.com"]) == {}


def test_a_search_answer_naming_a_contact_without_the_searched_value_is_not_trusted(
    client: SendGridClient, emu: Any
) -> None:
    other = {"contact": {"id": "c-1", "email": "other@example.com", "list_ids": []}}
    emu.faults.add(SEARCH, status=200, body={"result": {"ann@example.com": other}})

    assert client.search_contacts("email", ["ann@example.com"]) == {}


def test_a_search_takes_one_to_a_hundred_values_of_a_known_identifier_type(
    client: SendGridClient,
) -> None:
    assert set(SEARCH_TYPES) == {"email", "phone_number_id", "external_id", "anonymous_id"}
    for kind, values in [("email", []), ("email", ["a@x.co"] * 101), ("id", ["1"])]:
        with pytest.raises(ValueError):
            client.search_contacts(kind, values)


def test_deleting_contacts_is_a_job_followed_through_the_import_status(
    client: SendGridClient, emu: Any
) -> None:
    seed(client, emu, {"email": "a@x.co"}, {"email": "b@x.co"})
    ids = [c.id for c in client.search_contacts("email", ["a@x.co", "b@x.co"]).values()]

    job_id = client.delete_contacts(ids)
    emu.process_jobs()

    job = client.import_status(job_id)
    assert (job.status, job.job_type, job.deleted_count) == ("completed", "delete_contacts", 2)
    assert emu.contacts() == []


def test_removing_contacts_from_a_list_keeps_the_contacts(client: SendGridClient, emu: Any) -> None:
    a = emu.add_list("A")
    seed(client, emu, {"email": "a@x.co"}, lists=[a])
    (contact,) = client.search_contacts("email", ["a@x.co"]).values()
    assert contact.list_ids == (a,)

    job_id = client.remove_from_list(a, [contact.id])
    emu.process_jobs()

    assert client.import_status(job_id).deleted_count == 1
    assert emu.contact("a@x.co")["list_ids"] == []


def test_removing_from_an_unknown_list_is_a_404_refusal(client: SendGridClient, emu: Any) -> None:
    seed(client, emu, {"email": "a@x.co"})
    (contact,) = client.search_contacts("email", ["a@x.co"]).values()

    with pytest.raises(RequestRejectedError) as refused:
        client.remove_from_list("00000000-0000-0000-0000-000000000000", [contact.id])

    assert refused.value.status == 404


def test_the_id_url_length_is_the_length_of_the_url_before_its_ids(
    client: SendGridClient, emu: Any
) -> None:
    a = emu.add_list("A")
    seed(client, emu, {"email": "a@x.co"}, lists=[a])
    (contact,) = client.search_contacts("email", ["a@x.co"]).values()
    emu.clear_requests()

    client.remove_from_list(a, [contact.id])
    client.delete_contacts([contact.id])

    removal, deletion = (r.path for r in emu.requests)
    assert len(emu.base_url + removal) == client.ids_url_length(a) + len(contact.id)
    assert len(emu.base_url + deletion) == client.ids_url_length(None) + len(contact.id)


def test_deletions_are_retried_on_429_like_every_call(
    make_client: Any, emu: Any, clock: Any
) -> None:
    client = make_client(emu.base_url, max_attempts=3)
    emu.faults.add("DELETE /v3/marketing/contacts", status=429, times=2)

    assert client.delete_contacts(["00000000-0000-0000-0000-000000000001"])
    emu.faults.add("DELETE /v3/marketing/contacts", status=429, times=3)
    with pytest.raises(RateLimitedError):
        client.delete_contacts(["00000000-0000-0000-0000-000000000001"])


def test_list_paging_ends_after_at_most_a_thousand_and_one_pages(
    make_client: Any,
) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from sendgrid_destination.api.client import MAX_LIST_PAGES
    from sendgrid_destination.errors import ServerError

    served = []

    class Endless(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.append(self.path)
            body = json.dumps(
                {
                    "result": [],
                    "_metadata": {"next": f"/v3/marketing/lists?page_token={len(served)}"},
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Endless)
    threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    try:
        client = make_client(f"http://127.0.0.1:{server.server_address[1]}")
        with pytest.raises(ServerError) as endless:
            client.lists()
    finally:
        server.shutdown()
        server.server_close()

    assert len(served) == MAX_LIST_PAGES
    assert "1,000 lists" in str(endless.value)
