"""The mapping from environment variables, the dlt way: real pipelines into the emulator.

dlt resolves the ``mapping`` dict as one value (a JSON object in
``DESTINATION__SENDGRID__MAPPING``, or a TOML table); per-entry variables
(``DESTINATION__SENDGRID__MAPPING__EMAIL``, ``…__MAPPING__CUSTOM_FIELDS__PLAN``) are applied
on top of it by the destination's configuration (``sendgrid_destination.env_mapping``).
Each test runs in its own empty directory, and dlt's config files are reloaded from there
(dlt reads them from the directory it first ran in, once per process), so only what a test
writes there is config.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dlt.common.configuration.container import Container
from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext
from dlt.pipeline.exceptions import PipelineStepFailed

from sendgrid_destination.emulator import Emulator
from sendgrid_destination.env_mapping import overlay_mapping
from sendgrid_destination.errors import ConfigurationError

from .conftest import cause_of, contacts_table

PREFIX = "DESTINATION__SENDGRID__MAPPING"


pytestmark = pytest.mark.usefixtures("config_files_of_this_test")


def _by_email(emulator: Emulator) -> dict[str, dict]:
    return {c["email"]: c for c in emulator.contacts()}


def _no_mapping_argument(destination):
    # None equals the factory's default, so dlt resolves the mapping from config instead
    return destination(mapping=None)


def test_nested_variables_give_the_whole_mapping_custom_fields_included(
    emulator, destination, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan_id = emulator.add_custom_field("plan", "Text")
    monkeypatch.setenv(f"{PREFIX}__EMAIL", "email")
    monkeypatch.setenv(f"{PREFIX}__FIRST_NAME", "first_name")
    monkeypatch.setenv(f"{PREFIX}__CUSTOM_FIELDS__PLAN", "plan")

    run(contacts_table(3, plan=["free", "pro", "vip"]), _no_mapping_argument(destination))

    contacts = _by_email(emulator)
    assert contacts["user1@example.com"]["first_name"] == "First1"
    assert contacts["user2@example.com"]["custom_fields"] == {plan_id: "vip"}


def test_a_json_object_in_one_variable_gives_the_whole_mapping(
    emulator, destination, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan_id = emulator.add_custom_field("PlanTier", "Text")
    mapping = {"email": "email", "first_name": "first_name", "custom_fields": {"PlanTier": "p"}}
    monkeypatch.setenv(PREFIX, json.dumps(mapping))

    run(contacts_table(2, p=["free", "pro"]), _no_mapping_argument(destination))

    contacts = _by_email(emulator)
    assert contacts["user0@example.com"]["first_name"] == "First0"
    assert contacts["user1@example.com"]["custom_fields"] == {plan_id: "pro"}


def test_a_nested_variable_replaces_one_entry_of_the_json_mapping_and_keeps_the_others(
    emulator, destination, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PREFIX, json.dumps({"email": "email", "first_name": "first_name"}))
    monkeypatch.setenv(f"{PREFIX}__FIRST_NAME", "nickname")

    run(contacts_table(2, nickname=["Al", "Bo"]), _no_mapping_argument(destination))

    assert _by_email(emulator)["user1@example.com"]["first_name"] == "Bo"


def test_a_nested_variable_replaces_one_entry_of_the_toml_mapping(
    emulator, destination, run, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text(
        '[destination.sendgrid.mapping]\nemail = "email"\nfirst_name = "first_name"\n'
        'last_name = "first_name"\n'
    )
    Container()[PluggableRunContext].reload(str(tmp_path))  # dlt reads its TOML files now
    monkeypatch.setenv(f"{PREFIX}__LAST_NAME", "surname")

    run(contacts_table(2, surname=["Smith", "Jones"]), _no_mapping_argument(destination))

    contact = _by_email(emulator)["user0@example.com"]
    assert (contact["first_name"], contact["last_name"]) == ("First0", "Smith")


def test_an_empty_nested_variable_removes_the_entry(
    emulator, destination, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PREFIX, json.dumps({"email": "email", "first_name": "first_name"}))
    monkeypatch.setenv(f"{PREFIX}__FIRST_NAME", "")

    run(contacts_table(2), _no_mapping_argument(destination))

    assert "first_name" not in _by_email(emulator)["user0@example.com"]


def test_a_variable_scoped_to_the_pipeline_wins_over_the_unscoped_one(
    emulator, destination, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"{PREFIX}__EMAIL", "email")
    monkeypatch.setenv(f"{PREFIX}__FIRST_NAME", "first_name")
    monkeypatch.setenv(f"SCOPED__{PREFIX}__FIRST_NAME", "nickname")

    run(contacts_table(1, nickname=["Al"]), _no_mapping_argument(destination), pipeline="scoped")

    assert _by_email(emulator)["user0@example.com"]["first_name"] == "Al"


def test_a_nested_variable_applies_to_a_mapping_passed_in_code_too(
    emulator, destination, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"{PREFIX}__FIRST_NAME", "nickname")

    run(contacts_table(1, nickname=["Al"]), destination())  # mapping=DEFAULT_MAPPING in code

    assert _by_email(emulator)["user0@example.com"]["first_name"] == "Al"


def test_a_misspelled_field_in_a_nested_variable_stops_the_run_naming_it(
    emulator, destination, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(f"{PREFIX}__EMAIL", "email")
    monkeypatch.setenv(f"{PREFIX}__FIST_NAME", "first_name")

    with pytest.raises(PipelineStepFailed) as failed:
        run(contacts_table(1), _no_mapping_argument(destination))

    assert "fist_name" in str(cause_of(failed.value, ConfigurationError))
    assert [r for r in emulator.requests if r.method == "PUT"] == []


def test_custom_fields_as_json_in_a_nested_variable_must_be_an_object_and_the_error_hides_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {f"{PREFIX}__CUSTOM_FIELDS": "plan=secret-column"}
    with pytest.raises(ConfigurationError) as error:
        overlay_mapping({"email": "email"}, [f"{PREFIX}__"], env)
    assert "MAPPING__CUSTOM_FIELDS must hold a JSON object" in str(error.value)
    assert "secret-column" not in str(error.value)


def test_list_ids_take_a_json_list_in_their_variable(
    emulator, destination, run, monkeypatch: pytest.MonkeyPatch
) -> None:
    vip = emulator.add_list("VIP")
    monkeypatch.setenv("DESTINATION__SENDGRID__LIST_IDS", json.dumps([vip]))

    run(contacts_table(2), destination())

    assert all(c["list_ids"] == [vip] for c in emulator.contacts())
