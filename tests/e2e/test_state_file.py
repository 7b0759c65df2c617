"""The state file itself: one writer at a time, private, outside dlt's working directory, and
a faithful record of every run that the command line reads back."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from dlt.common.pipeline import get_dlt_pipelines_dir
from dlt.pipeline.exceptions import PipelineStepFailed

from sendgrid_destination.cli import main as sendgrid_destination_cli
from sendgrid_destination.config import SendGridConfiguration
from sendgrid_destination.errors import StateLockedError
from sendgrid_destination.state import StateStore, reports
from sendgrid_destination.state.snapshot import read_snapshot
from tests.e2e.conftest import (
    API_KEY,
    cli,
    contact_states,
    contacts_table,
    exception_chain,
    run_summary,
    state_rows,
    upserted_contacts,
    upserts,
)

# -- one run at a time ----------------------------------------------------------------------


def test_a_run_on_a_state_file_in_use_fails_naming_the_file_and_leaves_it_intact(
    emulator, destination, run, state_path
) -> None:
    first = run(contacts_table(5), destination())
    emulator.clear_requests()

    with StateStore.open(state_path), pytest.raises(PipelineStepFailed) as failed:
        run(contacts_table(8), destination())

    locked = [e for e in exception_chain(failed.value) if isinstance(e, StateLockedError)]
    assert locked, [type(e).__name__ for e in exception_chain(failed.value)]
    assert str(state_path) in str(locked[0])
    assert "in use by another run" in str(locked[0])
    assert upserts(emulator) == []  # nothing was sent without the lock
    # The file is intact: the first run's record reads back, and the next run works.
    assert run_summary(state_path, first)["contacts_sent"] == 5
    assert set(contact_states(state_path).values()) == {("accepted", None)}

    run(contacts_table(8), destination())  # dlt loads the package the locked run left pending

    assert upserted_contacts(emulator) == 3
    assert len(emulator.contacts()) == 8
    assert set(contact_states(state_path).values()) == {("accepted", None)}


def test_the_command_line_reads_a_state_file_a_load_holds_without_blocking_it(
    emulator, destination, run, state_path, capsys
) -> None:
    run(contacts_table(2), destination())
    capsys.readouterr()

    with StateStore.open(state_path):  # as a load holds it
        code = sendgrid_destination_cli(["status", "--state", str(state_path)])

    out = capsys.readouterr().out
    assert code == 0
    assert "contacts by outcome: accepted 2" in out


def test_a_load_starts_while_the_command_line_reads_the_state(
    emulator, destination, run, state_path
) -> None:
    run(contacts_table(2), destination())

    with read_snapshot(state_path) as reading:
        run(contacts_table(5), destination())  # neither waits nor fails
        assert reports.contact_status_counts(reading) == {"accepted": 2}  # its own copy

    assert len(emulator.contacts()) == 5


# -- where the file is and who may read it ---------------------------------------------------


def test_the_state_file_is_created_readable_by_its_owner_only(
    emulator, destination, run, state_path
) -> None:
    assert not state_path.exists()

    run(contacts_table(3), destination())

    assert stat.S_IMODE(state_path.stat().st_mode) == 0o600
    lock = state_path.with_name(state_path.name + ".lock")
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    assert stat.S_IMODE(state_path.parent.stat().st_mode) == 0o700


def test_every_file_of_the_state_is_private_even_in_a_shared_directory(
    emulator, destination, run, tmp_path, clock, monkeypatch
) -> None:
    # state_path in an existing, world-readable directory. DuckDB keeps a write-ahead log
    # (<file>.wal) next to the file while a run writes; it holds the same contact keys.
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    state_path = shared / "sendgrid.duckdb"
    modes_during_run: list[dict[str, int]] = []
    real_sleep = clock.sleep

    def sleep_and_look(seconds: float) -> None:  # job polling sleeps mid-run
        modes_during_run.append(
            {str(p.relative_to(shared)): stat.S_IMODE(p.stat().st_mode) for p in shared.rglob("*")}
        )
        real_sleep(seconds)

    monkeypatch.setattr(clock, "sleep", sleep_and_look)
    previous_umask = os.umask(0o022)
    try:
        run(contacts_table(5), destination(state_path=str(state_path)))
    finally:
        os.umask(previous_umask)

    # The spool (<file>.spool/, the contact rows of accepted requests until merged) holds
    # contact keys too: a private directory of private files.
    assert any("sendgrid.duckdb.wal" in seen for seen in modes_during_run), modes_during_run
    assert any("sendgrid.duckdb.spool/1.arrow" in seen for seen in modes_during_run)
    for seen in modes_during_run:
        expected = {k: 0o700 if k.endswith(".spool") else 0o600 for k in seen}
        assert seen == expected, {k: oct(v) for k, v in seen.items()}
    assert stat.S_IMODE(state_path.stat().st_mode) == 0o600


def test_the_default_state_path_is_per_account_and_outside_the_dlt_pipelines_directory(
    monkeypatch, tmp_path
) -> None:
    home, xdg = tmp_path / "home", tmp_path / "xdg"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    config = SendGridConfiguration(api_key=API_KEY, base_url="https://api.sendgrid.com")
    fingerprint = config.account.fingerprint()

    default = config.resolved_state_path()
    monkeypatch.setenv("XDG_STATE_HOME", str(xdg))
    under_xdg = config.resolved_state_path()

    name = f"state-{fingerprint}.duckdb"
    assert default == home / ".local" / "state" / "sendgrid-destination" / name
    assert under_xdg == xdg / "sendgrid-destination" / name
    pipelines = Path(get_dlt_pipelines_dir())
    assert not default.is_relative_to(pipelines)
    assert not under_xdg.is_relative_to(pipelines)
    # The same account, however its URL is written and whatever its key (rotated keys are
    # routine), shares a file; another host or subuser does not.
    same = SendGridConfiguration(api_key=API_KEY, base_url="https://API.sendgrid.com/")
    rotated = SendGridConfiguration(api_key="SG.other", base_url="https://api.sendgrid.com")
    subuser = SendGridConfiguration(
        api_key=API_KEY, base_url="https://api.sendgrid.com", on_behalf_of="team-b"
    )
    eu = SendGridConfiguration(api_key=API_KEY, base_url="https://api.eu.sendgrid.com")
    assert same.resolved_state_path() == rotated.resolved_state_path() == under_xdg
    assert subuser.resolved_state_path() != under_xdg
    assert eu.resolved_state_path() != under_xdg
    assert API_KEY not in str(under_xdg)


def test_without_state_path_a_pipeline_keeps_its_state_under_xdg_state_home(
    emulator, destination, run, monkeypatch, tmp_path
) -> None:
    xdg = tmp_path / "xdg"
    monkeypatch.setenv("XDG_STATE_HOME", str(xdg))
    expected = SendGridConfiguration(
        api_key=API_KEY, base_url=emulator.base_url
    ).resolved_state_path()
    data = contacts_table(20)

    run(data, destination(state_path=None))

    assert expected.is_file() and expected.is_relative_to(xdg)
    assert stat.S_IMODE(expected.stat().st_mode) == 0o600
    assert not (tmp_path / "state").exists()
    assert len(contact_states(expected)) == 20
    emulator.clear_requests()
    shutil.rmtree(tmp_path / "dlt")  # the pipeline's working directory, wiped

    run(data, destination(state_path=None))

    assert upserts(emulator) == []


# -- the runs table and the command line ------------------------------------------------------


def _mixed_rows():
    """10 rows: 8 good, one invalid email (row 4), one without any identifier (row 6)."""
    emails = [f"user{i}@example.com" for i in range(10)]
    emails[4], emails[6] = "not-an-email", None
    return contacts_table(10).set_column(0, "email", [emails])


def test_every_run_keeps_a_summary_in_the_runs_table_that_matches_what_happened(
    emulator, destination, run, state_path
) -> None:
    emulator.force_contact_errors({"user3@example.com": "bad"})
    first = run(_mixed_rows(), destination())
    first_bytes = sum(r.body_bytes for r in upserts(emulator))
    emulator.clear_contact_errors()
    emulator.clear_requests()
    second = run(_mixed_rows(), destination())
    second_bytes = sum(r.body_bytes for r in upserts(emulator))

    runs = state_rows(
        state_path, "SELECT run_id, stream, started_at <= finished_at, summary FROM runs"
    )
    by_id = {run_id: (stream, ordered, json.loads(s)) for run_id, stream, ordered, s in runs}
    first_id, second_id = (f"{i.loads_ids[-1]}:contacts" for i in (first, second))
    assert set(by_id) == {first_id, second_id}
    assert by_id[first_id][:2] == by_id[second_id][:2] == ("contacts", True)
    rejected_by_reason = {
        "email: not a valid email address": 1,
        "no identifier: every mapped identifier column is empty": 1,
    }
    expected_first = {
        "run_id": first_id,
        "stream": "contacts",
        "rows_read": 10,
        "superseded": 0,
        "new": 8,
        "changed": 0,
        "retried": 0,
        "unchanged": 0,
        "waiting_for_change": 0,
        "deferred": 0,
        "waiting": 0,
        "rejected": 2,
        "rejected_by_reason": rejected_by_reason,
        "omitted": 0,
        "omitted_by_reason": {},
        "contacts_sent": 8,
        "requests": 1,
        "imports": 0,
        "bytes_sent": first_bytes,
        "rejected_by_api": 0,
        "refused_requests": 0,
        "refused_bytes": 0,
        "failed_in_jobs": 1,
        "failed_for_good": 0,
        "failed_by_reason": {"bad": 1},
        "unconfirmed": 0,
        "notes": [],
        "error": None,
        "failed": None,
        # Lists and removals: none in this table.
        "list_additions": 0,
        "list_removals": 0,
        "flagged": 0,
        "left_source": 0,
        "deleted": 0,
        "not_deleted": 0,
        "removals_waiting": 0,
        "already_gone": 0,
        "removal_requests": 0,
        "removal_jobs": {},
        "over_delete_limit": 0,
        "over_rejects_limit": 0,
        "plan": False,
    }
    summary = by_id[first_id][2]
    assert {k: v for k, v in summary.items() if k != "jobs"} == expected_first
    assert {k: n for k, n in summary["jobs"].items() if n} == {"errored": 1}
    summary = by_id[second_id][2]
    assert {k: v for k, v in summary.items() if k != "jobs"} == {
        **expected_first,
        "run_id": second_id,
        "new": 0,
        "retried": 1,  # user3 failed in the first run's job: sent again, not "changed"
        "unchanged": 7,
        "contacts_sent": 1,
        "bytes_sent": second_bytes,
        "failed_in_jobs": 0,
        "failed_by_reason": {},
    }
    assert {k: n for k, n in summary["jobs"].items() if n} == {"completed": 1}
    assert 0 < second_bytes < first_bytes


def test_status_prints_the_state_and_the_summaries_of_recent_runs(
    emulator, destination, run, state_path, capsys
) -> None:
    emulator.force_contact_errors({"user3@example.com": "bad"})
    first = run(_mixed_rows(), destination())
    sent_bytes = sum(r.body_bytes for r in upserts(emulator))

    out = cli(capsys, "status", "--state", str(state_path))

    assert f"state file: {state_path}" in out
    assert "contacts by outcome: accepted 7, failed 1" in out
    assert "import jobs still pending: 0" in out
    run_id = f"{first.loads_ids[-1]}:contacts"
    assert f"run {run_id} (contacts): 10 rows read; 8 new, 0 changed, 0 unchanged" in out
    assert f"sent 8 contacts in 1 request ({sent_bytes:,} bytes)" in out
    assert "rejected before SendGrid accepted them: 2" in out
    assert "1 x email: not a valid email address" in out
    assert "jobs: 1 errored" in out
    assert "contacts failed in jobs: 1" in out
    assert "1 x bad" in out
    assert "user3@example.com" not in out  # the status carries counts, never keys


def test_rejects_exports_rejected_rows_with_key_column_and_reason_as_json_and_csv(
    emulator, destination, run, state_path, capsys, tmp_path
) -> None:
    emulator.force_contact_errors({"user3@example.com": "bad"})
    first = run(_mixed_rows(), destination())
    emulator.clear_contact_errors()
    second = run(_mixed_rows(), destination())
    first_id, second_id = (f"{i.loads_ids[-1]}:contacts" for i in (first, second))

    as_json = json.loads(cli(capsys, "rejects", "--state", str(state_path), "--format", "json"))
    as_csv = list(csv.DictReader(io.StringIO(cli(capsys, "rejects", "--state", str(state_path)))))

    expected_validation = [
        (4, "email:not-an-email", "email", "email: not a valid email address", "validation"),
        (6, None, "email", "no identifier: every mapped identifier column is empty", "validation"),
    ]

    def shaped(rows, run_id):
        return [
            (r["row_number"], r["contact_key"], r["column"], r["reason"], r["stage"])
            for r in rows
            if r["run_id"] == run_id
        ]

    assert sorted(shaped(as_json, first_id), key=str) == sorted(
        [*expected_validation, (None, "email:user3@example.com", None, "bad", "job")], key=str
    )
    assert shaped(as_json, second_id) == expected_validation
    assert {r["stream"] for r in as_json} == {"contacts"}
    # CSV carries the same rows (empty cells for nulls, numbers as text).
    assert list(as_csv[0]) == [
        "run_id",
        "stream",
        "stage",
        "row_number",
        "contact_key",
        "column",
        "reason",
    ]
    assert [{k: ("" if v is None else str(v)) for k, v in row.items()} for row in as_json] == as_csv
    only_second = json.loads(
        cli(capsys, "rejects", "--state", str(state_path), "--run", second_id, "--format", "json")
    )
    assert shaped(only_second, second_id) == expected_validation
    assert len(only_second) == 2
    out_file = tmp_path / "rejects.csv"
    cli(capsys, "rejects", "--state", str(state_path), "--output", str(out_file))
    assert list(csv.DictReader(out_file.open(newline=""))) == as_csv


def test_rejects_name_the_source_row_of_a_file_read_in_batches(
    emulator, destination, run, state_path, capsys
) -> None:
    # read_batch_rows=4: the job file is streamed as rows 0-3, 4-7, 8-9.
    emails = [f"user{i}@example.com" for i in range(10)]
    emails[3], emails[7] = "bad-three", "bad-seven"
    info = run(contacts_table(10).set_column(0, "email", [emails]), destination(read_batch_rows=4))

    rows = json.loads(cli(capsys, "rejects", "--state", str(state_path), "--format", "json"))

    assert sorted((r["contact_key"], r["row_number"]) for r in rows) == [
        ("email:bad-seven", 7),
        ("email:bad-three", 3),
    ]
    summary = run_summary(state_path, info)
    assert (summary["rows_read"], summary["rejected"], summary["contacts_sent"]) == (10, 2, 8)


def test_rejects_are_kept_for_the_latest_runs_only_so_the_state_stops_growing(
    emulator, destination, run, state_path
) -> None:
    for _ in range(5):
        run(_mixed_rows(), destination(keep_runs=3))  # 2 refused rows every run

    per_run = state_rows(state_path, "SELECT run_id, count(*) FROM rejects GROUP BY run_id")
    assert sorted(n for _, n in per_run) == [2, 2, 2]
    latest = state_rows(state_path, "SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 3")
    assert {r for r, _ in per_run} == {r for (r,) in latest}
