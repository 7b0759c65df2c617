"""A mapped column that stops arriving is noticed, not turned into resends of every contact."""

from __future__ import annotations

import pyarrow as pa
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from sendgrid_destination.drift import ColumnStats, check_columns
from sendgrid_destination.errors import ConfigurationError
from tests.e2e.conftest import cause_of, contacts_table, run_summary, upserts


def _emails_only(n: int) -> pa.Table:
    return pa.table({"email": [f"user{i}@example.com" for i in range(n)]})


def test_a_mapped_column_dropped_upstream_stops_the_table_naming_it_and_sends_nothing(
    emulator, destination, tmp_path
) -> None:
    import dlt

    pipeline = dlt.pipeline("drift", destination=destination(), pipelines_dir=str(tmp_path / "d"))
    pipeline.run(contacts_table(40), table_name="contacts")
    emulator.clear_requests()

    # dlt keeps first_name in its schema and hands it over empty.
    with pytest.raises(PipelineStepFailed) as failed:
        pipeline.run(_emails_only(40), table_name="contacts")

    message = str(cause_of(failed.value, ConfigurationError))
    assert "'first_name'" in message and "'contacts'" in message
    assert "allow_missing_columns" in message
    assert upserts(emulator) == []


def test_with_allow_missing_columns_the_load_goes_on_with_a_note(
    emulator, destination, tmp_path, state_path
) -> None:
    import dlt

    dest = destination(allow_missing_columns=True)
    pipeline = dlt.pipeline("drift", destination=dest, pipelines_dir=str(tmp_path / "d"))
    pipeline.run(contacts_table(40), table_name="contacts")

    info = pipeline.run(_emails_only(40), table_name="contacts")

    notes = run_summary(state_path, info)["notes"]
    assert any("first_name" in n and "empty in this load" in n for n in notes)


def test_a_small_load_without_values_in_a_column_is_not_drift(
    emulator, destination, run, state_path
) -> None:
    run(contacts_table(40), destination())
    small = contacts_table(5, start=100, first_name=[None] * 5)

    run(small, destination())  # an incremental load where nobody has a first name

    assert len(emulator.contacts()) == 45


def test_a_column_that_changed_type_is_a_note_in_the_summary() -> None:
    last = ColumnStats(50, {"score": 50}, {"score": "integer"})
    now = ColumnStats(50, {"score": 50}, {"score": "string"})

    report = check_columns("contacts", now, last, allow_missing=False)

    assert report.notes == [
        "column 'score' of table 'contacts' changed type (integer -> string): "
        "its values may be sent differently"
    ]


def test_values_dlt_put_in_a_variant_column_stop_the_table_naming_both_columns(
    emulator, destination, tmp_path
) -> None:
    # Dicts whose "age" turns from int to float: dlt keeps age a bigint and puts the floats in
    # a variant column no mapping names. Sent, the contacts would lose their new ages.
    import dlt

    age = emulator.add_custom_field("age", "Number")
    dest = destination(mapping={"email": "email", "custom_fields": {"age": "age"}})
    pipeline = dlt.pipeline("variants", destination=dest, pipelines_dir=str(tmp_path / "d"))
    people = [{"email": f"user{i}@example.com", "age": 30 + i} for i in range(3)]
    pipeline.run(people, table_name="contacts")
    emulator.clear_requests()

    with pytest.raises(PipelineStepFailed) as failed:
        pipeline.run([{**p, "age": p["age"] + 0.5} for p in people], table_name="contacts")

    message = str(cause_of(failed.value, ConfigurationError))
    assert "'age'" in message and "variant column 'age▶v_double'" in message
    assert upserts(emulator) == []
    # A later load whose values fit the column's type again goes through.
    pipeline.abort_packages()
    pipeline.run([{**p, "age": p["age"] + 1} for p in people], table_name="contacts")
    emulator.process_jobs()
    assert emulator.contact("user0@example.com")["custom_fields"] == {age: 31}


def test_a_list_column_dropped_or_renamed_upstream_stops_the_table_before_any_removal(
    emulator, destination, tmp_path
) -> None:
    import dlt

    promo = emulator.add_list("Promo")
    dest = destination(list_column="segments")
    pipeline = dlt.pipeline("drift", destination=dest, pipelines_dir=str(tmp_path / "d"))
    pipeline.run(contacts_table(30, segments=[["Promo"]] * 30), table_name="contacts")
    emulator.clear_requests()

    # Renamed upstream: dlt keeps "segments" in its schema and hands it over empty.
    renamed = contacts_table(30).append_column("segs", pa.array([["Promo"]] * 30))
    with pytest.raises(PipelineStepFailed) as failed:
        pipeline.run(renamed, table_name="contacts")

    message = str(cause_of(failed.value, ConfigurationError))
    assert "List column 'segments' of table 'contacts'" in message
    assert "taken out of the lists" in message and "allow_missing_columns" in message
    assert {r.method for r in emulator.requests} <= {"GET", "POST"}  # reads and searches
    assert all(c["list_ids"] == [promo] for c in emulator.contacts())
