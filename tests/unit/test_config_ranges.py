"""Every number setting has a range, and a value outside it (or not a number) is refused by
``validate()`` (terminal, before any request) naming the setting; so is a date format DuckDB
cannot use. Out-of-range values used to fail later, inside pyarrow or requests, as transient
errors dlt retried five times. And a variable naming no setting, which dlt ignores, is found
(the load warns about it)."""

from __future__ import annotations

from typing import Any

import pytest

from sendgrid_destination.config import _RANGES, SendGridConfiguration, unknown_variables
from sendgrid_destination.errors import ConfigurationError


def _config(**settings: Any) -> SendGridConfiguration:
    config = SendGridConfiguration()
    config.api_key = "SG.test-config-key"
    config.mapping = {"email": "email"}
    for name, value in settings.items():
        setattr(config, name, value)
    return config


def _outside(name: str) -> list[Any]:
    least, exclusive, _ = _RANGES[name]
    return [least if exclusive else least - 1, -1, True, "5"]


@pytest.mark.parametrize(
    ("name", "value"), [(name, value) for name in _RANGES for value in _outside(name)]
)
def test_a_number_setting_outside_its_range_is_refused_naming_it(name: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=rf"^{name} must be a number"):
        _config(**{name: value}).validate()


@pytest.mark.parametrize("name", list(_RANGES))
def test_the_defaults_and_the_bounds_themselves_are_accepted(name: str) -> None:
    least, exclusive, _ = _RANGES[name]
    _config().validate()
    _config(**{name: least + 0.5 if exclusive else least}).validate()


@pytest.mark.parametrize("date_format", ["%Q", "%Y-%m-%", "trailing %"])
def test_a_date_format_duckdb_cannot_use_is_refused_naming_the_setting(date_format: str) -> None:
    with pytest.raises(ConfigurationError, match=r"^date_format .* is not a strftime format"):
        _config(date_format=date_format).validate()


@pytest.mark.parametrize("date_format", ["%Y", "%m/%Y", "%H:%M", "%m/%d/%y"])
def test_a_date_format_without_the_day_is_refused_while_csv_imports_may_carry_it(
    date_format: str,
) -> None:
    with pytest.raises(ConfigurationError, match=r"^date_format .* does not name the day"):
        _config(date_format=date_format).validate()
    _config(date_format=date_format, bulk="never").validate()


@pytest.mark.parametrize("csv_date_format", ["%Q", "", 5])
def test_a_csv_date_format_duckdb_cannot_use_is_refused_naming_the_setting(
    csv_date_format: Any,
) -> None:
    with pytest.raises(ConfigurationError, match=r"^csv_date_format"):
        _config(csv_date_format=csv_date_format).validate()


def test_a_table_of_its_own_is_held_to_the_same_date_format_rule() -> None:
    config = _config(tables={"people": {"mapping": {"email": "email"}, "date_format": "%Q"}})
    config.validate()

    with pytest.raises(ConfigurationError, match="date_format"):
        config.for_table("people")


def test_variables_naming_no_setting_are_found_with_the_closest_setting() -> None:
    environ = {
        "DESTINATION__SENDGRID__MAX_INFLIGHT": "3",
        "DESTINATION__SENDGRID__CREATE_MISSING_CUSTOM_FIELD": "true",
        "DESTINATION__SENDGRID__ZZZ": "1",
        "DESTINATION__SENDGRID__API_KEY": "SG.test-config-key",
        "DESTINATION__SENDGRID__MAPPING__EMAIL": "email",
        "DESTINATION__SENDGRID__TABLES__PEOPLE__MAPPING__EMAIL": "email",
        "DESTINATION__SENDGRID__TABLES__PEOPLE__FAIL_ON_REJECTS": "0",
        "DESTINATION__SENDGRID__BATCH_SIZE": "0",
        "DESTINATION__POSTGRES__WHATEVER": "x",
    }

    assert unknown_variables(environ) == [
        "DESTINATION__SENDGRID__CREATE_MISSING_CUSTOM_FIELD (did you mean "
        "DESTINATION__SENDGRID__CREATE_MISSING_CUSTOM_FIELDS?)",
        "DESTINATION__SENDGRID__MAX_INFLIGHT (did you mean DESTINATION__SENDGRID__MAX_IN_FLIGHT?)",
        "DESTINATION__SENDGRID__TABLES__PEOPLE__FAIL_ON_REJECTS (a table's settings other than "
        "its MAPPING__<field> entries are read from DESTINATION__SENDGRID__TABLES as JSON)",
        "DESTINATION__SENDGRID__ZZZ",
    ]
