"""Settings and mapping end to end: custom fields, mapping errors, lists, headers, environment
variables and authentication, each through a real dlt pipeline into the emulator."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from sendgrid_destination import sendgrid
from sendgrid_destination._version import __version__
from sendgrid_destination.emulator import Emulator
from sendgrid_destination.errors import AuthenticationError, ConfigurationError
from tests.e2e.conftest import (
    API_KEY,
    DEFAULT_MAPPING,
    cause_of,
    contacts_table,
    destination_for,
    rejects_of,
    run_summary,
    upserts,
)

FIELDS_GET = "GET /v3/marketing/field_definitions"
FIELDS_POST = "POST /v3/marketing/field_definitions"


def _failure(run, data: Any, destination: sendgrid, kind: type[BaseException]) -> BaseException:
    with pytest.raises(PipelineStepFailed) as failed:
        run(data, destination)
    return cause_of(failed.value, kind)


# -- custom fields -------------------------------------------------------------------------


def test_unknown_custom_field_names_stop_the_run_before_any_upsert_listing_them(
    emulator, destination, run
) -> None:
    emulator.add_custom_field("plan", "Text")
    data = contacts_table(3, plan=["a", "b", "c"], tier=["x", "y", "z"])
    mapping = {
        "email": "email",
        "custom_fields": {"plan": "plan", "tier": "tier", "Region_Code": "plan"},
    }

    error = _failure(run, data, destination(mapping=mapping), ConfigurationError)

    message = str(error)
    assert "not defined in this SendGrid account: tier, Region_Code." in message
    assert "create_missing_custom_fields" in message
    assert [r.route for r in emulator.requests] == [FIELDS_GET]
    assert emulator.contacts() == []


def test_custom_field_names_match_the_account_case_insensitively(
    emulator, destination, run
) -> None:
    plan = emulator.add_custom_field("Plan_Tier", "Text")
    data = contacts_table(2, tier=["gold", "silver"])
    mapping = {"email": "email", "custom_fields": {"plan_tier": "tier"}}

    run(data, destination(mapping=mapping))

    assert emulator.contact("user1@example.com")["custom_fields"] == {plan: "silver"}
    assert not any(r.route == FIELDS_POST for r in emulator.requests)


def test_missing_custom_fields_are_created_with_types_inferred_from_arrow(
    emulator, destination, run
) -> None:
    data = pa.table(
        {
            "email": ["a@example.com", "b@example.com"],
            "plan": ["pro", None],
            "seats": pa.array([3, 4], pa.int32()),
            "score": pa.array([0.5, None], pa.float32()),
            "mrr": pa.array([Decimal("9.99"), Decimal("1.00")], pa.decimal128(6, 2)),
            "since": pa.array([dt.date(2023, 4, 5), None], pa.date32()),
            "seen": pa.array([dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC), None]),
            "vip": [True, False],
        }
    )
    columns = ["plan", "seats", "score", "mrr", "since", "seen", "vip"]
    mapping = {"email": "email", "custom_fields": {c: c for c in columns}}

    run(data, destination(mapping=mapping, create_missing_custom_fields=True))

    created = {f.name: f for f in emulator.backend.custom_fields()}
    assert {name: f.field_type for name, f in created.items()} == {
        "plan": "Text",
        "seats": "Number",
        "score": "Number",
        "mrr": "Number",
        "since": "Date",
        "seen": "Date",
        "vip": "Text",
    }
    routes = [r.route for r in emulator.requests]
    assert routes.count(FIELDS_POST) == len(columns)
    assert max(i for i, r in enumerate(routes) if r == FIELDS_POST) < routes.index(
        "PUT /v3/marketing/contacts"
    )
    ids = {name: f.id for name, f in created.items()}
    assert emulator.contact("a@example.com")["custom_fields"] == {
        ids["plan"]: "pro",
        ids["seats"]: 3,
        ids["score"]: 0.5,
        ids["mrr"]: 9.99,
        ids["since"]: "2023-04-05T00:00:00Z",
        ids["seen"]: "2024-01-02T03:04:05Z",
        ids["vip"]: "true",
    }


def test_a_run_that_creates_custom_fields_waits_until_sendgrid_accepts_them(
    clock, state_path, run
) -> None:
    data = contacts_table(4, plan=["a", "b", "c", "d"], seats=[1, 2, 3, 4])
    mapping = {"email": "email", "custom_fields": {"plan": "plan", "seats": "seats"}}
    with Emulator(api_key=API_KEY, clock=clock, custom_field_ready_seconds=10) as emu:
        dest = destination_for(emu, state_path, mapping=mapping, create_missing_custom_fields=True)

        info = run(data, dest)

        ids = {f.name: f.id for f in emu.backend.custom_fields()}
        assert rejects_of(state_path, stage="api") == []
        assert len(emu.contacts()) == 4
        assert emu.contact("user2@example.com")["custom_fields"] == {
            ids["plan"]: "c",
            ids["seats"]: 3,
        }
        created_at = next(r.at for r in emu.requests if r.route == FIELDS_POST)
        accepted = [r for r in upserts(emu) if r.status == 202]
        assert accepted and accepted[0].at >= created_at + 10
        assert sum(clock.sleeps) >= 10
        assert run_summary(state_path, info)["contacts_sent"] == 4


def test_a_created_field_still_not_ready_when_dlt_retries_the_job_is_waited_for_not_fatal(
    clock, state_path, run
) -> None:
    # The first attempt creates the field and gives up after custom_field_ready_timeout with a
    # transient error; dlt retries the job. The field now exists but is still not ready: that
    # is the same "not ready yet", not "deleted during the load".
    data = contacts_table(3, plan=["a", "b", "c"])
    mapping = {"email": "email", "custom_fields": {"plan": "plan"}}
    with Emulator(api_key=API_KEY, clock=clock, custom_field_ready_seconds=30) as emu:
        dest = destination_for(
            emu,
            state_path,
            mapping=mapping,
            create_missing_custom_fields=True,
            custom_field_ready_timeout=10,
        )

        run(data, dest)

        (plan,) = [f.id for f in emu.backend.custom_fields()]
        assert len(emu.contacts()) == 3
        assert emu.contact("user1@example.com")["custom_fields"] == {plan: "b"}
        assert rejects_of(state_path) == []


# -- mapping errors ------------------------------------------------------------------------


def _mapping_table() -> pa.Table:
    return pa.table(
        {
            "email": ["a@example.com", "b@example.com"],
            "first_name": ["A", "B"],
            "n": pa.array([1, 2], pa.int64()),
            "flag": [True, False],
            "day": pa.array([dt.date(2024, 1, 1), dt.date(2024, 1, 2)], pa.date32()),
        }
    )


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        pytest.param(
            {"email": "email", "first_name": "given_name"},
            "Mapped column(s) not found in the source table: given_name.",
            id="unknown-column",
        ),
        pytest.param(
            {"email": "email", "created_at": "day"},
            "Field 'created_at' is read-only",
            id="read-only-field",
        ),
        pytest.param(
            {"first_name": "first_name", "last_name": "first_name"},
            "The mapping has no identifier",
            id="no-identifier",
        ),
        pytest.param(
            {"email": "n"},
            "Column 'n' (int64) cannot feed field 'email'",
            id="integer-column-as-email",
        ),
        pytest.param(
            {"email": "email", "shoe_size": "n"},
            "Unknown SendGrid field 'shoe_size'",
            id="unknown-reserved-field",
        ),
    ],
)
def test_a_mapping_error_fails_before_any_request_with_a_message_naming_the_culprit(
    emulator, destination, run, mapping: dict[str, Any], expected: str
) -> None:
    error = _failure(run, _mapping_table(), destination(mapping=mapping), ConfigurationError)

    assert expected in str(error)
    assert emulator.requests == []


@pytest.mark.parametrize(
    ("field_type", "column", "expected"),
    [
        pytest.param(
            "Number", "flag", "Column 'flag' (bool) cannot feed custom field", id="bool-number"
        ),
        pytest.param(
            "Number", "day", "Column 'day' (date32[day]) cannot feed custom field", id="date-number"
        ),
        pytest.param("Date", "n", "Column 'n' (int64) cannot feed custom field", id="integer-date"),
    ],
)
def test_an_impossible_custom_field_pairing_fails_after_the_definitions_and_before_any_upsert(
    emulator, destination, run, field_type: str, column: str, expected: str
) -> None:
    emulator.add_custom_field("target", field_type)  # type: ignore[arg-type]
    mapping = {"email": "email", "custom_fields": {"target": column}}

    error = _failure(run, _mapping_table(), destination(mapping=mapping), ConfigurationError)

    assert expected in str(error)
    assert f"'target' ({field_type})" in str(error)
    assert [r.route for r in emulator.requests] == [FIELDS_GET]


# -- lists ---------------------------------------------------------------------------------


def test_contacts_end_up_in_the_configured_lists(emulator, destination, run) -> None:
    vip = emulator.add_list("VIP")
    newsletter = emulator.add_list("Newsletter")
    emulator.add_list("Unrelated")

    run(contacts_table(3), destination(list_ids=[vip, newsletter]))

    contacts = emulator.contacts()
    assert len(contacts) == 3
    for contact in contacts:
        assert sorted(contact["list_ids"]) == sorted([vip, newsletter])
    # Without on_behalf_of, no request names a subuser.
    assert all(r.header("On-Behalf-Of") is None for r in emulator.requests)


def test_adding_a_list_later_sends_unchanged_contacts_again_so_they_join_it(
    emulator, destination, run, state_path
) -> None:
    vip = emulator.add_list("VIP")
    run(contacts_table(3), destination(list_ids=[vip]))
    newsletter = emulator.add_list("Newsletter")

    second = run(contacts_table(3), destination(list_ids=[vip, newsletter]))

    for contact in emulator.contacts():
        assert sorted(contact["list_ids"]) == sorted([vip, newsletter])
    assert run_summary(state_path, second)["contacts_sent"] == 3


def test_an_unknown_list_id_fails_before_any_upsert_with_a_clear_message(
    emulator, destination, run
) -> None:
    vip = emulator.add_list("VIP")

    error = _failure(
        run, contacts_table(3), destination(list_ids=[vip, "no-such-list"]), ConfigurationError
    )

    assert "list_ids not found in this SendGrid account: no-such-list." in str(error)
    assert vip not in str(error)
    assert upserts(emulator) == []
    assert [r.route for r in emulator.requests] == ["GET /v3/marketing/lists"]


# -- headers -------------------------------------------------------------------------------


def test_every_request_carries_on_behalf_of_and_a_user_agent_naming_the_destination(
    emulator, destination, run
) -> None:
    plan = emulator.add_custom_field("plan", "Text")
    vip = emulator.add_list("VIP")
    mapping = {"email": "email", "custom_fields": {"plan": "plan"}}

    run(
        contacts_table(2, plan=["a", "b"]),
        destination(mapping=mapping, list_ids=[vip], on_behalf_of="subuser-7"),
    )

    requests = emulator.requests
    assert {r.route for r in requests} >= {
        FIELDS_GET,
        "GET /v3/marketing/lists",
        "PUT /v3/marketing/contacts",
        "GET /v3/marketing/contacts/imports/{id}",
    }
    for r in requests:
        assert r.header("On-Behalf-Of") == "subuser-7", r.route
        assert r.header("User-Agent") == f"sendgrid-destination/{__version__}", r.route
    assert emulator.contact("user0@example.com")["custom_fields"] == {plan: "a"}


# -- settings from the environment ---------------------------------------------------------


def test_the_api_key_and_base_url_come_from_environment_variables_the_dlt_way(
    emulator, run, state_path, monkeypatch
) -> None:
    monkeypatch.setenv("DESTINATION__SENDGRID__API_KEY", API_KEY)
    monkeypatch.setenv("DESTINATION__SENDGRID__BASE_URL", emulator.base_url)

    run(
        contacts_table(3),
        sendgrid(
            mapping=DEFAULT_MAPPING,
            state_path=str(state_path),
            job_poll_interval=1.0,
            clock=emulator.clock,
        ),
    )

    assert sorted(c["email"] for c in emulator.contacts()) == [
        f"user{i}@example.com" for i in range(3)
    ]


def test_a_missing_api_key_fails_naming_the_environment_variable_to_set(
    emulator, run, state_path
) -> None:
    dest = sendgrid(
        base_url=emulator.base_url,
        mapping=DEFAULT_MAPPING,
        state_path=str(state_path),
        clock=emulator.clock,
    )

    error = _failure(run, contacts_table(1), dest, ConfigurationError)

    assert "DESTINATION__SENDGRID__API_KEY" in str(error)
    assert emulator.requests == []


@pytest.mark.parametrize("key", ["SG.your key here", "SG.tab\tinside", "   "])
def test_a_malformed_api_key_fails_before_the_state_file_is_created(
    emulator, run, state_path, key
) -> None:
    dest = sendgrid(
        api_key=key,
        base_url=emulator.base_url,
        mapping=DEFAULT_MAPPING,
        state_path=str(state_path),
        clock=emulator.clock,
    )

    error = _failure(run, contacts_table(1), dest, ConfigurationError)

    assert "API key is empty or malformed" in str(error)
    assert not key.strip() or key.strip() not in str(error)
    assert not state_path.exists() and not state_path.parent.exists()
    assert emulator.requests == []


# -- authentication ------------------------------------------------------------------------


def test_a_wrong_api_key_is_terminal_and_names_the_api_key_setting(
    emulator, destination, run
) -> None:
    wrong = "SG.wrong-key-123"

    error = _failure(run, contacts_table(2), destination(api_key=wrong), AuthenticationError)

    message = str(error)
    assert "401" in message
    assert "api_key" in message and "DESTINATION__SENDGRID__API_KEY" in message
    assert wrong not in message and API_KEY not in message
    assert [r.status for r in emulator.requests] == [401]  # not retried
    assert emulator.contacts() == []


def test_a_key_without_marketing_scope_is_terminal_and_names_the_scope_and_setting(
    clock, state_path, run
) -> None:
    with Emulator(api_key=API_KEY, clock=clock, forbidden_keys={API_KEY}) as emu:
        error = _failure(
            run, contacts_table(2), destination_for(emu, state_path), AuthenticationError
        )

        message = str(error)
        assert "403" in message
        assert "Marketing (Full Access)" in message
        assert "api_key" in message and "DESTINATION__SENDGRID__API_KEY" in message
        assert API_KEY not in message
        assert [r.status for r in emu.requests] == [403]
        assert emu.contacts() == []
