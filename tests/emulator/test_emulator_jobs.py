"""Import jobs: lifecycle, merge semantics, the identifier rule and per-contact errors."""

from __future__ import annotations

import csv
import io
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sendgrid_destination.clock import FakeClock
from sendgrid_destination.emulator import Emulator

from .support import Api

if TYPE_CHECKING:
    from collections.abc import Iterator

IMPORTS = "/v3/marketing/contacts/imports/"


def _accepted(api: Api, contacts: list[dict[str, Any]], **extra: Any) -> str:
    response = api.upsert(contacts, **extra)
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


# -- lifecycle ----------------------------------------------------------------------------


def test_a_job_is_pending_for_one_poll_then_completes_on_the_next(api: Api) -> None:
    job_id = _accepted(api, [{"email": "a@example.com"}])

    first, second = api.job(job_id), api.job(job_id)

    assert first == {
        "id": job_id,
        "status": "pending",
        "job_type": "upsert_contacts",
        "results": {"requested_count": 1},
        "started_at": first["started_at"],
    }
    assert second["status"] == "completed"
    assert second["results"] == {
        "requested_count": 1,
        "created_count": 1,
        "updated_count": 0,
        "deleted_count": 0,
        "errored_count": 0,
    }
    assert "finished_at" in second


def test_job_polls_until_done_zero_completes_on_the_first_poll(
    clock: FakeClock, api_for: type[Api]
) -> None:
    with Emulator("SG.k", clock=clock, job_polls_until_done=0) as emu:
        api = api_for(emu)
        assert api.job(_accepted(api, [{"email": "a@example.com"}]))["status"] == "completed"


def test_job_polls_until_done_three_stays_pending_for_three_polls(
    clock: FakeClock, api_for: type[Api]
) -> None:
    with Emulator("SG.k", clock=clock, job_polls_until_done=3) as emu:
        api = api_for(emu)
        job_id = _accepted(api, [{"email": "a@example.com"}])
        statuses = [api.job(job_id)["status"] for _ in range(4)]

    assert statuses == ["pending", "pending", "pending", "completed"]


def test_a_job_delay_keeps_it_pending_until_the_clock_passes_it(
    clock: FakeClock, api_for: type[Api]
) -> None:
    with Emulator("SG.k", clock=clock, job_polls_until_done=0, job_delay_seconds=30) as emu:
        api = api_for(emu)
        job_id = _accepted(api, [{"email": "a@example.com"}])
        clock.advance(29)
        before = api.job(job_id)["status"]
        clock.advance(1)
        after = api.job(job_id)["status"]

    assert (before, after) == ("pending", "completed")


def test_process_jobs_applies_every_pending_job_regardless_of_polls(
    api: Api, emu: Emulator
) -> None:
    _accepted(api, [{"email": "a@example.com"}])
    _accepted(api, [{"email": "b@example.com"}])

    assert emu.process_jobs() == 2
    assert {c["email"] for c in emu.contacts()} == {"a@example.com", "b@example.com"}
    assert [j["status"] for j in emu.jobs()] == ["completed", "completed"]


def test_an_unknown_job_id_is_a_404(api: Api) -> None:
    response = api.get(IMPORTS + str(uuid.uuid4()))

    assert response.status_code == 404
    assert response.json()["errors"][0]["message"] == "job not found"


def test_jobs_lists_each_job_with_its_contact_count(api: Api, emu: Emulator) -> None:
    job_id = _accepted(api, [{"email": "a@example.com"}, {"email": "b@example.com"}])

    [job] = emu.jobs()

    assert (job["id"], job["status"], job["contact_count"]) == (job_id, "pending", 2)


@pytest.mark.parametrize(("order", "winner"), [("fifo", "second"), ("reverse", "first")])
def test_job_order_decides_which_of_two_due_jobs_wins(
    clock: FakeClock, api_for: type[Api], order: Any, winner: str
) -> None:
    with Emulator("SG.k", clock=clock, job_order=order) as emu:
        api = api_for(emu)
        _accepted(api, [{"email": "a@example.com", "first_name": "first"}])
        _accepted(api, [{"email": "a@example.com", "first_name": "second"}])
        emu.process_jobs()
        contact = emu.contact("a@example.com")

    assert contact is not None
    assert contact["first_name"] == winner


# -- merge semantics ----------------------------------------------------------------------


def test_an_update_keeps_omitted_fields_merges_custom_fields_and_adds_lists(
    api: Api, emu: Emulator
) -> None:
    plan, seats = emu.add_custom_field("plan", "Text"), emu.add_custom_field("seats", "Number")
    list_a, list_b = emu.add_list("a"), emu.add_list("b")
    first = {"email": "a@example.com", "first_name": "Ann", "custom_fields": {plan: "pro"}}
    second = {"email": "A@Example.com", "city": "Oslo", "custom_fields": {seats: 3}}

    api.upsert_and_finish([first], list_ids=[list_a])
    job = api.upsert_and_finish([second], list_ids=[list_b, list_a])

    assert job["results"]["updated_count"] == 1
    [contact] = emu.contacts()
    assert contact["email"] == "a@example.com"
    assert (contact["first_name"], contact["city"]) == ("Ann", "Oslo")
    assert contact["custom_fields"] == {plan: "pro", seats: 3}
    assert contact["list_ids"] == [list_a, list_b]


def test_a_contact_looks_like_contact_details3(api: Api, emu: Emulator) -> None:
    api.upsert_and_finish([{"email": "a@example.com", "alternate_emails": ["B@Example.com"]}])

    contact = emu.contact("A@EXAMPLE.COM")

    assert contact is not None
    assert set(contact) == {
        "id",
        "email",
        "alternate_emails",
        "list_ids",
        "segment_ids",
        "custom_fields",
        "created_at",
        "updated_at",
    }
    assert contact["alternate_emails"] == ["b@example.com"]
    assert contact["created_at"].endswith("Z")


def test_the_same_contact_twice_in_one_request_is_applied_in_order(api: Api, emu: Emulator) -> None:
    job = api.upsert_and_finish(
        [
            {"email": "a@example.com", "first_name": "One"},
            {"email": "a@example.com", "first_name": "Two"},
        ]
    )

    assert (job["results"]["created_count"], job["results"]["updated_count"]) == (1, 1)
    assert [c["first_name"] for c in emu.contacts()] == ["Two"]


TEXT_FIELDS = ("first_name", "last_name", "city", "country")
TEXT_VALUES = st.text(alphabet="abcxyz", min_size=1, max_size=8)
UPDATES = st.lists(
    st.fixed_dictionaries(
        {
            "reserved": st.dictionaries(st.sampled_from(TEXT_FIELDS), TEXT_VALUES, max_size=3),
            "custom": st.dictionaries(st.sampled_from(["plan", "tier"]), TEXT_VALUES, max_size=2),
            "lists": st.lists(st.sampled_from(["l1", "l2", "l3"]), max_size=2),
            "upper": st.booleans(),
        }
    ),
    min_size=1,
    max_size=4,
)


@pytest.fixture(scope="module")
def shared(api_for: type[Api]) -> Iterator[tuple[Emulator, Api, dict[str, str]]]:
    with Emulator("SG.k", job_polls_until_done=0) as emu:
        ids = {name: emu.add_custom_field(name, "Text") for name in ("plan", "tier")}
        ids |= {name: emu.add_list(name) for name in ("l1", "l2", "l3")}
        api = api_for(emu)
        yield emu, api, ids
        api.session.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(updates=UPDATES)
def test_upserts_merge_like_a_fold_of_dict_updates(
    shared: tuple[Emulator, Api, dict[str, str]], updates: list[dict[str, Any]]
) -> None:
    emu, api, ids = shared
    email = f"{uuid.uuid4().hex}@example.com"
    expected: dict[str, Any] = {"fields": {}, "custom": {}, "lists": []}
    for update in updates:
        contact = {"email": email.upper() if update["upper"] else email, **update["reserved"]}
        contact["custom_fields"] = {ids[k]: v for k, v in update["custom"].items()}
        list_ids = [ids[name] for name in update["lists"]]
        api.upsert_and_finish([contact], list_ids=list_ids)
        expected["fields"].update(update["reserved"])
        expected["custom"].update(contact["custom_fields"])
        expected["lists"] += [
            lid for lid in dict.fromkeys(list_ids) if lid not in expected["lists"]
        ]

    stored = emu.contact(email)

    assert stored is not None
    assert {k: stored[k] for k in TEXT_FIELDS if k in stored} == expected["fields"]
    assert stored["custom_fields"] == expected["custom"]
    assert stored["list_ids"] == expected["lists"]


def test_many_rewrites_of_contacts_keep_every_contact_intact(api: Api, emu: Emulator) -> None:
    # Each rewrite leaves the old record behind until the store compacts its buffer (when
    # the dead bytes pass 1 MiB and the live ones): 1,500 rewrites of 1 KB get it there.
    plan = emu.add_custom_field("plan", "Text")
    keep = emu.add_list("keep")
    api.upsert_and_finish(
        [{"email": f"other{i}@example.com", "city": f"City {i}"} for i in range(50)],
        list_ids=[keep],
    )
    rewrites = [
        {
            "email": "a@example.com",
            "first_name": f"v{i}",
            "custom_fields": {plan: f"{i:0>1000}"},
        }
        for i in range(1_500)
    ]

    job = api.upsert_and_finish(rewrites)

    assert (job["results"]["created_count"], job["results"]["updated_count"]) == (1, 1_499)
    contact = emu.contact("a@example.com") or {}
    assert (contact["first_name"], contact["custom_fields"][plan]) == ("v1499", f"{1499:0>1000}")
    cities = sorted(c.get("city", "") for c in emu.contacts() if c["email"] != "a@example.com")
    assert cities == sorted(f"City {i}" for i in range(50))
    assert api.get("/v3/marketing/lists").json()["result"][0]["contact_count"] == 50


def test_a_contact_id_from_another_emulator_is_unknown(api: Api, emu: Emulator) -> None:
    with Emulator("SG.k", job_polls_until_done=0) as other:
        other_api = Api(other)
        other_api.upsert_and_finish([{"email": "a@example.com"}])
        foreign = (other.contact("a@example.com") or {})["id"]
        other_api.session.close()
    list_id = emu.add_list("Customers")
    api.upsert_and_finish([{"email": "a@example.com"}])

    response = api.delete(
        f"/v3/marketing/lists/{list_id}/contacts", params={"contact_ids": foreign}
    )

    assert uuid.UUID(foreign)
    assert foreign != (emu.contact("a@example.com") or {})["id"]
    assert response.status_code == 404


# -- the identifier rule and per-contact errors ---------------------------------------------


def test_an_update_missing_an_existing_identifier_fails_that_contact(
    api: Api, emu: Emulator
) -> None:
    api.upsert_and_finish([{"email": "a@example.com", "external_id": "crm-1"}])

    job = api.upsert_and_finish([{"email": "a@example.com", "first_name": "Ann"}])

    assert job["status"] == "failed"
    assert _csv_rows(job)[0]["errors_occurred"] == (
        "contact is missing existing identifier(s): external_id"
    )
    assert "first_name" not in (emu.contact("a@example.com") or {})


def test_an_update_may_add_an_identifier_the_contact_lacked(api: Api, emu: Emulator) -> None:
    api.upsert_and_finish([{"email": "a@example.com"}])

    job = api.upsert_and_finish([{"email": "a@example.com", "external_id": "crm-1"}])

    assert job["status"] == "completed"
    assert (emu.contact("a@example.com") or {})["external_id"] == "crm-1"


def test_identifiers_pointing_at_two_contacts_fail_that_contact(api: Api) -> None:
    api.upsert_and_finish([{"email": "a@example.com"}, {"external_id": "crm-2"}])

    job = api.upsert_and_finish([{"email": "a@example.com", "external_id": "crm-2"}])

    assert job["status"] == "failed"
    assert "more than one" in _csv_rows(job)[0]["errors_occurred"]


def test_a_changed_email_creates_a_new_contact(api: Api, emu: Emulator) -> None:
    api.upsert_and_finish([{"email": "old@example.com"}])

    job = api.upsert_and_finish([{"email": "new@example.com"}])

    assert job["results"]["created_count"] == 1
    assert len(emu.contacts()) == 2


@pytest.mark.parametrize("value", [3, 2.5, -1, 0])
def test_a_number_custom_field_accepts_json_numbers(api: Api, emu: Emulator, value: Any) -> None:
    field_id = emu.add_custom_field("seats", "Number")

    job = api.upsert_and_finish([{"email": "a@example.com", "custom_fields": {field_id: value}}])

    assert job["status"] == "completed"


@pytest.mark.parametrize("value", ["many", "42", True, ["1"]])
def test_a_number_custom_field_given_a_non_number_fails_that_contact(
    api: Api, emu: Emulator, value: Any
) -> None:
    field_id = emu.add_custom_field("seats", "Number")
    contacts = [
        {"email": "a@example.com", "custom_fields": {field_id: value}},
        {"email": "b@example.com", "custom_fields": {field_id: 1}},
    ]

    job = api.upsert_and_finish(contacts)

    assert job["status"] == "errored"
    assert job["results"]["errored_count"] == 1
    [row] = _csv_rows(job)
    assert row["primary_email"] == "a@example.com"
    assert row["errors_occurred"] == (
        "error storing custom field name=seats type=Number: value is not a number"
    )


@pytest.mark.parametrize(
    "value", ["2024-01-31T10:00:00Z", "2024-01-31T10:00:00.123+02:00", "01/31/2024", "1/5/2024"]
)
def test_a_date_custom_field_accepts_rfc3339_and_month_day_year(
    api: Api, emu: Emulator, value: str
) -> None:
    field_id = emu.add_custom_field("renewal", "Date")

    job = api.upsert_and_finish([{"email": "a@example.com", "custom_fields": {field_id: value}}])

    assert job["status"] == "completed"


@pytest.mark.parametrize(
    "value", ["2024-01-31", "31/01/2024", "13/01/2024", "1563315130", "2024-02-30T00:00:00Z", 5]
)
def test_a_date_custom_field_in_another_format_fails_that_contact(
    api: Api, emu: Emulator, value: Any
) -> None:
    field_id = emu.add_custom_field("renewal", "Date")

    job = api.upsert_and_finish([{"email": "a@example.com", "custom_fields": {field_id: value}}])

    assert job["status"] == "failed"
    assert _csv_rows(job)[0]["errors_occurred"].endswith(
        "not in any of the following date formats: RFC3339, MM/DD/YYYY, or M/D/YYYY"
    )


def test_forced_contact_errors_match_emails_case_insensitively_and_other_ids_exactly(
    api: Api, emu: Emulator
) -> None:
    emu.force_contact_errors({"Bad@Example.com": "mailbox rejected", "crm-9": "crm says no"})
    contacts = [
        {"email": "bad@example.COM"},
        {"external_id": "crm-9"},
        {"external_id": "CRM-9"},
    ]

    job = api.upsert_and_finish(contacts)

    assert job["status"] == "errored"
    assert [
        (r["primary_email"], r["external_id"], r["errors_occurred"]) for r in _csv_rows(job)
    ] == [
        ("bad@example.com", "", "mailbox rejected"),
        ("", "crm-9", "crm says no"),
    ]


def test_fail_next_jobs_fails_exactly_that_many_jobs(api: Api, emu: Emulator) -> None:
    emu.fail_next_jobs(1, reason="you have hit your contact limit")

    failed = api.upsert_and_finish([{"email": "a@example.com"}, {"email": "b@example.com"}])
    fine = api.upsert_and_finish([{"email": "a@example.com"}])

    assert failed["status"] == "failed"
    assert failed["results"]["errored_count"] == 2
    assert {r["errors_occurred"] for r in _csv_rows(failed)} == {"you have hit your contact limit"}
    assert fine["status"] == "completed"
    assert [c["email"] for c in emu.contacts()] == ["a@example.com"]


def test_the_errors_url_serves_a_csv_without_authorization(api: Api, emu: Emulator) -> None:
    emu.force_contact_errors({"+14155550100": "blocked"})

    job = api.upsert_and_finish([{"phone_number_id": "+14155550100"}, {"email": "a@example.com"}])

    url = job["results"]["errors_url"]
    assert url.startswith(emu.base_url)
    response = requests.get(url, timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    assert response.text.splitlines() == [
        "primary_email,phone_number_id,external_id,anonymous_id,errors_occurred",
        ",+14155550100,,,blocked",
    ]


def test_a_completed_job_has_no_errors_url(api: Api) -> None:
    job = api.upsert_and_finish([{"email": "a@example.com"}])

    assert "errors_url" not in job["results"]
    assert requests.get(api.emu.base_url + f"/_emulator/errors/{job['id']}.csv").status_code == 404


def _csv_rows(job: dict[str, Any]) -> list[dict[str, str]]:
    response = requests.get(job["results"]["errors_url"], timeout=5)
    assert response.status_code == 200
    return list(csv.DictReader(io.StringIO(response.text)))


def test_without_retaining_contacts_upserts_are_answered_and_completed_but_not_stored() -> None:
    import requests as http

    from sendgrid_destination.emulator import Emulator

    with Emulator(api_key="SG.test-key", retain_contacts=False, job_polls_until_done=0) as emu:
        session = http.Session()
        session.headers["Authorization"] = "Bearer SG.test-key"
        body = {"contacts": [{"email": f"u{i}@example.com"} for i in range(3)]}
        job_id = session.put(f"{emu.base_url}/v3/marketing/contacts", json=body).json()["job_id"]
        job = session.get(f"{emu.base_url}/v3/marketing/contacts/imports/{job_id}").json()
        assert job["status"] == "completed"
        assert job["results"]["created_count"] == 3
        assert emu.contacts() == []
        # The count reports what was accepted, so a client's sanity check sees contacts.
        count = session.get(f"{emu.base_url}/v3/marketing/contacts/count").json()
        assert count["contact_count"] == 3
