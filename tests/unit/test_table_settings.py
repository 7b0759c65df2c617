"""``SendGridConfiguration.for_table``: one table's settings, the top level overridden by its
entry under ``tables``; tables not named are not loaded. End-to-end runs are in
tests/e2e/test_postgres_warehouse.py and tests/e2e/test_tables_from_config.py."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from sendgrid_destination.config import TABLE_OPTIONS, SendGridConfiguration
from sendgrid_destination.errors import ConfigurationError

TOP = {"email": "email"}


def config(**settings: Any) -> SendGridConfiguration:
    c = SendGridConfiguration()
    c.api_key = "SG.test-unit"  # type: ignore[assignment]
    for name, value in settings.items():
        setattr(c, name, value)
    return c


def test_without_tables_every_table_loads_with_the_top_level_settings():
    c = config(mapping=TOP, list_ids=["l1"])

    settings = c.for_table("anything")

    assert c.maps("anything")
    assert settings is not None and settings is not c
    assert (settings.mapping, settings.list_ids) == (TOP, ["l1"])


def test_a_table_entry_overrides_what_it_sets_and_inherits_the_rest():
    tables = {
        "leads": {"list_ids": ["l2"], "on_invalid_value": "omit_field", "date_format": "%d.%m.%Y"}
    }
    c = config(mapping=TOP, list_ids=["l1"], fail_on_rejects=3.0, tables=tables)

    settings = c.for_table("leads")

    assert settings is not None
    assert settings.mapping == TOP  # no mapping of its own: the top-level one
    assert (settings.list_ids, settings.on_invalid_value) == (["l2"], "omit_field")
    assert (settings.date_format, settings.fail_on_rejects) == ("%d.%m.%Y", 3.0)
    assert settings.tables is None
    assert (c.list_ids, c.on_invalid_value) == (["l1"], "reject_row")  # the original is intact


def test_with_tables_a_table_it_does_not_name_is_not_loaded():
    c = config(mapping=TOP, tables={"customers": {"mapping": TOP}})

    assert not c.maps("orders") and c.for_table("orders") is None
    assert c.maps("customers")


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"api_key": "SG.other"}, "unknown setting(s) api_key"),
        ({"on_invalid_value": "skip"}, "on_invalid_value must be one of reject_row, omit_field"),
        ({"list_ids": "l1"}, "list_ids must be a list"),
        ({"fail_on_rejects": -1}, "fail_on_rejects must be a count"),
        ({"create_missing_custom_fields": "yes"}, "create_missing_custom_fields must be"),
        (["email"], "tables.t must be a table of settings"),
    ],
)
def test_a_malformed_entry_is_refused_saying_what_a_table_may_set(entry, expected):
    c = config(mapping=TOP, tables={"t": entry})

    with pytest.raises(ConfigurationError) as caught:
        c.for_table("t")

    assert expected in caught.value.message


def test_the_readme_lists_exactly_the_options_a_table_may_set():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    sentence = readme.split("- A table may set ", 1)[1].split(";", 1)[0]

    assert re.findall(r"`(\w+)`", sentence) == list(TABLE_OPTIONS)
    assert all(hasattr(SendGridConfiguration(), option) for option in TABLE_OPTIONS)


def test_tables_alone_are_a_configuration_but_neither_is_refused():
    config(tables={"t": {"mapping": TOP}}).validate()
    with pytest.raises(ConfigurationError) as caught:
        config().validate()
    assert "No mapping configured" in caught.value.message
    assert "tables.<table>.mapping" in caught.value.message
