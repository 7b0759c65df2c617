"""Auth, routing and the HTTP plumbing every route shares."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import requests

from sendgrid_destination.emulator import Emulator

if TYPE_CHECKING:
    from .support import Api

COUNT = "/v3/marketing/contacts/count"


def test_a_request_without_authorization_is_refused_with_authorization_required(
    emu: Emulator,
) -> None:
    response = requests.get(emu.base_url + COUNT, timeout=5)

    assert response.status_code == 401
    assert response.json() == {"errors": [{"field": None, "message": "authorization required"}]}


@pytest.mark.parametrize("header", ["SG.test-key", "Basic SG.test-key", "Bearer ", "Bearer"])
def test_a_malformed_authorization_header_is_treated_as_missing(emu: Emulator, header: str) -> None:
    response = requests.get(emu.base_url + COUNT, headers={"Authorization": header}, timeout=5)

    assert response.status_code == 401
    assert response.json()["errors"][0]["message"] == "authorization required"


def test_a_wrong_key_gets_the_observed_invalid_grant_body(emu: Emulator) -> None:
    headers = {"Authorization": "Bearer SG.wrong"}
    response = requests.get(emu.base_url + COUNT, headers=headers, timeout=5)

    assert response.status_code == 401
    assert response.json() == {
        "errors": [
            {
                "message": "The provided authorization grant is invalid, expired, or revoked",
                "field": None,
                "help": None,
            }
        ]
    }


def test_a_key_without_scopes_is_forbidden(emu: Emulator) -> None:
    headers = {"Authorization": "Bearer SG.test-noscope"}
    response = requests.put(
        emu.base_url + "/v3/marketing/contacts",
        json={"contacts": [{"email": "a@example.com"}]},
        headers=headers,
        timeout=5,
    )

    assert response.status_code == 403
    assert response.json() == {"errors": [{"field": None, "message": "access forbidden"}]}
    assert emu.jobs() == []


def test_refused_requests_change_nothing(emu: Emulator) -> None:
    requests.put(
        emu.base_url + "/v3/marketing/contacts",
        json={"contacts": [{"email": "a@example.com"}]},
        timeout=5,
    )

    assert emu.jobs() == []
    assert emu.process_jobs() == 0


def test_on_behalf_of_is_accepted_and_recorded_but_the_key_is_not(api: Api, emu: Emulator) -> None:
    response = api.get(COUNT, headers={"On-Behalf-Of": "subuser-1"})

    assert response.status_code == 200
    recorded = emu.requests[-1]
    assert recorded.header("on-behalf-of") == "subuser-1"
    assert recorded.header("Authorization") is None
    assert "SG.test-key" not in str(recorded)


def test_requests_are_recorded_with_route_template_path_status_and_size(
    api: Api, emu: Emulator
) -> None:
    api.upsert([{"email": "a@example.com"}, {"email": "b@example.com"}])
    api.get("/v3/marketing/contacts/imports/nope?x=1")

    upsert, status = emu.requests
    assert (upsert.method, upsert.route, upsert.status) == (
        "PUT",
        "PUT /v3/marketing/contacts",
        202,
    )
    assert upsert.contact_count == 2
    assert upsert.body_bytes > 0
    assert status.route == "GET /v3/marketing/contacts/imports/{id}"
    assert status.path == "/v3/marketing/contacts/imports/nope?x=1"
    assert status.contact_count is None


def test_an_unknown_route_is_a_404_with_the_error_envelope(api: Api) -> None:
    response = api.get("/v3/marketing/nothing-here")

    assert response.status_code == 404
    assert response.json() == {"errors": [{"field": None, "message": "not found"}]}


def test_a_known_path_with_the_wrong_method_is_a_405_naming_the_allowed_ones(api: Api) -> None:
    response = api.post("/v3/marketing/contacts", json={})

    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == {"PUT", "DELETE"}


def test_a_session_reuses_one_keep_alive_connection(api: Api, emu: Emulator) -> None:
    for _ in range(5):
        assert api.get(COUNT).status_code == 200

    pools = api.session.get_adapter(emu.base_url).poolmanager.pools
    keys = pools.keys()  # urllib3's RecentlyUsedContainer supports keys() but not iteration
    assert sum(pools[key].num_connections for key in keys) == 1


def test_two_instances_share_no_state(api: Api, emu: Emulator) -> None:
    with Emulator("SG.other") as other:
        other.add_custom_field("only_here", "Text")
        other.faults.add("GET /v3/marketing/contacts/count", status=500)
        api.upsert_and_finish([{"email": "a@example.com"}])

        assert other.contacts() == []
        assert other.jobs() == []
        assert emu.base_url != other.base_url
        assert [
            f["name"] for f in api.get("/v3/marketing/field_definitions").json()["custom_fields"]
        ] == []
        assert api.get(COUNT).status_code == 200


def test_the_emulator_is_a_context_manager_that_frees_its_port() -> None:
    with Emulator("SG.k") as emu:
        url = emu.base_url
        assert requests.get(url + COUNT, timeout=5).status_code == 401

    with pytest.raises(requests.ConnectionError):
        requests.get(url + COUNT, timeout=2)
