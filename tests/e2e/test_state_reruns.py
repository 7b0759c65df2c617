"""Reruns send only what changed: the content hash kept in the state file decides.

Every test runs real dlt pipelines into the emulator and counts the upserts that reached it
(``PUT /v3/marketing/contacts``), so "nothing resent" is checked on the wire, not only in the
state.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow as pa

from tests.e2e.conftest import (
    API_KEY,
    DEFAULT_MAPPING,
    contacts_table,
    run_summary,
    state_rows,
    upserted_contacts,
    upserts,
)


def _with_first_names(table: pa.Table, changes: dict[int, str]) -> pa.Table:
    """``table`` with the first_name of the given row indexes replaced."""
    names = table["first_name"].to_pylist()
    for index, name in changes.items():
        names[index] = name
    return table.set_column(table.schema.get_field_index("first_name"), "first_name", [names])


def test_a_rerun_with_unchanged_rows_sends_no_upserts(
    emulator, destination, run, state_path
) -> None:
    data = contacts_table(200)
    run(data, destination())
    assert upserted_contacts(emulator) == 200
    emulator.clear_requests()

    second = run(data, destination())

    assert upserts(emulator) == []
    summary = run_summary(state_path, second)
    assert (summary["rows_read"], summary["new"], summary["changed"], summary["unchanged"]) == (
        200,
        0,
        0,
        200,
    )
    assert (summary["contacts_sent"], summary["requests"], summary["bytes_sent"]) == (0, 0, 0)
    assert {status: n for status, n in summary["jobs"].items() if n} == {}


def test_changing_one_percent_of_rows_sends_exactly_those_contacts(
    emulator, destination, run, state_path
) -> None:
    data = contacts_table(2_000)
    run(data, destination())
    emulator.clear_requests()
    changed = {i: f"Changed{i}" for i in range(0, 2_000, 100)}  # 20 rows

    second = run(_with_first_names(data, changed), destination())

    assert upserted_contacts(emulator) == 20
    for i, name in changed.items():
        assert emulator.contact(f"user{i}@example.com")["first_name"] == name
    assert emulator.contact("user1@example.com")["first_name"] == "First1"
    assert len(emulator.contacts()) == 2_000
    summary = run_summary(state_path, second)
    assert (summary["new"], summary["changed"], summary["unchanged"]) == (0, 20, 1_980)
    assert summary["contacts_sent"] == 20


def test_mapping_a_new_column_resends_every_contact_that_has_a_value_for_it(
    emulator, destination, run, state_path
) -> None:
    data = contacts_table(30, last_name=[f"Last{i}" for i in range(30)])
    run(data, destination())
    assert emulator.contact("user4@example.com").get("last_name") is None
    emulator.clear_requests()

    mapping = {**DEFAULT_MAPPING, "last_name": "last_name"}
    second = run(data, destination(mapping=mapping))

    assert upserted_contacts(emulator) == 30
    assert emulator.contact("user4@example.com")["last_name"] == "Last4"
    assert run_summary(state_path, second)["changed"] == 30

    emulator.clear_requests()
    run(data, destination(mapping=mapping))
    assert upserts(emulator) == []


def test_a_newly_mapped_column_that_is_mostly_null_resends_only_the_rows_with_a_value(
    emulator, destination, run, state_path
) -> None:
    cities = [None] * 40
    cities[3], cities[17], cities[38] = "Lyon", "Oslo", "Quito"
    run(contacts_table(40), destination())
    emulator.clear_requests()

    second = run(
        contacts_table(40, city=cities),
        destination(mapping={**DEFAULT_MAPPING, "city": "city"}),
    )

    assert upserted_contacts(emulator) == 3
    assert emulator.contact("user17@example.com")["city"] == "Oslo"
    assert emulator.contact("user18@example.com").get("city") is None
    summary = run_summary(state_path, second)
    assert (summary["changed"], summary["unchanged"]) == (3, 37)


def test_changing_list_ids_resends_every_contact_into_the_new_list(
    emulator, destination, run, state_path
) -> None:
    newsletter = emulator.add_list("Newsletter")
    data = contacts_table(25)
    run(data, destination())
    emulator.clear_requests()

    second = run(data, destination(list_ids=[newsletter]))

    assert upserted_contacts(emulator) == 25
    assert all(newsletter in c["list_ids"] for c in emulator.contacts())
    assert run_summary(state_path, second)["changed"] == 25

    emulator.clear_requests()
    run(data, destination(list_ids=[newsletter]))
    assert upserts(emulator) == []


def test_the_order_of_list_ids_does_not_change_the_hash(emulator, destination, run) -> None:
    first_list, second_list = emulator.add_list("A"), emulator.add_list("B")
    data = contacts_table(10)
    run(data, destination(list_ids=[first_list, second_list]))
    emulator.clear_requests()

    run(data, destination(list_ids=[second_list, first_list]))

    assert upserts(emulator) == []


_SUBPROCESS_RUN = textwrap.dedent(
    """
    import sys

    import dlt
    import pyarrow as pa

    from sendgrid_destination import sendgrid

    base_url, api_key, state_path, pipelines_dir, n = sys.argv[1:]
    n = int(n)
    data = pa.table({
        "email": [f"user{i}@example.com" for i in range(n)],
        "first_name": [f"First{i}" for i in range(n)],
    })
    destination = sendgrid(
        api_key=api_key,
        base_url=base_url,
        mapping={"email": "email", "first_name": "first_name"},
        state_path=state_path,
    )
    pipeline = dlt.pipeline("e2e", destination=destination, pipelines_dir=pipelines_dir)
    info = pipeline.run(data, table_name="contacts")
    print(info.loads_ids[-1])
    """
)


def test_hashes_are_stable_across_processes(
    emulator, destination, run, state_path, tmp_path
) -> None:
    run(contacts_table(100), destination())
    emulator.clear_requests()

    env = {**os.environ, "PYTHONHASHSEED": "4242"}
    env = {k: v for k, v in env.items() if not k.startswith("DESTINATION__")}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            _SUBPROCESS_RUN,
            emulator.base_url,
            API_KEY,
            str(state_path),
            str(tmp_path / "dlt"),
            "100",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    assert upserts(emulator) == []
    load_id = done.stdout.strip().splitlines()[-1]
    [(summary,)] = state_rows(
        state_path, "SELECT summary FROM runs WHERE run_id = ?", [f"{load_id}:contacts"]
    )
    summary = json.loads(summary)
    assert (summary["rows_read"], summary["unchanged"], summary["contacts_sent"]) == (100, 100, 0)


def test_deleting_the_dlt_pipeline_directory_between_runs_resends_nothing_unchanged(
    emulator, destination, run, state_path, tmp_path
) -> None:
    data = contacts_table(60)
    run(data, destination())
    emulator.clear_requests()
    pipelines_dir = tmp_path / "dlt"
    assert pipelines_dir.is_dir()

    shutil.rmtree(pipelines_dir)  # what the Airflow and Dagster helpers do before each run
    second = run(_with_first_names(data, {7: "Seven"}), destination())

    assert upserted_contacts(emulator) == 1
    assert emulator.contact("user7@example.com")["first_name"] == "Seven"
    summary = run_summary(state_path, second)
    assert (summary["changed"], summary["unchanged"]) == (1, 59)
    assert state_path.exists() and not Path(state_path).is_relative_to(pipelines_dir)


_REJECTS_OF_RUN = (
    "SELECT row_number, coalesce(contact_key, ''), coalesce(\"column\", ''), reason "
    "FROM rejects WHERE run_id LIKE ? ORDER BY ALL"
)


def test_rows_refused_by_the_checks_are_refused_again_by_a_rerun_until_their_data_changes(
    emulator, destination, run, state_path
) -> None:
    data = contacts_table(50)
    emails = data["email"].to_pylist()
    emails[3], emails[7] = "not an address", None
    data = data.set_column(data.schema.get_field_index("email"), "email", [emails])
    first = run(data, destination())
    emulator.clear_requests()

    second = run(data, destination())

    assert upserts(emulator) == []
    first_rejects = state_rows(state_path, _REJECTS_OF_RUN, [f"{first.loads_ids[-1]}%"])
    assert [r[0] for r in first_rejects] == [3, 7]
    assert state_rows(state_path, _REJECTS_OF_RUN, [f"{second.loads_ids[-1]}%"]) == first_rejects
    # Refused from what the state remembers of them (state.invalid_rows), and remembered anew.
    assert state_rows(state_path, "SELECT count(*) FROM invalid_rows") == [(2,)]
    assert run_summary(state_path, second)["rejected"] == 2

    emails[3] = "fixed@example.com"
    fixed = data.set_column(data.schema.get_field_index("email"), "email", [emails])
    third = run(fixed, destination())

    assert upserted_contacts(emulator) == 1
    summary = run_summary(state_path, third)
    assert (summary["rejected"], summary["new"], summary["unchanged"]) == (1, 1, 48)
    assert state_rows(state_path, "SELECT count(*) FROM invalid_rows") == [(1,)]
