"""A state file belongs to one SendGrid account (host and subuser), whatever its API key."""

from __future__ import annotations

import shutil

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from sendgrid_destination.account import legacy_state_path
from sendgrid_destination.config import SendGridConfiguration
from sendgrid_destination.emulator import Emulator
from sendgrid_destination.errors import ConfigurationError
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
