"""Requests and responses checked against the official OpenAPI specs (jsonschema).

Where the emulator follows observed reality rather than the spec, the disagreement is in
``support.DEVIATIONS`` (schema-visible) or asserted explicitly below (description-level),
never skipped silently.
"""

from __future__ import annotations

import copy
import uuid
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest
import requests

from sendgrid_destination.emulator import Emulator, RateLimit, rules

from .support import DEVIATIONS, OpenApi, spec_dir

if TYPE_CHECKING:
    from .support import Api

UPSERT = "PUT /v3/marketing/contacts"
DELETE = "DELETE /v3/marketing/contacts"
COUNT = "GET /v3/marketing/contacts/count"
IMPORT = "GET /v3/marketing/contacts/imports/{id}"
EMAILS = "POST /v3/marketing/contacts/search/emails"
IDENTIFIERS = "POST /v3/marketing/contacts/search/identifiers/{identifier_type}"
FIELDS_GET = "GET /v3/marketing/field_definitions"
FIELDS_POST = "POST /v3/marketing/field_definitions"
LISTS_GET = "GET /v3/marketing/lists"
LISTS_POST = "POST /v3/marketing/lists"
LIST_REMOVE = "DELETE /v3/marketing/lists/{id}/contacts"


@pytest.fixture
def seeded(api: Api, emu: Emulator) -> dict[str, str]:
    """One contact with every identifier, on a list, with Text/Number/Date custom fields."""
    ids = {
        "text": emu.add_custom_field("plan", "Text"),
        "number": emu.add_custom_field("seats", "Number"),
        "date": emu.add_custom_field("renewal", "Date"),
        "list": emu.add_list("Customers"),
    }
    contact = _full_contact(ids)
    api.upsert_and_finish([contact], list_ids=[ids["list"]])
    ids["contact"] = (emu.contact("jane@example.com") or {})["id"]
    return ids


def _full_contact(ids: dict[str, str]) -> dict[str, Any]:
    return {
        "email": "jane@example.com",
        "phone_number_id": "+14155550100",
        "external_id": "crm-1",
        "anonymous_id": "anon-1",
        "alternate_emails": ["jane@work.example"],
        "first_name": "Jane",
        "last_name": "Doe",
        "address_line_1": "1 Main St",
        "city": "Oslo",
        "country": "NO",
        "postal_code": "0150",
        "custom_fields": {ids["text"]: "pro", ids["number"]: 3, ids["date"]: "01/31/2025"},
    }


# -- every route, valid requests and their responses ----------------------------------------


def test_an_accepted_upsert_matches_the_spec_both_ways(
    api: Api, seeded: dict[str, str], openapi: OpenApi
) -> None:
    body = {"list_ids": [seeded["list"]], "contacts": [_full_contact(seeded)]}
    openapi.check_request(UPSERT, body)

    response = api.put("/v3/marketing/contacts", json=body)

    assert response.status_code == 202
    openapi.check_response(UPSERT, response)


@pytest.mark.parametrize(
    "body",
    [
        {"contacts": [{"email": "x@y"}]},
        {"contacts": [{"email": "a@example.com", "custom_fields": {"e99_T": "x"}}]},
        {"contacts": [{"email": "a@example.com", "custom_fields": []}]},
        {"contacts": []},
        "not json",
    ],
    ids=["invalid-email", "unknown-field", "invalid-input", "empty", "invalid-json"],
)
def test_upsert_refusals_match_the_spec_400(api: Api, openapi: OpenApi, body: Any) -> None:
    if body == "not json":
        response = api.put("/v3/marketing/contacts", data=b"{")
    else:
        response = api.put("/v3/marketing/contacts", json=body)

    assert response.status_code == 400
    openapi.check_response(UPSERT, response)


def test_import_status_matches_the_spec_while_pending_and_when_errored(
    api: Api, emu: Emulator, seeded: dict[str, str], openapi: OpenApi
) -> None:
    emu.force_contact_errors({"bad@example.com": "rejected"})
    job_id = api.upsert([{"email": "bad@example.com"}, {"email": "ok@example.com"}]).json()[
        "job_id"
    ]
    pending = api.get(f"/v3/marketing/contacts/imports/{job_id}")
    done = api.get(f"/v3/marketing/contacts/imports/{job_id}")
    missing = api.get(f"/v3/marketing/contacts/imports/{uuid.uuid4()}")

    assert (pending.json()["status"], done.json()["status"]) == ("pending", "errored")
    for response in (pending, done, missing):
        openapi.check_response(IMPORT, response)


def test_delete_and_count_match_the_spec(
    api: Api, seeded: dict[str, str], openapi: OpenApi
) -> None:
    deleted = api.delete("/v3/marketing/contacts", params={"ids": seeded["contact"]})
    refused = api.delete("/v3/marketing/contacts")
    count = api.get("/v3/marketing/contacts/count")

    assert [deleted.status_code, refused.status_code, count.status_code] == [202, 400, 200]
    openapi.check_response(DELETE, deleted)
    openapi.check_response(DELETE, refused)
    openapi.check_response(COUNT, count)


def test_searches_match_the_spec(api: Api, seeded: dict[str, str], openapi: OpenApi) -> None:
    emails_body = {"emails": ["jane@example.com", "nobody@example.com"]}
    ids_body = {"identifiers": ["crm-1", "nope"]}
    openapi.check_request(EMAILS, emails_body)
    openapi.check_request(IDENTIFIERS, ids_body)

    path = "/v3/marketing/contacts/search/"
    responses = {
        EMAILS: [
            api.post(path + "emails", json=emails_body),
            api.post(path + "emails", json={"emails": ["nobody@example.com"]}),
            api.post(path + "emails", json={"emails": ["x"] * 101}),
        ],
        IDENTIFIERS: [
            api.post(path + "identifiers/external_id", json=ids_body),
            api.post(path + "identifiers/external_id", json={"identifiers": ["nope"]}),
            api.post(path + "identifiers/external_id", json={"identifiers": ["x"] * 101}),
        ],
    }

    for route, (found, missing, too_many) in responses.items():
        assert [found.status_code, missing.status_code, too_many.status_code] == [200, 404, 400]
        for response in (found, missing, too_many):
            openapi.check_response(route, response)


def test_field_definitions_match_the_spec(
    api: Api, seeded: dict[str, str], openapi: OpenApi
) -> None:
    body = {"name": "tier", "field_type": "Number"}
    openapi.check_request(FIELDS_POST, body)

    created = api.post("/v3/marketing/field_definitions", json=body)
    duplicate = api.post("/v3/marketing/field_definitions", json=body)
    bad_type = api.post("/v3/marketing/field_definitions", json={"name": "x", "field_type": "Bool"})
    listed = api.get("/v3/marketing/field_definitions")

    assert [r.status_code for r in (created, duplicate, bad_type, listed)] == [200, 400, 400, 200]
    for response in (created, duplicate, bad_type):
        openapi.check_response(FIELDS_POST, response)
    openapi.check_response(FIELDS_GET, listed)


def test_lists_match_the_spec(
    api: Api, emu: Emulator, seeded: dict[str, str], openapi: OpenApi
) -> None:
    openapi.check_request(LISTS_POST, {"name": "Leads"})
    for i in range(3):
        emu.add_list(f"list {i}")

    created = api.post("/v3/marketing/lists", json={"name": "Leads"})
    refused = api.post("/v3/marketing/lists", json={"name": ""})
    page = api.get("/v3/marketing/lists", params={"page_size": 2})
    following = api.session.get(page.json()["_metadata"]["next"], timeout=5)
    path = f"/v3/marketing/lists/{seeded['list']}/contacts"
    removed = api.delete(path, params={"contact_ids": seeded["contact"]})
    unknown = api.delete(
        f"/v3/marketing/lists/{uuid.uuid4()}/contacts", params={"contact_ids": "x"}
    )
    missing_ids = api.delete(path)

    assert [created.status_code, refused.status_code] == [201, 400]
    openapi.check_response(LISTS_POST, created)
    openapi.check_response(LISTS_POST, refused)
    openapi.check_response(LISTS_GET, page)
    openapi.check_response(LISTS_GET, following)
    assert [removed.status_code, unknown.status_code, missing_ids.status_code] == [202, 404, 400]
    for response in (removed, unknown, missing_ids):
        openapi.check_response(LIST_REMOVE, response)


def test_list_paging_search_and_removal_edges_match_the_spec(
    api: Api, emu: Emulator, seeded: dict[str, str], openapi: OpenApi
) -> None:
    for i in range(4):
        emu.add_list(f"list {i}")
    pages = [api.get("/v3/marketing/lists", params={"page_size": 2})]
    for _ in range(5):  # bounded: 5 lists in pages of 2 is 3 pages
        following = pages[-1].json()["_metadata"].get("next")
        if following is None:
            break
        pages.append(api.session.get(following, timeout=5))
    long_email = api.post(
        "/v3/marketing/contacts/search/emails", json={"emails": ["x" * 90 + "@example.com"]}
    )
    too_long_url = api.delete(f"/v3/marketing/contacts?ids={'x,' * 4_200}x")
    removal = api.delete(f"/v3/marketing/lists/{seeded['list']}/contacts?ids={'x,' * 4_200}x")

    assert len(pages) == 3
    for page in pages:
        openapi.check_response(LISTS_GET, page)
    assert [long_email.status_code, too_long_url.status_code, removal.status_code] == [
        400,
        414,
        414,
    ]
    openapi.check_response(EMAILS, long_email)
    openapi.check_response(DELETE, too_long_url)
    openapi.check_response(LIST_REMOVE, removal)


def test_list_deletion_matches_the_spec(api: Api, emu: Emulator, openapi: OpenApi) -> None:
    route = "DELETE /v3/marketing/lists/{id}"
    plain, with_contacts = emu.add_list("plain"), emu.add_list("with contacts")

    deleted = api.delete(f"/v3/marketing/lists/{plain}")
    job = api.delete(f"/v3/marketing/lists/{with_contacts}", params={"delete_contacts": "true"})
    unknown = api.delete(f"/v3/marketing/lists/{plain}")

    assert [deleted.status_code, job.status_code, unknown.status_code] == [204, 200, 404]
    openapi.check_response(route, job)
    assert isinstance(job.json()["job_id"], str)
    openapi.check_response(route, unknown)


def test_auth_failures_and_rate_limits_match_the_error_schema(
    emu: Emulator, openapi: OpenApi, api_for: type[Api]
) -> None:
    url = emu.base_url + "/v3/marketing/contacts/count"
    missing = requests.get(url, timeout=5)
    wrong = requests.get(url, headers={"Authorization": "Bearer SG.wrong"}, timeout=5)
    forbidden = requests.get(url, headers={"Authorization": "Bearer SG.test-noscope"}, timeout=5)
    with Emulator("SG.k", rate_limits={COUNT: RateLimit(0, 60)}) as limited_emu:
        limited = api_for(limited_emu).get("/v3/marketing/contacts/count")

    assert [r.status_code for r in (missing, wrong, forbidden, limited)] == [401, 401, 403, 429]
    for response in (missing, wrong, forbidden, limited):
        openapi.check_response(COUNT, response)


# -- what the spec rejects, the emulator refuses --------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"contacts": []},
        {"contacts": [{"email": "a@example.com", "first_name": "x" * 51}]},
        {"contacts": [{"email": "a@example.com", "city": "x" * 61}]},
        {"contacts": [{"external_id": "x" * 255}]},
        {"contacts": [{"email": "a@example.com", "alternate_emails": ["b@example.com"] * 6}]},
        {"contacts": [{"email": "a@example.com", "custom_fields": ["x"]}]},
        {"contacts": [{"email": "a@example.com"}], "list_ids": ["not-a-uuid"]},
    ],
    ids=[
        "no-contacts",
        "empty",
        "first-name",
        "city",
        "external-id",
        "alternates",
        "custom-array",
        "list-uuid",
    ],
)
def test_every_body_the_spec_rejects_is_refused_by_the_emulator(
    api: Api, openapi: OpenApi, body: dict[str, Any]
) -> None:
    with pytest.raises(jsonschema.ValidationError):
        openapi.check_request(UPSERT, body)

    assert api.put("/v3/marketing/contacts", json=body).status_code == 400


# -- the documented deviations -----------------------------------------------------------------


def _deviation_samples(
    api: Api, emu: Emulator
) -> dict[str, tuple[str, requests.Response | dict[str, Any]]]:
    """Per deviation, a response the emulator sent, or a request body it accepts."""
    unauthorised = requests.get(emu.base_url + "/v3/marketing/contacts/count", timeout=5)
    search = "/v3/marketing/contacts/search/identifiers/external_id"
    import_body = {"file_type": "csv", "field_mappings": ["_rf2_T", None]}
    assert api.put("/v3/marketing/contacts/imports", json=import_body).status_code == 200
    return {
        "import_field_mappings_may_be_null": ("PUT /v3/marketing/contacts/imports", import_body),
        "error_field_may_be_null": (COUNT, unauthorised),
        "delete_job_id_is_a_string": (
            DELETE,
            api.delete("/v3/marketing/contacts", params={"delete_all_contacts": "true"}),
        ),
        "errors_always_wrapped": (IDENTIFIERS, api.post(search, json={"identifiers": ["x"]})),
    }


def test_every_documented_deviation_is_still_a_real_disagreement(
    api: Api, emu: Emulator, openapi: OpenApi
) -> None:
    from .support import OpenApi

    samples = _deviation_samples(api, emu)
    assert set(samples) == {d.name for d in DEVIATIONS}
    for deviation in DEVIATIONS:
        route, sample = samples[deviation.name]
        without = OpenApi(spec_dir(), tuple(d for d in DEVIATIONS if d is not deviation))
        if isinstance(sample, dict):
            openapi.check_request(route, sample)
            with pytest.raises(jsonschema.ValidationError):
                without.check_request(route, sample)
        else:
            openapi.check_response(route, sample)
            with pytest.raises(jsonschema.ValidationError):
                without.check_response(route, sample)


def test_job_type_follows_observed_values_not_the_spec_description(
    api: Api, openapi: OpenApi
) -> None:
    described = openapi.raw["tsg_mc_contacts_v3.json"]["components"]["schemas"]["ContactImport"]
    description = described["properties"]["job_type"]["description"]
    assert "`upsert`" in description and "`delete`" in description  # what the spec says

    job_id = api.upsert([{"email": "a@example.com"}]).json()["job_id"]
    delete_id = api.delete("/v3/marketing/contacts", params={"ids": "x"}).json()["job_id"]

    # What real responses carry (NANGO fixture; StrongGrid's ImportType enum).
    assert api.job(job_id)["job_type"] == "upsert_contacts"
    assert api.job(delete_id)["job_type"] == "delete_contacts"


def test_contact_request_omits_reserved_fields_that_the_api_accepts(
    api: Api, openapi: OpenApi
) -> None:
    schemas = openapi.raw["tsg_mc_contacts_v3.json"]["components"]["schemas"]
    omitted = ["phone_number", "whatsapp", "line", "facebook", "unique_name"]
    assert not set(omitted) & set(schemas["ContactRequest"]["properties"])

    contact = {"email": "a@example.com"} | {name: "value" for name in omitted}
    contact["phone_number"] = "+14155550100"

    assert api.upsert([contact]).status_code == 202


def test_reserved_field_definitions_carry_an_id_the_schema_lacks(
    api: Api, openapi: OpenApi
) -> None:
    schemas = openapi.raw["tsg_mc_custom_fields_v3.json"]["components"]["schemas"]
    assert "id" not in schemas["ReservedFieldDefinitionsResponse"]["items"]["properties"]

    reserved = api.get("/v3/marketing/field_definitions").json()["reserved_fields"]

    assert all(item["id"].startswith("_rf") for item in reserved)


def test_creating_a_list_answers_201_as_the_current_spec_says(openapi: OpenApi) -> None:
    # The spec moved from 200 to 201 in commit 09524720 (2025-01-31); clients accept both.
    op = openapi.raw["tsg_mc_lists_v3.json"]["paths"]["/v3/marketing/lists"]["post"]
    assert set(op["responses"]) == {"201", "400"}


def test_the_deviation_patches_do_not_touch_the_raw_specs(openapi: OpenApi) -> None:
    assert openapi.raw != openapi.specs
    assert copy.deepcopy(openapi.raw) == openapi.raw


# -- the emulator's rules module states the specs ------------------------------------------


def _schemas(openapi: OpenApi, file: str) -> dict[str, Any]:
    schemas: dict[str, Any] = openapi.raw[file]["components"]["schemas"]
    return schemas


def _request_schema(openapi: OpenApi, route: str) -> dict[str, Any]:
    _, _, op = openapi.operation(route)
    schema: dict[str, Any] = op["requestBody"]["content"]["application/json"]["schema"]
    return schema


def test_the_rules_state_the_contact_request_max_lengths_and_item_limits(
    openapi: OpenApi,
) -> None:
    props = _schemas(openapi, "tsg_mc_contacts_v3.json")["ContactRequest"]["properties"]
    spec_lengths = {name: p["maxLength"] for name, p in props.items() if "maxLength" in p}
    spec_lengths["alternate_emails"] = props["alternate_emails"]["items"]["maxLength"]
    upsert = _request_schema(openapi, UPSERT)["properties"]["contacts"]

    assert spec_lengths == rules.MAX_LENGTHS
    assert props["alternate_emails"]["maxItems"] == rules.MAX_ALTERNATE_EMAILS
    assert (upsert["minItems"], upsert["maxItems"]) == (1, rules.MAX_CONTACTS_PER_REQUEST)
    search = _request_schema(openapi, EMAILS)["properties"]["emails"]["items"]
    assert search["maxLength"] == rules.MAX_SEARCH_EMAIL_LENGTH


def test_the_rules_state_the_identifiers_and_reserved_fields_of_the_specs(
    openapi: OpenApi,
) -> None:
    identifier_types = _schemas(openapi, "tsg_mc_contacts_v3.json")["IdentifierType1"]["enum"]
    _, _, op = openapi.operation(FIELDS_GET)
    example = op["responses"]["200"]["content"]["application/json"]["examples"]["response"]
    reserved = example["value"]["reserved_fields"]

    assert list(rules.IDENTIFIERS) == identifier_types
    assert [(f.id, f.name, f.field_type, f.read_only) for f in rules.RESERVED_FIELDS] == [
        (r["id"], r["name"], r["field_type"], r.get("read_only", False)) for r in reserved
    ]
    field_types = _schemas(openapi, "tsg_mc_custom_fields_v3.json")["FieldType"]["enum"]
    assert list(rules.FIELD_TYPES) == field_types


def test_the_rules_state_the_name_and_page_limits_of_the_specs(openapi: OpenApi) -> None:
    field_name = _request_schema(openapi, FIELDS_POST)["properties"]["name"]
    list_name = _request_schema(openapi, LISTS_POST)["properties"]["name"]
    _, _, lists_get = openapi.operation(LISTS_GET)
    [page_size] = [p["schema"] for p in lists_get["parameters"] if p["name"] == "page_size"]

    assert (field_name["minLength"], field_name["maxLength"]) == (1, rules.MAX_FIELD_NAME_LENGTH)
    assert (list_name["minLength"], list_name["maxLength"]) == (1, rules.MAX_LIST_NAME_LENGTH)
    assert (page_size["minimum"], page_size["maximum"], page_size["default"]) == (
        1,
        rules.MAX_PAGE_SIZE,
        rules.DEFAULT_PAGE_SIZE,
    )


class _Answer:
    """A response as ``check_response`` reads it."""

    def __init__(self, status: int, body: Any) -> None:
        self.status_code, self._body = status, body

    def json(self) -> Any:
        return self._body


@pytest.mark.parametrize(
    ("route", "status", "body"),
    [
        ("GET /v3/marketing/contacts/imports/{id}", 200, {"status": "bogus", "job_type": "x"}),
        ("GET /v3/marketing/contacts/imports/{id}", 200, {}),
        ("GET /v3/marketing/contacts/imports/{id}", 404, {"nothing": "like an error"}),
        ("GET /v3/marketing/contacts/count", 429, {}),
        ("PUT /v3/marketing/contacts", 413, {"unrelated": True}),
        ("PUT /v3/marketing/contacts", 202, {}),
        ("PUT /v3/marketing/contacts/imports", 200, {}),
        ("DELETE /v3/marketing/lists/{id}/contacts", 404, "plain string body"),
    ],
    ids=[
        "bogus-job-status",
        "job-without-status",
        "404-not-an-error",
        "429-empty",
        "413-unrelated",
        "202-without-job",
        "import-without-upload",
        "404-a-string",
    ],
)
def test_the_conformance_check_refuses_answers_the_spec_describes_only_in_prose(
    openapi: OpenApi, route: str, status: int, body: Any
) -> None:
    with pytest.raises((AssertionError, jsonschema.ValidationError)):
        openapi.check_response(route, _Answer(status, body))  # type: ignore[arg-type]
