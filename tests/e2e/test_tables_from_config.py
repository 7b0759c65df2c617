"""Per-table settings from where dlt finds settings: ``[destination.sendgrid.tables.<table>]`` in
``.dlt/config.toml``, the JSON variable ``DESTINATION__SENDGRID__TABLES``, and per-entry
variables for a named table's mapping. Real pipelines into the emulator; each test runs in its
own directory, whose ``.dlt/`` is the only config dlt reads."""

from __future__ import annotations

import json
from pathlib import Path

import dlt
import pyarrow as pa
import pytest
from dlt.common.configuration.container import Container
from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext

from sendgrid_destination.emulator import Emulator

CUSTOMERS = pa.table({"email": ["ann@example.com"], "given_name": ["Ann"], "plan": ["pro"]})
LEADS = pa.table({"contact_email": ["cid@example.com"], "name": ["Cid"], "nm": ["Wrong"]})
ORDERS = pa.table({"id": [1], "amount": [9.99]})


pytestmark = pytest.mark.usefixtures("config_files_of_this_test")


def _run(destination, tmp_path: Path) -> None:
    pipeline = dlt.pipeline(
        "tables", destination=destination(mapping=None), pipelines_dir=str(tmp_path / "dlt")
    )
    pipeline.run(
        [
            dlt.resource(CUSTOMERS, name="customers"),
            dlt.resource(LEADS, name="leads"),
            dlt.resource(ORDERS, name="orders"),
        ]
    )


def _contacts(emulator: Emulator) -> dict[str, dict]:
    emulator.process_jobs()
    return {c["email"]: c for c in emulator.contacts()}


def test_tables_come_from_the_toml_file_and_an_entry_from_a_nested_variable(
    emulator, destination, tmp_path, monkeypatch
) -> None:
    plan = emulator.add_custom_field("plan")
    vip = emulator.add_list("VIP")
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text(
        f"""
[destination.sendgrid.tables.customers]
list_ids = ["{vip}"]
[destination.sendgrid.tables.customers.mapping]
email = "email"
first_name = "given_name"
[destination.sendgrid.tables.customers.mapping.custom_fields]
plan = "plan"

[destination.sendgrid.tables.leads]
on_invalid_value = "omit_field"
[destination.sendgrid.tables.leads.mapping]
email = "contact_email"
first_name = "nm"
"""
    )
    Container()[PluggableRunContext].reload(str(tmp_path))  # dlt reads its TOML files now
    monkeypatch.setenv("DESTINATION__SENDGRID__TABLES__LEADS__MAPPING__FIRST_NAME", "name")

    _run(destination, tmp_path)

    contacts = _contacts(emulator)
    assert sorted(contacts) == ["ann@example.com", "cid@example.com"]  # orders: skipped
    assert contacts["ann@example.com"]["custom_fields"] == {plan: "pro"}
    assert contacts["ann@example.com"]["list_ids"] == [vip]
    assert contacts["cid@example.com"]["first_name"] == "Cid"  # the variable won


def test_tables_come_from_one_json_variable(emulator, destination, tmp_path, monkeypatch) -> None:
    tables = {
        "customers": {"mapping": {"email": "email"}},
        "leads": {"mapping": {"email": "contact_email", "first_name": "name"}},
    }
    monkeypatch.setenv("DESTINATION__SENDGRID__TABLES", json.dumps(tables))

    _run(destination, tmp_path)

    contacts = _contacts(emulator)
    assert sorted(contacts) == ["ann@example.com", "cid@example.com"]
    assert contacts["cid@example.com"]["first_name"] == "Cid"
    assert "first_name" not in contacts["ann@example.com"]


@pytest.mark.parametrize(
    "default",
    [{"firstname": "name"}, {"first_name": "name"}],
    ids=["misspelt-field", "no-identifier"],
)
def test_a_wrong_top_level_mapping_that_only_defaults_tables_does_not_stop_one_with_its_own(
    emulator, destination, run, default
) -> None:
    # With tables set, the top-level mapping is only the default of a table without one:
    # checked per table, so a table of its own loads (README: a table whose configuration
    # is wrong never stops the others).
    tables = {"customers": {"mapping": {"email": "email"}}, "leads": {}}

    run(
        pa.table({"email": ["a@x.com"], "name": ["Ann"]}),
        destination(mapping=default, tables=tables),
        name="customers",
    )

    assert [c["email"] for c in emulator.contacts()] == ["a@x.com"]
