"""What a scheduler can act on: fail_on_rejects, each row counted once across dlt's retries,
"retried" apart from "changed", and a summary for a load of zero rows."""

from __future__ import annotations

import dlt
import pyarrow as pa
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from sendgrid_destination import run_summaries
from sendgrid_destination.errors import RejectsThresholdError
from tests.e2e.conftest import cause_of, contacts_table, rejects_of, run_summary, upserts

PUT = "PUT /v3/marketing/contacts"


def _with_bad_emails(n: int, bad: int) -> pa.Table:
    emails = [f"user{i}@example.com" for i in range(n)]
    for i in range(bad):
        emails[i] = f"not-an-email-{i}"
    return contacts_table(n).set_column(0, "email", [emails])


@pytest.mark.parametrize("limit", [0, 2, 0.01])
def test_fail_on_rejects_fails_the_run_after_sending_the_good_rows(
    emulator, destination, run, state_path, limit
) -> None:
    with pytest.raises(PipelineStepFailed) as failed:
        run(_with_bad_emails(100, 3), destination(fail_on_rejects=limit))

    error = cause_of(failed.value, RejectsThresholdError)
    assert "3 of the 100 rows" in str(error) and "sendgrid-destination rejects" in str(error)
    assert len(emulator.contacts()) == 97  # the good rows went out before the failure


@pytest.mark.parametrize("limit", [3, 0.05])
def test_fail_on_rejects_lets_a_run_within_the_limit_pass(
    emulator, destination, run, state_path, limit
) -> None:
    run(_with_bad_emails(100, 3), destination(fail_on_rejects=limit))

    assert len(emulator.contacts()) == 97


def test_a_run_failed_for_its_rejects_is_completed_by_the_next_run_without_resending(
    emulator, destination, tmp_path
) -> None:
    pipeline = dlt.pipeline(
        "rejects", destination=destination(fail_on_rejects=0), pipelines_dir=str(tmp_path / "d")
    )
    with pytest.raises(PipelineStepFailed):
        pipeline.run(_with_bad_emails(20, 1), table_name="contacts")
    assert pipeline.has_pending_data
    emulator.clear_requests()

    pipeline.load()  # dlt retries the pending package: it completes, nothing is sent twice

    assert not pipeline.has_pending_data
    assert upserts(emulator) == []


def test_a_file_dlt_retries_after_a_transient_failure_counts_each_row_once(
    emulator, destination, run, state_path
) -> None:
    # The first upsert passes; the second fails until the client gives up (a transient
    # error), so dlt runs the whole file again, which sends the rest.
    emulator.faults.add(PUT, action="delay", delay=0.0, times=1)
    emulator.faults.add(PUT, status=500, times=2)

    info = run(
        contacts_table(300),
        destination(max_contacts_per_request=100, max_in_flight=1, max_attempts=2),
    )

    summary = run_summary(state_path, info)
    assert (summary["rows_read"], summary["new"], summary["unchanged"]) == (300, 300, 0)
    assert (summary["contacts_sent"], summary["requests"]) == (300, 3)
    assert len(emulator.contacts()) == 300


def test_a_load_of_zero_rows_records_a_run_and_its_summary(
    emulator, destination, tmp_path, state_path
) -> None:
    pipeline = dlt.pipeline("empty", destination=destination(), pipelines_dir=str(tmp_path / "d"))

    empty = pa.table({"email": pa.array([], pa.string()), "first_name": pa.array([], pa.string())})
    info = pipeline.run(empty, table_name="contacts")

    (summary,) = run_summaries(pipeline, info)
    assert (summary.rows_read, summary.contacts_sent, summary.requests) == (0, 0, 0)
    assert run_summary(state_path, info)["rows_read"] == 0
    assert "0 rows read" in summary.format()


def test_rows_refused_again_when_dlt_retries_a_file_are_recorded_and_counted_once(
    emulator, destination, run, state_path
) -> None:
    refused = {"errors": [{"field": "contacts[0].first_name", "message": "first_name is bad"}]}
    # Attempt 1: the first body's first contact is refused (400), the rest of it accepted;
    # the next body meets 503s until the client gives up, so dlt runs the file again, which
    # sends the refused contact again (nothing accepted it) and sees it refused again.
    emulator.faults.add(PUT, status=400, body=refused, times=1)
    emulator.faults.add(PUT, action="delay", delay=0.0, times=1)
    emulator.faults.add(PUT, status=500, times=2)
    emulator.faults.add(PUT, status=400, body=refused, times=1)
    data = contacts_table(6, email=[f"user{i}@example.com" for i in range(5)] + ["broken"])

    info = run(data, destination(max_contacts_per_request=2, max_in_flight=1, max_attempts=2))

    summary = run_summary(state_path, info)
    assert (summary["rejected"], summary["rejected_by_api"]) == (1, 1)
    stages = sorted(r["stage"] for r in rejects_of(state_path))
    assert stages == ["api", "validation"]
    assert summary["contacts_sent"] == 4 and len(emulator.contacts()) == 4


def test_a_table_over_fail_on_rejects_fails_the_load_after_every_table_is_sent(
    emulator, destination, tmp_path, state_path
) -> None:
    broken = contacts_table(4, email=["a0@example.com", "a1@example.com", "bad", "worse"])
    fine = contacts_table(5, start=10)
    tables = [
        dlt.resource(broken, name="a", write_disposition="append"),
        dlt.resource(fine, name="b", write_disposition="append"),
    ]
    pipeline = dlt.pipeline(
        "two", destination=destination(fail_on_rejects=0), pipelines_dir=str(tmp_path / "d")
    )

    with pytest.raises(PipelineStepFailed) as failed:
        pipeline.run(tables)

    assert "2 of the 4 rows of table 'a' were refused" in str(
        cause_of(failed.value, RejectsThresholdError)
    )
    assert len(emulator.contacts()) == 2 + 5  # both tables' good rows went out
    emulator.clear_requests()
    pipeline.load()  # completes the pending package, sending nothing again
    assert not pipeline.has_pending_data and upserts(emulator) == []


def test_contacts_failed_by_jobs_of_both_attempts_of_a_retried_file_are_counted_once(
    emulator, destination, run, state_path
) -> None:
    # Attempt 1: the first body's job fails its 3 contacts; the second body meets 500s until
    # the client gives up, so dlt runs the file again, which resends the 3 failed contacts
    # (failed: sent again) in a job that fails them again.
    emulator.fail_next_jobs(2, "Something went wrong temporarily")
    emulator.faults.add(PUT, action="delay", delay=0.0, times=1)
    emulator.faults.add(PUT, status=500, times=2)

    settings = {"max_contacts_per_request": 3, "max_in_flight": 1, "max_attempts": 2}
    info = run(contacts_table(6), destination(**settings, fail_on_rejects=0.6))

    summary = run_summary(state_path, info)  # 3 of 6 failed: within fail_on_rejects = 0.6
    assert summary["failed_in_jobs"] == 3
    assert sorted(r["stage"] for r in rejects_of(state_path)) == ["job"] * 3


# -- a row's refusal stands only until a later attempt of the same load sends it -------------

_REFUSED_FIRST = {"errors": [{"field": "contacts[0].first_name", "message": "first_name is bad"}]}
_RETRIED_FILE = {"max_contacts_per_request": 3, "max_in_flight": 1, "max_attempts": 2}


def _second_body_fails_until_the_client_gives_up(emulator) -> None:
    """The first body goes through; the second meets 500s until the client gives up, so dlt
    runs the file again."""
    emulator.faults.add(PUT, action="delay", delay=0.0, times=1)
    emulator.faults.add(PUT, status=500, times=2)


def test_a_row_refused_in_one_attempt_and_accepted_in_the_next_is_not_counted_or_listed_refused(
    emulator, destination, run, state_path
) -> None:
    # Attempt 1: the first body's first contact is refused (400) and the rest of the body
    # accepted; the next body fails. Attempt 2 sends the refused contact again: accepted.
    emulator.faults.add(PUT, status=400, body=_REFUSED_FIRST, times=1)
    _second_body_fails_until_the_client_gives_up(emulator)

    info = run(contacts_table(6), destination(**_RETRIED_FILE, fail_on_rejects=0))

    summary = run_summary(state_path, info)
    assert (summary["rejected_by_api"], summary["rejected_by_reason"]) == (0, {})
    assert rejects_of(state_path) == []
    assert (summary["contacts_sent"], len(emulator.contacts())) == (6, 6)


def test_contacts_a_job_failed_in_one_attempt_and_accepted_in_the_next_are_not_counted_failed(
    emulator, destination, run, state_path
) -> None:
    # Attempt 1's first job fails its 3 contacts; attempt 2 resends them in a job that
    # accepts them.
    emulator.fail_next_jobs(1, "Something went wrong temporarily")
    _second_body_fails_until_the_client_gives_up(emulator)

    info = run(contacts_table(6), destination(**_RETRIED_FILE, fail_on_rejects=0))

    summary = run_summary(state_path, info)
    assert (summary["failed_in_jobs"], summary["failed_by_reason"]) == (0, {})
    assert summary["jobs"]["failed"] == 1  # the job itself did fail
    assert rejects_of(state_path) == []
    assert len(emulator.contacts()) == 6


def test_a_contact_a_job_failed_and_a_later_attempt_saw_refused_counts_once_as_refused(
    emulator, destination, run, state_path
) -> None:
    # Attempt 1's first job fails its 3 contacts; attempt 2 resends them and SendGrid
    # refuses the first of them outright (400): its latest outcome, counted once.
    emulator.fail_next_jobs(1, "Something went wrong temporarily")
    _second_body_fails_until_the_client_gives_up(emulator)
    emulator.faults.add(PUT, status=400, body=_REFUSED_FIRST, times=1)

    info = run(contacts_table(6), destination(**_RETRIED_FILE))

    summary = run_summary(state_path, info)
    assert (summary["rejected_by_api"], summary["failed_in_jobs"]) == (1, 0)
    assert summary["rejected_by_reason"] == {"first_name is bad": 1}
    assert [r["stage"] for r in rejects_of(state_path)] == ["api"]
    assert len(emulator.contacts()) == 5


def test_a_row_refused_for_good_in_an_attempt_dlt_retries_is_counted_once_as_refused(
    emulator, destination, run, state_path
) -> None:
    # Attempt 1: a 400 refuses the first contact for good (a value refused), the rest of the
    # body is accepted, the next body fails: dlt runs the file again, which sends the
    # contact again (its refusal is this run's own) and sees it refused again.
    invalid = {"errors": [{"field": "contacts[0].email", "message": "email is not valid"}]}
    emulator.faults.add(PUT, status=400, body=invalid, times=1)
    _second_body_fails_until_the_client_gives_up(emulator)
    emulator.faults.add(PUT, status=400, body=invalid, times=1)

    info = run(contacts_table(6), destination(**_RETRIED_FILE))

    summary = run_summary(state_path, info)
    assert (summary["rejected_by_api"], summary["waiting_for_change"]) == (1, 0)
    assert summary["new"] + summary["rejected_by_api"] == summary["rows_read"] == 6
