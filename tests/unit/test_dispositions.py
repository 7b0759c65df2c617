"""What a table's load asks, read from the table schema dlt hands the sink: honoured, or
refused before any request with what to change."""

from __future__ import annotations

from typing import Any

import pytest

from sendgrid_destination.config import SendGridConfiguration
from sendgrid_destination.dispositions import table_intent
from sendgrid_destination.errors import ConfigurationError


def config(**settings: Any) -> SendGridConfiguration:
    c = SendGridConfiguration()
    for name, value in settings.items():
        setattr(c, name, value)
    return c


def table(disposition: str = "append", **columns: dict[str, Any]) -> dict[str, Any]:
    return {"name": "contacts", "write_disposition": disposition, "columns": columns}


@pytest.mark.parametrize(
    ("disposition", "mode", "expected"),
    [
        ("append", "upsert", "upsert"),
        ("merge", "upsert", "upsert"),
        ("append", "membership", "membership"),
        ("merge", "mirror", "mirror"),
        ("replace", "upsert", "mirror"),
        ("replace", "membership", "mirror"),
    ],
)
def test_replace_means_mirror_and_append_or_merge_follow_the_mode(
    disposition: str, mode: str, expected: str
) -> None:
    intent = table_intent(config(mode=mode), table(disposition), "f.parquet", None)

    assert intent.mode == expected
    assert intent.whole_source == (expected != "upsert")
    assert intent.may_delete == (expected == "mirror")


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({**table("merge"), "x-merge-strategy": "insert-only"}, "insert-only"),
        ({**table("merge"), "x-merge-strategy": "scd2"}, "scd2"),
        (table("merge", updated={"dedup_sort": "desc"}), "dedup_sort"),
        (table("merge", region={"merge_key": True}), "merge_key"),
        (table("skip"), "skip"),
        (table(a={"hard_delete": True}, b={"hard_delete": True}), "several columns"),
    ],
    ids=["insert-only", "scd2", "dedup_sort", "merge_key", "unknown-disposition", "two-flags"],
)
def test_what_cannot_be_honoured_is_refused_naming_it(schema: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        table_intent(config(), schema, "f.parquet", None)

    assert named in str(refused.value)


def test_a_hard_delete_column_flags_true_values_or_any_value_of_another_type() -> None:
    boolean = table_intent(config(), table(deleted={"hard_delete": True}), "f", None)
    stamped = table_intent(
        config(), table(deleted_at={"hard_delete": True, "data_type": "timestamp"}), "f", None
    )

    assert boolean.deleted_sql() == '"deleted"'
    assert stamped.deleted_sql() == '"deleted_at" IS NOT NULL'
    assert boolean.extra_columns == ("deleted",) and boolean.may_delete
    assert boolean.deleted_sql(["email"]) == "false"  # the column is not in this load


def test_an_incremental_cursor_counts_unless_the_load_is_a_full_refresh() -> None:
    schema = table(updated={"incremental": True})

    plain = table_intent(config(mode="mirror"), schema, "f", {"refresh": None})
    refreshed = table_intent(config(mode="mirror"), schema, "f", {"refresh": "drop_resources"})

    assert plain.incremental_cursor == "updated" and refreshed.incremental_cursor is None
    plain.check_source("contacts", lambda: 0)  # nothing sent before: nothing could look gone
    with pytest.raises(ConfigurationError) as refused:
        plain.check_source("contacts", lambda: 10)
    assert "incremental (cursor updated)" in str(refused.value)
    refreshed.check_source("contacts", lambda: 10)


def test_the_list_column_is_read_with_the_mapped_columns() -> None:
    intent = table_intent(config(list_column="segments"), table(), "f", None)

    assert intent.extra_columns == ("segments",)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"mode": "sync"}, "mode must be one of upsert, membership, mirror"),
        ({"max_delete_fraction": 1.5}, "max_delete_fraction"),
        ({"max_deletes": -1}, "max_deletes"),
        ({"lists": ["VIP", " "]}, "lists must hold list names"),
    ],
)
def test_removal_settings_that_make_no_sense_are_refused_before_any_request(
    settings: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        config(api_key="SG.test-key", mapping={"email": "email"}, **settings).validate()

    assert named in str(refused.value)
