"""``status`` and ``rejects`` as people and scripts use them: times, JSON, wrong files, pipes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from sendgrid_destination.cli import main as sendgrid_destination_cli
from sendgrid_destination.state import StateStore, reports
from tests.e2e.conftest import cli, contacts_table


def test_status_shows_when_each_run_started_and_how_long_it_took(
    emulator, destination, run, state_path, capsys
) -> None:
    run(contacts_table(3), destination())

    out = cli(capsys, "status", "--state", str(state_path))

    assert " UTC, took " in out


def test_a_run_that_failed_part_way_is_shown_failed_with_why_and_the_next_one_is_not(
    emulator, destination, run, state_path, capsys
) -> None:
    # The first body is accepted; the second meets 500s until the client gives up, and
    # dlt's retries of the file meet them too: the load fails with 3 of 6 contacts sent.
    emulator.faults.add("PUT /v3/marketing/contacts", action="delay", delay=0.0, times=1)
    emulator.faults.add("PUT /v3/marketing/contacts", status=500, times=100)
    settings = {"max_contacts_per_request": 3, "max_in_flight": 1, "max_attempts": 2}
    with pytest.raises(PipelineStepFailed):
        run(contacts_table(6), destination(**settings))

    status = json.loads(cli(capsys, "status", "--json", "--state", str(state_path)))
    (failed,) = status["runs"]
    assert failed["summary"]["failed"].startswith("ServerError, dlt retries it: ")
    assert failed["summary"]["new"] == 3
    out = cli(capsys, "status", "--state", str(state_path))
    assert " UTC, failed after " in out and "FAILED part-way (ServerError" in out

    emulator.faults.clear()
    run(contacts_table(6), destination(**settings))  # dlt completes the pending load first

    runs = json.loads(cli(capsys, "status", "--json", "--state", str(state_path)))["runs"]
    completed = next(r for r in runs if r["run_id"] == failed["run_id"])
    assert completed["summary"]["failed"] is None and completed["summary"]["new"] == 6


def test_status_json_is_one_object_with_the_runs_and_their_summaries(
    emulator, destination, run, state_path, capsys
) -> None:
    info = run(contacts_table(4), destination())

    status = json.loads(cli(capsys, "status", "--json", "--state", str(state_path)))

    assert status["state_file"] == str(state_path)
    assert status["contacts_by_outcome"] == {"accepted": 4}
    assert status["pending_jobs"] == 0
    (latest,) = status["runs"]
    assert latest["run_id"] == f"{info.loads_ids[-1]}:contacts"
    assert latest["summary"]["new"] == 4 and latest["started_at"] <= latest["finished_at"]


@pytest.mark.parametrize("command", ["status", "rejects"])
def test_a_duckdb_file_that_is_not_a_state_file_is_refused_in_one_line_leaving_nothing_beside_it(
    tmp_path: Path, capsys, command
) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute("CREATE TABLE customers AS SELECT 'a@x.co' AS email")
    before = sorted(p.name for p in tmp_path.iterdir())

    code = sendgrid_destination_cli([command, "--state", str(warehouse)])

    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "is not a sendgrid-destination state file" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_file_that_is_not_a_database_is_refused_in_one_line(tmp_path: Path, capsys) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")

    code = sendgrid_destination_cli(["status", "--state", str(notes)])

    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "not a DuckDB database" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_rejects_piped_into_head_ends_quietly(emulator, destination, run, state_path) -> None:
    bad = pa.table({"email": [f"broken-{i}" for i in range(3000)], "first_name": ["x"] * 3000})
    run(bad, destination())
    command = (
        f"{sys.executable} -m sendgrid_destination.cli rejects --state {state_path} | head -n 2"
    )

    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"},
    )

    assert done.stderr == ""
    assert done.returncode == 0
    assert done.stdout.startswith("run_id,stream,stage")


def test_a_rejects_file_is_readable_by_its_owner_only_like_the_state(
    emulator, destination, run, state_path, tmp_path: Path
) -> None:
    run(pa.table({"email": ["broken"], "first_name": ["x"]}), destination())
    output = tmp_path / "rejects.csv"
    output.write_text("")  # already there, world-readable: it is narrowed too
    output.chmod(0o644)

    code = sendgrid_destination_cli(
        ["rejects", "--state", str(state_path), "--output", str(output)]
    )

    assert code == 0
    assert output.stat().st_mode & 0o777 == 0o600
    assert output.read_text().count("\n") == 2  # the header and the refused row


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["rejects", "--output", "{dir}/no/such/dir/x.csv"], "Cannot write"),
        (["rejects", "--run", "no-such-run"], "has no run 'no-such-run'"),
    ],
)
def test_a_rejects_export_that_cannot_be_made_is_refused_in_a_line_naming_why(
    emulator, destination, run, state_path, tmp_path: Path, capsys, argv, said
) -> None:
    run(contacts_table(2), destination())
    capsys.readouterr()
    command = [a.replace("{dir}", str(tmp_path)) for a in argv]

    code = sendgrid_destination_cli([*command, "--state", str(state_path)])

    err = capsys.readouterr().err
    assert code == 2
    assert said in err and err.count("\n") == 1


@pytest.mark.parametrize("runs", ["-1", "0", "many"])
def test_a_run_count_that_is_not_a_positive_number_is_a_usage_error(
    tmp_path: Path, capsys, runs: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        sendgrid_destination_cli(["status", "--runs", runs, "--state", str(tmp_path / "s")])

    assert exited.value.code == 2
    assert "is not a count of 1 or more" in capsys.readouterr().err


def test_status_without_settings_names_the_default_state_file_of_the_account(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)

    code = sendgrid_destination_cli(["status"])

    err = capsys.readouterr().err
    assert code == 2
    assert f"No state file at {tmp_path / 'xdg' / 'sendgrid-destination'}" in err
    assert "`run` prints the one it used as `state:`" in err  # where to look for it
    assert not (tmp_path / "xdg").exists()


@pytest.mark.parametrize("command", ["status", "rejects"])
def test_a_deleted_state_file_whose_journal_remains_is_named_missing_not_never_loaded(
    emulator, destination, run, state_path, capsys, command
) -> None:
    run(contacts_table(3), destination())
    state_path.unlink()

    code = sendgrid_destination_cli([command, "--state", str(state_path)])

    err = capsys.readouterr().err
    assert code != 0
    assert "is missing" in err and "restore-state" in err
    assert "nothing has been loaded" not in err


def test_restore_state_without_a_copy_to_restore_fails_leaving_nothing_behind(
    tmp_path: Path, capsys
) -> None:
    missing = tmp_path / "no" / "such" / "state.duckdb"
    (tmp_path / "no" / "such").mkdir(parents=True)

    code = sendgrid_destination_cli(["restore-state", "--state", str(missing)])

    assert code == 2
    assert "No copy of the state file to restore" in capsys.readouterr().err
    assert list((tmp_path / "no" / "such").iterdir()) == []  # no lock file left


@pytest.mark.parametrize("command", ["status", "rejects"])
def test_a_directory_given_as_the_state_file_is_named_as_a_directory(
    tmp_path: Path, capsys, command
) -> None:
    code = sendgrid_destination_cli([command, "--state", str(tmp_path)])

    err = capsys.readouterr().err
    assert code == 2 and f"{tmp_path} is a directory" in err and "No state file" not in err


def test_an_export_of_more_rejects_than_one_batch_writes_each_row_once_in_order(
    tmp_path: Path, capsys
) -> None:
    # The export streams record batches (10,000 rows) instead of holding every reject.
    state_path = tmp_path / "state.duckdb"
    count = 25_001
    with StateStore.open(state_path) as store:
        store.start_run("r1", "contacts")
        refused = pa.table(
            {
                "row_number": pa.array(range(count), pa.int64()),
                "contact_key": [f"email:u{i}@x.co" for i in range(count)],
                "column": ["email"] * count,
                "reason": ["email: not a valid email address"] * count,
            }
        )
        store.record_rejects(run_id="r1", stream="contacts", rejects=refused, stage="validation")
        assert [b.num_rows for b in reports.rejects(store)] == [10_000, 10_000, 5_001]

    as_json = json.loads(cli(capsys, "rejects", "--state", str(state_path), "--format", "json"))
    as_csv = cli(capsys, "rejects", "--state", str(state_path)).splitlines()

    assert [r["row_number"] for r in as_json] == list(range(count))
    assert as_json[-1]["contact_key"] == f"email:u{count - 1}@x.co"
    assert len(as_csv) == count + 1
    assert as_csv[1].split(",") == [
        "r1",
        "contacts",
        "validation",
        "0",
        "email:u0@x.co",
        "email",
        "email: not a valid email address",
    ]
