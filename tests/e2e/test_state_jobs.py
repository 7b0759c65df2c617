"""Import jobs: what SendGrid made of each accepted upsert ends up in the state file.

A 202 only queues a job. These tests steer the emulator's jobs (per-contact errors, failed
jobs, unreadable errors files, jobs that take long, jobs applied out of order) and check
that the state records each outcome, that the next run resends exactly the contacts that
did not make it, and that a contact changed twice in one run ends with its last values.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pyarrow as pa
import pytest

from sendgrid_destination.emulator import Emulator, handlers
from sendgrid_destination.emulator import control as emulator_control
from sendgrid_destination.emulator.import_jobs import view as job_view_of
from tests.e2e.conftest import (
    API_KEY,
    cli,
    contact_states,
    contacts_table,
    destination_for,
    run_summary,
    state_rows,
    upserted_contacts,
    upserts,
)


def _jobs(state_path) -> list[dict[str, Any]]:
    rows = state_rows(
        state_path,
        "SELECT job_id, run_id, status, requested_count, created_count, updated_count, "
        "errored_count, note FROM jobs ORDER BY created_at, job_id",
    )
    names = ("job_id", "run_id", "status", "requested", "created", "updated", "errored", "note")
    return [dict(zip(names, row, strict=True)) for row in rows]


def _active(counter: dict[str, int]) -> dict[str, int]:
    return {key: n for key, n in counter.items() if n}


# -- contacts that fail inside a job ----------------------------------------------------------


def test_contacts_that_error_in_a_job_are_failed_with_sendgrids_reason_and_only_they_are_resent(
    emulator, destination, run, state_path, capsys
) -> None:
    emulator.force_contact_errors({"user3@example.com": "bad"})
    data = contacts_table(12)
    first = run(data, destination())

    assert emulator.contact("user3@example.com") is None
    assert len(emulator.contacts()) == 11
    states = contact_states(state_path)
    assert states["email:user3@example.com"] == ("failed", "bad")
    assert {status for key, (status, _) in states.items() if key != "email:user3@example.com"} == {
        "accepted"
    }
    summary = run_summary(state_path, first)
    assert summary["failed_in_jobs"] == 1
    assert summary["failed_by_reason"] == {"bad": 1}
    assert _active(summary["jobs"]) == {"errored": 1}
    run_id = f"{first.loads_ids[-1]}:contacts"
    rejects = state_rows(
        state_path, "SELECT run_id, stage, contact_key, reason FROM rejects WHERE stage = 'job'"
    )
    assert rejects == [(run_id, "job", "email:user3@example.com", "bad")]
    exported = json.loads(cli(capsys, "rejects", "--state", str(state_path), "--format", "json"))
    assert [(r["stage"], r["contact_key"], r["reason"]) for r in exported] == [
        ("job", "email:user3@example.com", "bad")
    ]

    emulator.clear_contact_errors()
    emulator.clear_requests()
    second = run(data, destination())

    assert upserted_contacts(emulator) == 1
    assert emulator.contact("user3@example.com")["first_name"] == "First3"
    assert contact_states(state_path)["email:user3@example.com"] == ("accepted", None)
    summary = run_summary(state_path, second)
    assert (summary["retried"], summary["unchanged"], summary["contacts_sent"]) == (1, 11, 1)
    assert summary["changed"] == 0


def test_a_job_completed_with_an_errored_count_has_its_errors_read_and_its_failures_resent(
    emulator, destination, run, state_path
) -> None:
    # The status says completed; errored_count and errors_url say one contact failed.
    emulator.fault_next_jobs(1, import_status="completed_with_errors")
    emulator.force_contact_errors({"user3@example.com": "bad"})
    data = contacts_table(6)

    first = run(data, destination())

    assert contact_states(state_path)["email:user3@example.com"] == ("failed", "bad")
    summary = run_summary(state_path, first)
    assert (_active(summary["jobs"]), summary["failed_in_jobs"]) == ({"completed": 1}, 1)
    emulator.clear_contact_errors()
    emulator.clear_requests()

    run(data, destination())

    assert upserted_contacts(emulator) == 1
    assert emulator.contact("user3@example.com")["first_name"] == "First3"


def test_a_failed_job_fails_all_its_contacts_and_the_next_run_resends_them(
    emulator, destination, run, state_path
) -> None:
    emulator.fail_next_jobs(1, reason="job failed")
    data = contacts_table(8)
    first = run(data, destination())

    assert emulator.contacts() == []
    assert set(contact_states(state_path).values()) == {("failed", "job failed")}
    summary = run_summary(state_path, first)
    assert _active(summary["jobs"]) == {"failed": 1}
    assert (summary["failed_in_jobs"], summary["failed_by_reason"]) == (8, {"job failed": 8})
    [job] = _jobs(state_path)
    assert (job["status"], job["requested"], job["errored"]) == ("failed", 8, 8)

    emulator.clear_requests()
    second = run(data, destination())

    assert upserted_contacts(emulator) == 8
    assert len(emulator.contacts()) == 8
    assert set(contact_states(state_path).values()) == {("accepted", None)}
    assert run_summary(state_path, second)["retried"] == 8


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("how", ["unreachable", "expired"])
def test_when_a_jobs_errors_cannot_be_fetched_its_contacts_are_unconfirmed_and_resent(
    emulator, destination, run, state_path, monkeypatch, how
) -> None:
    if how == "unreachable":
        # errors_url points at a port nothing listens on (the pre-signed host is down).
        port = _closed_port()
        monkeypatch.setattr(
            handlers,
            "job_view",
            lambda job, base_url: job_view_of(job, f"http://127.0.0.1:{port}/{job.id}.csv"),
        )
    else:
        # The emulator answers 404 for the errors file (the pre-signed URL expired).
        monkeypatch.setattr(emulator_control, "errors_csv", lambda backend, job_id: None)
    emulator.force_contact_errors({"user2@example.com": "bad"})
    data = contacts_table(6)
    first = run(data, destination())

    assert len(emulator.contacts()) == 5  # SendGrid did store the others
    assert set(contact_states(state_path).values()) == {("unconfirmed", None)}
    summary = run_summary(state_path, first)
    assert _active(summary["jobs"]) == {"errored": 1}
    assert (summary["unconfirmed"], summary["failed_in_jobs"]) == (6, 0)
    [job] = _jobs(state_path)
    assert (job["status"], job["errored"], job["note"]) == (
        "errored",
        1,
        "errors_url could not be fetched",
    )

    monkeypatch.undo()
    emulator.clear_contact_errors()
    emulator.clear_requests()
    second = run(data, destination())

    assert upserted_contacts(emulator) == 6
    assert emulator.contact("user2@example.com")["first_name"] == "First2"
    assert set(contact_states(state_path).values()) == {("accepted", None)}
    assert run_summary(state_path, second)["retried"] == 6


def test_the_counts_of_each_job_are_stored_with_it(emulator, destination, run, state_path) -> None:
    emulator.force_contact_errors({"user3@example.com": "bad"})
    data = contacts_table(10)
    first = run(data, destination())
    emulator.clear_contact_errors()
    changed = data.set_column(
        1, "first_name", [["Renamed0", "Renamed1", *data["first_name"].to_pylist()[2:]]]
    )
    second = run(changed, destination())

    jobs = _jobs(state_path)
    assert [{k: v for k, v in job.items() if k != "job_id"} for job in jobs] == [
        {
            "run_id": f"{first.loads_ids[-1]}:contacts",
            "status": "errored",
            "requested": 10,
            "created": 9,
            "updated": 0,
            "errored": 1,
            "note": None,
        },
        {
            "run_id": f"{second.loads_ids[-1]}:contacts",
            "status": "completed",
            "requested": 3,
            "created": 1,
            "updated": 2,
            "errored": 0,
            "note": None,
        },
    ]
    seen = {j["id"]: j for j in emulator.jobs()}
    for job in jobs:
        results = seen[job["job_id"]]["results"]
        assert (job["created"], job["updated"], job["errored"]) == (
            results["created_count"],
            results["updated_count"],
            results["errored_count"],
        )
    requests = state_rows(state_path, "SELECT job_id, contact_count FROM requests")
    assert sorted(n for _, n in requests) == [3, 10]
    assert {job_id for job_id, _ in requests} == {job["job_id"] for job in jobs}


# -- jobs that take longer than the run waits ------------------------------------------------


def test_a_job_still_pending_at_the_wait_timeout_stays_pending_and_the_next_run_finishes_it(
    clock, run, state_path, capsys
) -> None:
    with Emulator(api_key=API_KEY, clock=clock, job_delay_seconds=3_600) as emu:
        data = contacts_table(15)
        destination = destination_for(emu, state_path, job_wait_timeout=20.0)
        started = clock.now()
        first = run(data, destination)

        assert 20.0 <= clock.now() - started < 60.0  # waited the timeout on the fake clock
        assert emu.contacts() == []
        summary = run_summary(state_path, first)
        assert _active(summary["jobs"]) == {"pending": 1}
        [job] = _jobs(state_path)
        assert job["status"] == "pending"
        assert set(contact_states(state_path).values()) == {("sent", None)}
        status = cli(capsys, "status", "--state", str(state_path))
        assert "import jobs still pending: 1" in status
        assert "jobs: 1 pending" in status
        assert "contacts by outcome: sent 15" in status

        clock.advance(3_600)
        emu.clear_requests()
        second = run(data, destination_for(emu, state_path, job_wait_timeout=20.0))

        assert upserts(emu) == []
        assert len(emu.contacts()) == 15
        [job] = _jobs(state_path)
        assert (job["status"], job["created"]) == ("completed", 15)
        assert set(contact_states(state_path).values()) == {("accepted", None)}
        summary = run_summary(state_path, second)
        assert _active(summary["jobs"]) == {"completed": 1}
        assert summary["unchanged"] == 15
        status = cli(capsys, "status", "--state", str(state_path))
        assert "import jobs still pending: 0" in status
        assert "contacts by outcome: accepted 15" in status


@pytest.mark.parametrize("answer", [404, 400])
def test_a_pending_job_that_sendgrid_no_longer_knows_is_settled_and_its_contacts_resent(
    clock, run, state_path, answer
) -> None:
    with Emulator(api_key=API_KEY, clock=clock, job_delay_seconds=3_600) as emu:
        data = contacts_table(6)
        run(data, destination_for(emu, state_path, job_wait_timeout=10.0))
        assert [job["status"] for job in _jobs(state_path)] == ["pending"]
        # The import-status route answers 404 for it, or the spec's 400 for a job ID it
        # refuses (the next poll is of that job).
        body = {"errors": [{"field": "id", "message": "invalid job id"}]}
        emu.faults.add("GET /v3/marketing/contacts/imports/{id}", status=answer, body=body, times=1)
        emu.clear_requests()

        second = run(data, destination_for(emu, state_path, job_wait_timeout=10.0))

        summary = run_summary(state_path, second)
        assert _active(summary["jobs"])["unknown"] == 1
        assert (summary["unconfirmed"], summary["retried"]) == (6, 6)
        assert sum(r.contact_count or 0 for r in upserts(emu)) == 6
        assert sorted(job["status"] for job in _jobs(state_path)) == ["pending", "unknown"]


def test_contacts_that_a_pending_job_failed_after_the_run_are_resent_by_the_next_run(
    clock, run, state_path
) -> None:
    with Emulator(api_key=API_KEY, clock=clock, job_delay_seconds=60) as emu:
        data = contacts_table(6)
        run(data, destination_for(emu, state_path, job_wait_timeout=10.0))
        assert [job["status"] for job in _jobs(state_path)] == ["pending"]
        # SendGrid finishes the job between runs and refuses one contact.
        emu.force_contact_errors({"user2@example.com": "bad"})
        assert emu.process_jobs() == 1
        emu.clear_contact_errors()
        emu.clear_requests()

        second = run(data, destination_for(emu, state_path, job_wait_timeout=600.0))

        # The earlier job is followed up first, so its failed contact is resent right away.
        assert upserted_contacts(emu) == 1
        assert emu.contact("user2@example.com")["first_name"] == "First2"
        summary = run_summary(state_path, second)
        assert _active(summary["jobs"]) == {"errored": 1, "completed": 1}
        assert (summary["failed_in_jobs"], summary["retried"], summary["unchanged"]) == (1, 1, 5)
        run_id = f"{second.loads_ids[-1]}:contacts"
        assert state_rows(
            state_path, "SELECT run_id, contact_key, reason FROM rejects WHERE stage = 'job'"
        ) == [(run_id, "email:user2@example.com", "bad")]
        assert set(contact_states(state_path).values()) == {("accepted", None)}


# -- one contact changed twice within one run ------------------------------------------------

_TWICE = pa.table(
    {
        "email": [
            "user0@example.com",
            "user1@example.com",
            "user2@example.com",
            "user3@example.com",
            "user0@example.com",
            "user4@example.com",
        ],
        "first_name": ["Old", "A", "B", "C", "New", "D"],
    }
)


@pytest.mark.parametrize("polls", [1, 3])
def test_a_contact_changed_twice_across_batches_ends_with_its_last_values(
    clock, run, state_path, polls
) -> None:
    with Emulator(
        api_key=API_KEY, clock=clock, job_order="reverse", job_polls_until_done=polls
    ) as emu:
        run(_TWICE, destination_for(emu, state_path, read_batch_rows=2))

        assert emu.contact("user0@example.com")["first_name"] == "New"
        assert len(emu.contacts()) == 5


def test_a_contact_whose_previous_job_is_still_pending_is_held_back_until_that_job_ends(
    clock, run, state_path
) -> None:
    # The first run's job is still pending when the run gives up (job_wait_timeout=10 s,
    # the job needs 25 s). The second run's wait gives up again, so "New" would ride over a
    # pending "Old" (SendGrid promises no order between jobs): it is held back, kept in the
    # state, and the run completes. A later run whose load no longer holds the contact (an
    # incremental source) sends it once the job has ended.
    old = pa.table({"email": ["user0@example.com"], "first_name": ["Old"]})
    new = pa.table({"email": ["user0@example.com"], "first_name": ["New"]})
    other = pa.table({"email": ["user9@example.com"], "first_name": ["Nine"]})
    with Emulator(api_key=API_KEY, clock=clock, job_order="reverse", job_delay_seconds=25) as emu:
        first = run(old, destination_for(emu, state_path, job_wait_timeout=10))
        assert run_summary(state_path, first)["jobs"] == {"pending": 1}

        second = run(new, destination_for(emu, state_path, job_wait_timeout=10))

        summary = run_summary(state_path, second)
        assert (summary["deferred"], summary["waiting"], summary["contacts_sent"]) == (1, 1, 0)
        assert state_rows(state_path, "SELECT contact_key FROM deferred") == [
            ("email:user0@example.com",)
        ]

        third = run(other, destination_for(emu, state_path, job_wait_timeout=60))

        summary = run_summary(state_path, third)
        assert (summary["contacts_sent"], summary["waiting"]) == (2, 0)
        emu.process_jobs()
        assert emu.contact("user0@example.com")["first_name"] == "New"
        assert state_rows(state_path, "SELECT count(*) FROM deferred") == [(0,)]


def test_a_deferred_contact_is_dropped_when_a_newer_row_of_it_arrives(
    clock, run, state_path
) -> None:
    old = pa.table({"email": ["user0@example.com"], "first_name": ["Old"]})
    new = pa.table({"email": ["user0@example.com"], "first_name": ["New"]})
    with Emulator(api_key=API_KEY, clock=clock, job_delay_seconds=25) as emu:
        run(old, destination_for(emu, state_path, job_wait_timeout=10))
        run(new, destination_for(emu, state_path, job_wait_timeout=10))  # "New" deferred

        # The source reverted the change: the load's last row decides, "New" is never sent.
        run(old, destination_for(emu, state_path, job_wait_timeout=60))

        emu.process_jobs()
        assert emu.contact("user0@example.com")["first_name"] == "Old"
        assert state_rows(state_path, "SELECT count(*) FROM deferred") == [(0,)]


def test_a_contact_held_twice_in_one_file_is_sent_once_as_its_last_row(
    clock, run, state_path
) -> None:
    with Emulator(api_key=API_KEY, clock=clock, job_order="reverse", job_delay_seconds=5) as emu:
        info = run(_TWICE, destination_for(emu, state_path, read_batch_rows=2, max_in_flight=1))

        assert emu.contact("user0@example.com")["first_name"] == "New"
        summary = run_summary(state_path, info)
        assert (summary["superseded"], summary["contacts_sent"]) == (1, 5)


def test_a_contact_changed_twice_ends_with_its_last_values_when_its_jobs_run_in_reverse(
    clock, run, state_path
) -> None:
    # Each body carries two contacts, so "Old" and "New" ride on different jobs. They are
    # both sent before either 202 is recorded, and SendGrid may apply the jobs in any order.
    with Emulator(api_key=API_KEY, clock=clock, job_order="reverse", job_delay_seconds=5) as emu:
        run(_TWICE, destination_for(emu, state_path, read_batch_rows=2, max_contacts_per_request=2))

        assert emu.contact("user0@example.com")["first_name"] == "New"


def test_a_rerun_of_a_file_holding_a_contact_twice_sends_nothing(
    emulator, destination, run, state_path
) -> None:
    run(_TWICE, destination(read_batch_rows=2))
    assert emulator.contact("user0@example.com")["first_name"] == "New"
    emulator.clear_requests()

    second = run(_TWICE, destination(read_batch_rows=2))

    # Both versions of user0 rode in one body; the state must keep the hash of the last one.
    assert [r.contact_count for r in upserts(emulator)] == []
    summary = run_summary(state_path, second)
    assert (summary["changed"], summary["contacts_sent"]) == (0, 0)
    assert emulator.contact("user0@example.com")["first_name"] == "New"


def test_a_rerun_never_puts_back_an_older_version_of_a_contact_held_twice_in_one_file(
    emulator, destination, run
) -> None:
    settings = {"read_batch_rows": 2, "max_contacts_per_request": 2}
    run(_TWICE, destination(**settings))
    assert emulator.contact("user0@example.com")["first_name"] == "New"

    run(_TWICE, destination(**settings))

    assert emulator.contact("user0@example.com")["first_name"] == "New"


def test_a_job_pending_forever_costs_a_run_its_wait_budget_once_and_does_not_fail_it(
    clock, run, state_path
) -> None:
    old = pa.table({"email": ["user0@example.com"], "first_name": ["Old"]})
    new = pa.table({"email": ["user0@example.com"], "first_name": ["New"]})
    with Emulator(api_key=API_KEY, clock=clock, job_polls_until_done=1) as emu:
        emu.fault_next_jobs(1, import_status="pending_forever")
        run(old, destination_for(emu, state_path, job_wait_timeout=600))
        started = clock.now()

        # Settling the old job, holding "New" back, waiting for it again: one budget.
        second = run(new, destination_for(emu, state_path, job_wait_timeout=600))

        assert 600 <= clock.now() - started < 700
        summary = run_summary(state_path, second)
        assert (summary["waiting"], summary["jobs"].get("pending")) == (1, 1)


def test_a_contact_fed_by_two_tables_waits_for_the_other_tables_pending_job(
    clock, run, state_path
) -> None:
    # One account, one contact: a send from "crm" must not overtake "billing"'s pending one.
    with Emulator(api_key=API_KEY, clock=clock, job_delay_seconds=25) as emu:
        billing = pa.table({"email": ["user0@example.com"], "first_name": ["Billing"]})
        crm = pa.table({"email": ["user0@example.com"], "first_name": ["Crm"]})
        run(billing, destination_for(emu, state_path, job_wait_timeout=10), name="billing")

        second = run(crm, destination_for(emu, state_path, job_wait_timeout=10), name="crm")

        summary = run_summary(state_path, second, stream="crm")
        assert (summary["deferred"], summary["waiting"], summary["contacts_sent"]) == (1, 1, 0)
        clock.advance(30)
        emu.process_jobs()
        run(crm.slice(0, 0), destination_for(emu, state_path, job_wait_timeout=10), name="crm")
        emu.process_jobs()
        assert emu.contact("user0@example.com")["first_name"] == "Crm"


def test_another_tables_job_that_a_load_follows_is_counted_and_rejected_under_that_table(
    clock, run, state_path
) -> None:
    with Emulator(api_key=API_KEY, clock=clock, job_delay_seconds=60) as emu:
        first = run(
            contacts_table(6), destination_for(emu, state_path, job_wait_timeout=10), name="billing"
        )
        emu.force_contact_errors({"user2@example.com": "bad"})
        assert emu.process_jobs() == 1  # billing's job ends between the runs, failing user2
        emu.clear_contact_errors()

        crm = run(
            contacts_table(1, start=10),
            destination_for(emu, state_path, job_wait_timeout=600),
            name="crm",
        )

        # crm waited for billing's job (a contact may be in both) but counts only its own.
        summary = run_summary(state_path, crm, stream="crm")
        assert _active(summary["jobs"]) == {"completed": 1}
        assert (summary["failed_in_jobs"], summary["rejected_by_api"]) == (0, 0)
        assert summary["failed_by_reason"] == {}
        assert any("1 import job(s) of table 'billing'" in n for n in summary["notes"])
        # billing's failure is a reject of the billing run that sent it.
        billing_run = f"{first.loads_ids[-1]}:billing"
        assert state_rows(
            state_path, "SELECT run_id, stream, contact_key FROM rejects WHERE stage = 'job'"
        ) == [(billing_run, "billing", "email:user2@example.com")]
        emu.clear_requests()

        again = run(
            contacts_table(6),
            destination_for(emu, state_path, job_wait_timeout=600),
            name="billing",
        )

        assert upserted_contacts(emu) == 1
        assert run_summary(state_path, again, stream="billing")["retried"] == 1


# -- errors files that say less than the job did ---------------------------------------------


@pytest.mark.parametrize("variant", ["html", "not_found", "long_field", "other_header"])
def test_failed_contacts_are_never_taken_as_accepted_whatever_the_errors_file_looks_like(
    emulator, destination, run, state_path, variant
) -> None:
    emulator.force_contact_errors({"user2@example.com": "bad", "user5@example.com": "bad"})
    emulator.fault_next_jobs(1, errors_file=variant)

    run(contacts_table(8), destination())

    states = contact_states(state_path)
    failed = {k for k, (status, _) in states.items() if status != "accepted"}
    # Matched: exactly those two failed; unreadable: the job's contacts are all resent.
    assert {"email:user2@example.com", "email:user5@example.com"} <= failed
    emulator.clear_contact_errors()
    emulator.clear_requests()

    run(contacts_table(8), destination())

    resent = {r.contact_count for r in upserts(emulator)}
    assert sum(resent) >= 2
    assert emulator.contact("user2@example.com") is not None
    assert emulator.contact("user5@example.com") is not None
