"""The plan (dry run): read calls only, the state file left byte for byte as it was, and the
counts of what the real load then does.

Real dlt pipelines into the emulator over loopback HTTP; the plan runs through
``dry_run.plan_run``, the entry point a command line calls.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from sendgrid_destination.dry_run import PlanningClient, plan_run
from sendgrid_destination.emulator import Emulator
from sendgrid_destination.errors import AuthenticationError
from tests.e2e.conftest import API_KEY, cause_of, cli, run_summary

READS = {
    "GET /v3/marketing/lists",
    "GET /v3/marketing/field_definitions",
    "GET /v3/marketing/contacts/imports/{id}",
    "GET /v3/marketing/contacts/count",
    "POST /v3/marketing/contacts/search/identifiers/{identifier_type}",
}
COMPARED = [
    "rows_read",
    "new",
    "changed",
    "unchanged",
    "rejected",
    "rejected_by_reason",
    "contacts_sent",
    "requests",
    "bytes_sent",
    "list_additions",
    "list_removals",
    "left_source",
    "deleted",
    "not_deleted",
    "removal_requests",
]


def people(rows: dict[int, tuple[str, list[str]]]) -> pa.Table:
    return pa.table(
        {
            "email": [f"user{i}@example.com" if i >= 0 else "not an email" for i in rows],
            "first_name": [name for name, _ in rows.values()],
            "segments": [lists for _, lists in rows.values()],
        }
    )


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.fixture
def settings(emulator: Emulator, state_path: Path) -> dict[str, Any]:
    return {
        "api_key": API_KEY,
        "base_url": emulator.base_url,
        "mapping": {"email": "email", "first_name": "first_name"},
        "state_path": str(state_path),
        "job_poll_interval": 1.0,
        "clock": emulator.clock,
        "list_column": "segments",
        "mode": "mirror",
        "max_delete_fraction": 0.3,
    }


def test_a_plan_after_changes_sends_no_write_and_counts_what_the_real_load_then_does(
    emulator, settings, run, state_path, tmp_path, capsys
) -> None:
    emulator.add_list("A")
    emulator.add_list("B")
    first = {i: (f"First{i}", ["A"] if i % 2 else ["A", "B"]) for i in range(20)}
    run(people(first), _destination(settings))
    changed = dict(first)
    for i in (0, 1, 2):
        changed[i] = (f"Changed{i}", first[i][1])  # 3 changed names
    changed[3], changed[5] = ("First3", ["B"]), ("First5", [])  # 2 moved between lists
    del changed[18], changed[19]  # 2 left: deleted (this sync created them)
    changed[20], changed[21] = ("New20", ["B"]), ("New21", [])  # 2 new
    changed[-1] = ("Broken", ["A"])  # 1 refused by the checks
    before = files_of(state_path.parent)
    emulator.clear_requests()

    plans = plan_run(
        "e2e",
        people(changed),
        pipelines_dir=str(tmp_path / "dlt"),
        run_kwargs={"table_name": "contacts"},
        **settings,
    )

    assert {r.route for r in emulator.requests} <= READS
    after = files_of(state_path.parent)
    plan_file = state_path.name + ".plan.json"  # the plan is kept beside the state, not in it
    assert {name: data for name, data in after.items() if name != plan_file} == before
    (plan,) = plans
    assert plan.plan is True
    status = json.loads(cli(capsys, "status", "--json", "--state", str(state_path)))
    shown = status["latest_plans"]["contacts"]
    assert {k: shown[k] for k in COMPARED} == {k: plan.as_dict()[k] for k in COMPARED}
    emulator.clear_requests()

    real = run_summary(state_path, run(people(changed), _destination(settings)))

    planned = plan.as_dict()
    assert {k: planned[k] for k in COMPARED} == {k: real[k] for k in COMPARED}
    assert (real["new"], real["changed"], real["deleted"], real["rejected"]) == (2, 5, 2, 1)
    assert (real["list_removals"], real["removal_requests"]) == (2, 2)  # one per list, one delete
    assert shown["run_since"] is False
    after_run = json.loads(cli(capsys, "status", "--json", "--state", str(state_path)))
    assert after_run["latest_plans"]["contacts"]["run_since"] is True
    assert "a run of the table came after it" in cli(capsys, "status", "--state", str(state_path))


def test_a_plan_over_the_deletion_limit_reports_it_where_the_real_load_would_stop(
    emulator, settings, run, state_path, tmp_path
) -> None:
    emulator.add_list("A")
    rows = {i: (f"First{i}", ["A"]) for i in range(10)}
    run(people(rows), _destination(settings))
    emulator.clear_requests()

    (plan,) = plan_run(
        "e2e",
        people({i: rows[i] for i in range(5)}),
        pipelines_dir=str(tmp_path / "dlt"),
        run_kwargs={"table_name": "contacts"},
        **settings,
    )

    assert plan.over_delete_limit == 5
    assert "a load would STOP here" in plan.format() and "PLAN (dry run)" in plan.format()
    assert plan.stops() is not None and "exceed max_deletes" in plan.stops()
    assert {r.route for r in emulator.requests} <= READS


def test_a_first_plan_with_a_wrong_api_key_fails_on_it_though_it_needs_no_other_read(
    emulator, settings, state_path, tmp_path
) -> None:
    plain = {**settings, "api_key": "SG.test-wrong-key"}
    for extra in ("list_column", "mode", "max_delete_fraction"):  # no list, no field to read
        del plain[extra]

    with pytest.raises(PipelineStepFailed) as failed:
        plan_run(
            "e2e",
            people({i: (f"First{i}", []) for i in range(3)}),
            pipelines_dir=str(tmp_path / "dlt"),
            run_kwargs={"table_name": "contacts"},
            **plain,
        )

    assert "401" in str(cause_of(failed.value, AuthenticationError))
    assert [r.status for r in emulator.requests] == [401]
    assert emulator.contacts() == [] and not state_path.exists()


def test_a_plan_creates_no_list_and_no_custom_field_it_would_create(
    emulator, settings, tmp_path, state_path, caplog
) -> None:
    settings = _creating(settings)
    caplog.set_level("INFO", logger="sendgrid_destination.lists")

    (plan,) = plan_run(
        "e2e",
        people({0: ("Ann", ["Brand new list"])}),
        pipelines_dir=str(tmp_path / "dlt"),
        run_kwargs={"table_name": "contacts"},
        **settings,
    )

    assert (plan.new, plan.requests, plan.list_additions) == (1, 1, 1)
    assert {r.route for r in emulator.requests} <= READS
    assert not state_path.exists()  # nor does it create one
    said = [r.getMessage() for r in caplog.records if "list(s) named" in r.getMessage()]
    assert said == ["would create (a plan) 1 list(s) named in the settings or the rows"]


def test_a_plan_that_creates_fields_and_lists_counts_the_bytes_the_load_then_sends(
    emulator, settings, run, tmp_path, state_path
) -> None:
    settings = _creating(settings)
    emulator.add_custom_field("existing", "Text")  # the account's fields are numbered on
    data = people({i: (f"First{i}", ["Brand new list"]) for i in range(20)})

    (plan,) = plan_run(
        "e2e",
        data,
        pipelines_dir=str(tmp_path / "dlt"),
        run_kwargs={"table_name": "contacts"},
        **settings,
    )
    loaded = run(data, _destination(settings))

    done = run_summary(state_path, loaded)
    assert plan.requests == done["requests"] == 1
    assert plan.bytes_sent == done["bytes_sent"]
    text = plan.format()
    assert "would send 20 contacts" in text and "would be created as Text" in text
    assert "jobs:" not in text  # a plan's jobs are its own stand-ins


def _creating(settings: dict[str, Any]) -> dict[str, Any]:
    """The settings, upserting a custom field and lists that the account may lack."""
    return {
        **settings,
        "create_missing_lists": True,
        "create_missing_custom_fields": True,
        "mapping": {"email": "email", "custom_fields": {"nickname": "first_name"}},
        "mode": "upsert",
    }


def _destination(settings: dict[str, Any]) -> Any:
    from sendgrid_destination import sendgrid

    return sendgrid(**settings)


def test_planned_jobs_of_an_earlier_attempt_of_a_file_are_completed_and_never_collide(
    emulator,
) -> None:
    # dlt retries a file with a new client on the same copy of the state: the retry's job
    # ids must not collide with those the first attempt recorded there, and its jobs, which
    # never reached SendGrid, are not asked of it.
    first = PlanningClient(emulator.api_key, base_url=emulator.base_url)
    retry = PlanningClient(emulator.api_key, base_url=emulator.base_url)
    earlier = first.upsert_contacts(b"{}")
    emulator.clear_requests()

    assert retry.upsert_contacts(b"{}") != earlier
    assert retry.import_status(earlier).status == "completed"
    assert emulator.requests == []
