"""GET/POST /v3/marketing/field_definitions and the custom-field readiness delay."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from sendgrid_destination.clock import FakeClock
from sendgrid_destination.emulator import Emulator
from sendgrid_destination.emulator.rules import MAX_CUSTOM_FIELDS, RESERVED_FIELDS

if TYPE_CHECKING:
    from .support import Api

FIELDS = "/v3/marketing/field_definitions"
INVALID_TYPE = (
    "Field definition type is invalid; data types that are supported are text, date, and number"
)


def test_reserved_fields_are_exactly_the_rules_table_with_read_only_where_true(
    api: Api,
) -> None:
    body = api.get(FIELDS).json()

    assert body["custom_fields"] == []
    assert body["reserved_fields"] == [
        {"id": f.id, "name": f.name, "field_type": f.field_type}
        | ({"read_only": True} if f.read_only else {})
        for f in RESERVED_FIELDS
    ]
    assert body["_metadata"]["self"].endswith(FIELDS)


@pytest.mark.parametrize(("field_type", "suffix"), [("Text", "T"), ("Number", "N"), ("Date", "D")])
def test_creating_a_field_answers_200_with_an_id_encoding_its_type(
    api: Api, field_type: str, suffix: str
) -> None:
    response = api.post(FIELDS, json={"name": "plan", "field_type": field_type})

    assert response.status_code == 200
    body = response.json()
    assert body["id"].endswith(f"_{suffix}")
    assert (body["name"], body["field_type"]) == ("plan", field_type)
    assert api.get(FIELDS).json()["custom_fields"] == [
        {"id": body["id"], "name": "plan", "field_type": field_type}
    ]


@pytest.mark.parametrize("field_type", ["text", "Boolean", "", None])
def test_an_invalid_field_type_is_refused_with_twilio_error_19045(
    api: Api, field_type: str | None
) -> None:
    response = api.post(FIELDS, json={"name": "plan", "field_type": field_type})

    assert response.status_code == 400
    assert response.json() == {"errors": [{"field": "field_type", "message": INVALID_TYPE}]}


@pytest.mark.parametrize("name", ["", "1st_order", "has space", "dash-ed", "é", "x" * 101, None])
def test_an_invalid_name_is_refused_naming_the_name(api: Api, name: str | None) -> None:
    response = api.post(FIELDS, json={"name": name, "field_type": "Text"})

    assert response.status_code == 400
    assert [e["field"] for e in response.json()["errors"]] == ["name"]


@pytest.mark.parametrize("name", ["_private", "A", "x" * 100, "Plan_2"])
def test_names_of_letters_digits_and_underscores_up_to_100_are_accepted(
    api: Api, name: str
) -> None:
    assert api.post(FIELDS, json={"name": name, "field_type": "Text"}).status_code == 200


@pytest.mark.parametrize("clash", ["PLAN", "Plan", "plan"])
def test_names_are_unique_case_insensitively(api: Api, clash: str) -> None:
    assert api.post(FIELDS, json={"name": "plan", "field_type": "Text"}).status_code == 200

    response = api.post(FIELDS, json={"name": clash, "field_type": "Number"})

    assert response.status_code == 400
    assert response.json()["errors"] == [{"field": "name", "message": "Name already exists"}]


@pytest.mark.parametrize("reserved", ["first_name", "EMAIL", "Created_At", "external_id"])
def test_a_name_may_not_collide_with_a_reserved_field(api: Api, reserved: str) -> None:
    response = api.post(FIELDS, json={"name": reserved, "field_type": "Text"})

    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "name"


def test_the_501st_custom_field_is_refused(api: Api, emu: Emulator) -> None:
    for i in range(MAX_CUSTOM_FIELDS - 1):
        emu.add_custom_field(f"f{i}", "Text")
    assert api.post(FIELDS, json={"name": "last", "field_type": "Text"}).status_code == 200

    response = api.post(FIELDS, json={"name": "one_too_many", "field_type": "Text"})

    assert response.status_code == 400
    assert "500" in response.json()["errors"][0]["message"]
    assert len(api.get(FIELDS).json()["custom_fields"]) == MAX_CUSTOM_FIELDS


def test_invalid_json_to_field_definitions_is_refused(api: Api) -> None:
    response = api.post(FIELDS, data=b"{", headers={"Content-Type": "application/json"})

    assert response.json() == {"errors": [{"field": "", "message": "invalid JSON"}]}


def test_a_new_field_is_refused_by_upserts_until_it_is_ready(
    clock: FakeClock, api_for: type[Api]
) -> None:
    with Emulator("SG.k", clock=clock, custom_field_ready_seconds=5) as emu:
        api = api_for(emu)
        field_id = api.post(FIELDS, json={"name": "plan", "field_type": "Text"}).json()["id"]
        contact = {"email": "a@example.com", "custom_fields": {field_id: "pro"}}
        clock.advance(4.9)
        early = api.upsert([contact])
        clock.advance(0.1)
        ready = api.upsert([contact])

    assert early.status_code == 400
    assert early.json()["errors"][0]["message"] == f"invalid custom field ids supplied - {field_id}"
    assert ready.status_code == 202


def test_a_not_yet_ready_field_is_still_listed_by_get(clock: FakeClock, api_for: type[Api]) -> None:
    with Emulator("SG.k", clock=clock, custom_field_ready_seconds=60) as emu:
        field_id = emu.add_custom_field("plan", "Date")
        listed = api_for(emu).get(FIELDS).json()["custom_fields"]

    assert listed == [{"id": field_id, "name": "plan", "field_type": "Date"}]
