"""A state file belongs to one SendGrid account (host and subuser), whatever its API key."""

from __future__ import annotations

import logging
import shutil

import pytest
import requests
from dlt.pipeline.exceptions import PipelineStepFailed

from sendgrid_destination.account import legacy_state_path
from sendgrid_destination.config import SendGridConfiguration
from sendgrid_destination.emulator import Emulator
from sendgrid_destination.errors import AuthenticationError, ConfigurationError
from tests.e2e.conftest import (
    API_KEY,
    cause_of,
    contact_states,
    contacts_table,
    destination_for,
    state_rows,
    upserts,
)

ROTATED_KEY = "SG.test-rotated-key"


def test_rotating_the_api_key_resends_nothing(clock, emulator, run, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    data = contacts_table(30)
    run(data, destination_for(emulator, None))
    emulator.rotate_api_key(ROTATED_KEY)
    emulator.clear_requests()
    shutil.rmtree(tmp_path / "dlt")

    run(data, destination_for(emulator, None, api_key=ROTATED_KEY))

    assert upserts(emulator) == []
    assert len(list((tmp_path / "xdg" / "sendgrid-destination").glob("*.duckdb"))) == 1


def test_a_state_file_used_for_another_account_is_refused_before_any_request(
    clock, emulator, run, state_path
) -> None:
    run(contacts_table(10), destination_for(emulator, state_path))

    with Emulator(api_key=ROTATED_KEY, clock=clock) as other:
        with pytest.raises(PipelineStepFailed) as failed:
            run(contacts_table(10), destination_for(other, state_path, api_key=ROTATED_KEY))
        assert other.requests == []
        other_url = other.base_url

    message = str(cause_of(failed.value, ConfigurationError))
    assert emulator.base_url in message and other_url in message
    assert "state_path" in message
    assert ROTATED_KEY not in message and API_KEY not in message


def test_a_state_file_recorded_for_another_subuser_is_refused(
    clock, emulator, run, state_path
) -> None:
    run(contacts_table(5), destination_for(emulator, state_path))

    with pytest.raises(PipelineStepFailed) as failed:
        run(contacts_table(5), destination_for(emulator, state_path, on_behalf_of="team-b"))

    assert "'team-b'" in str(cause_of(failed.value, ConfigurationError))


def test_the_state_file_records_its_account_without_the_key(
    emulator, run, state_path, destination
) -> None:
    run(contacts_table(3), destination())

    meta = dict(state_rows(state_path, "SELECT key, value FROM meta WHERE key LIKE 'account.%'"))
    assert meta["account.base_url"] == emulator.base_url
    assert len(meta["account.key_digest"]) == 16
    assert API_KEY not in " ".join(meta.values())


def test_an_earlier_versions_default_state_file_is_adopted_and_nothing_is_resent(
    clock, emulator, run, monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    data = contacts_table(20)
    run(data, destination_for(emulator, None))
    new = SendGridConfiguration(api_key=API_KEY, base_url=emulator.base_url).resolved_state_path()
    # Put the file where versions before 0.2 kept it: a name with a digest of the key.
    old = legacy_state_path(emulator.base_url, None, API_KEY)
    new.rename(old)
    emulator.clear_requests()
    shutil.rmtree(tmp_path / "dlt")

    run(data, destination_for(emulator, None))

    assert upserts(emulator) == []
    assert not old.exists() and len(contact_states(new)) == 20


def test_a_rerun_into_an_account_emptied_since_warns_that_the_state_skips_its_contacts(
    emulator, destination, run, state_path, caplog
) -> None:
    data = contacts_table(4)
    run(data, destination())
    emptied = requests.delete(
        f"{emulator.base_url}/v3/marketing/contacts",
        params={"delete_all_contacts": "true"},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=5,
    )
    assert emptied.status_code == 202
    emulator.process_jobs()
    assert emulator.contacts() == []
    emulator.clear_requests()

    with caplog.at_level(logging.WARNING, logger="sendgrid_destination"):
        run(data, destination())

    warned = [
        r.getMessage() for r in caplog.records if "SendGrid holds no contacts" in r.getMessage()
    ]
    assert len(warned) == 1 and str(state_path) in warned[0]
    assert "point state_path at a new file" in warned[0]
    assert upserts(emulator) == []  # the state still decides: the warning says how to resend


def test_a_rerun_into_an_account_that_kept_its_contacts_counts_them_once_and_says_nothing(
    emulator, destination, run, caplog
) -> None:
    data = contacts_table(4)
    run(data, destination())
    emulator.clear_requests()

    with caplog.at_level(logging.WARNING, logger="sendgrid_destination"):
        run(data, destination())

    assert not [r for r in caplog.records if "SendGrid holds no contacts" in r.getMessage()]
    counts = [r for r in emulator.requests if r.route == "GET /v3/marketing/contacts/count"]
    assert len(counts) == 1


def test_a_first_load_does_not_count_the_accounts_contacts(emulator, destination, run) -> None:
    run(contacts_table(4), destination())

    assert not [r for r in emulator.requests if r.route == "GET /v3/marketing/contacts/count"]


def test_a_rerun_with_nothing_to_send_still_stops_on_a_revoked_key(
    emulator, destination, run
) -> None:
    data = contacts_table(4)
    run(data, destination())

    with pytest.raises(PipelineStepFailed) as failed:
        run(data, destination(api_key="SG.test-revoked-key"))

    assert "401" in str(cause_of(failed.value, AuthenticationError))
    assert "SG.test-revoked-key" not in str(failed.value)
