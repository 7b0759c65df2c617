"""Crash anywhere, rerun, lose nothing and resend nothing that was recorded as accepted.

Each seeded trial loads version 1 of 2,000 contacts, then starts a process loading version 2
and SIGKILLs it at a random point: after a random number of requests reached the emulator,
plus a random few milliseconds, so kills land before, during and after upserts, between a 202
and its recording, and during job polling. After a rerun:

* every contact is in the emulator with its version-2 values;
* the rerun sends exactly the contacts whose version-2 hash the killed run had not recorded
  (nothing recorded as accepted is sent again);
* over both runs, at most ``max_in_flight`` requests' worth of contacts was sent twice (the
  requests whose 202 arrived but were not yet recorded when the process died): trials run
  with one request in flight, and some with two.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sendgrid_destination.emulator import Emulator
from sendgrid_destination.state import StateStore
from tests.e2e.crash_scenario import API_KEY, BULK, MIRROR, PER_FILE, PER_REQUEST, sync

CONTACTS = 2_000
TRIALS = 20
SEED = 20261126
ROOT = Path(__file__).resolve().parents[2]


def _version(n: int) -> pa.Table:
    return pa.table(
        {
            "email": [f"user{i}@example.com" for i in range(CONTACTS)],
            "first_name": [f"v{n}-{i}" for i in range(CONTACTS)],
        }
    )


def _upserted(emulator: Emulator, since: int = 0) -> int:
    return sum(
        r.contact_count or 0
        for r in emulator.requests[since:]
        if r.route == "PUT /v3/marketing/contacts" and r.status == 202
    )


def _recorded_v2(state_path: Path) -> int:
    """Contacts whose version-2 content the killed run recorded as sent or accepted."""
    with StateStore.open(state_path, read_only=True) as store:
        row = store.con.execute(
            "SELECT count(*) FROM contact_status c JOIN requests r ON c.job_id = r.job_id "
            "WHERE r.run_id <> (SELECT min(run_id) FROM runs) "
            "AND c.status IN ('sent', 'accepted')"
        ).fetchone()
    return int(row[0]) if row else 0


def _kill_after(
    proc: subprocess.Popen[bytes], emulator: Emulator, requests: int, extra_ms: float
) -> None:
    baseline = len(emulator.requests)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if len(emulator.requests) - baseline >= requests:
            time.sleep(extra_ms / 1000)
            break
        time.sleep(0.002)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("trial", "in_flight"), [(t, 1) for t in range(TRIALS)] + [(t, 2) for t in range(TRIALS, 28)]
)
def test_a_sigkilled_load_loses_nothing_and_resends_only_the_unrecorded_requests(
    trial: int, in_flight: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(SEED + trial)
    monkeypatch.chdir(tmp_path)
    state, dlt_dir = tmp_path / "state.duckdb", tmp_path / "dlt"
    parquet = tmp_path / "v2.parquet"
    pq.write_table(_version(2), parquet)
    with Emulator(api_key=API_KEY, job_polls_until_done=1) as emulator:
        sync(_version(1), emulator.base_url, str(state), str(dlt_dir))
        before_kill = len(emulator.requests)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.e2e.crash_worker",
                emulator.base_url,
                str(state),
                str(dlt_dir),
                str(parquet),
                str(in_flight),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        # v2 makes 10 PUTs and then polls their jobs: most kills land among the PUTs, some
        # during polling or after the end.
        _kill_after(proc, emulator, rng.randint(0, 12 if trial % 4 else 30), rng.uniform(0, 40))
        sent_before_kill = _upserted(emulator, before_kill)
        recorded = _recorded_v2(state)
        after_kill = len(emulator.requests)

        sync(_version(2), emulator.base_url, str(state), str(dlt_dir), in_flight)
        emulator.process_jobs()
        resent = _upserted(emulator, after_kill)

        names = {c["email"]: c.get("first_name") for c in emulator.contacts()}
    assert len(names) == CONTACTS
    assert all(names[f"user{i}@example.com"] == f"v2-{i}" for i in range(CONTACTS))
    assert resent == CONTACTS - recorded, "the rerun resent contacts recorded as accepted"
    assert sent_before_kill + resent <= CONTACTS + in_flight * PER_REQUEST


UPLOAD = "PUT /_uploads/{job_id}"


def _taken_uploads(emulator: Emulator, since: int = 0) -> list[str]:
    """Job IDs of the CSV files the upload URL took, in order."""
    return [
        r.path.rsplit("/", 1)[-1]
        for r in emulator.requests[since:]
        if r.route == UPLOAD and r.status == 200
    ]


def _imported(emulator: Emulator, job_ids: list[str]) -> int:
    wanted = set(job_ids)
    return sum(job["contact_count"] for job in emulator.jobs() if job["id"] in wanted)


def _recorded(state_path: Path) -> int:
    with StateStore.open(state_path, read_only=True) as store:
        row = store.con.execute("SELECT coalesce(sum(contact_count), 0) FROM requests").fetchone()
    return int(row[0]) if row else 0


@pytest.mark.slow
@pytest.mark.parametrize("file_number", [1, 2, 4])
def test_a_bulk_load_killed_mid_upload_resends_at_most_the_file_in_flight(
    file_number: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2,000 new contacts go as 4 CSV files of 500. Every upload's answer crawls (the file is
    # taken, then its 200 takes seconds to arrive): the process is killed while the
    # file_number-th file is taken but not yet recorded.
    monkeypatch.chdir(tmp_path)
    state, dlt_dir = tmp_path / "state.duckdb", tmp_path / "dlt"
    parquet = tmp_path / "v2.parquet"
    pq.write_table(_version(2), parquet)
    with Emulator(api_key=API_KEY, job_polls_until_done=1) as emulator:
        emulator.faults.add(UPLOAD, action="drip", delay=0.03, times=10)
        command = [sys.executable, "-m", "tests.e2e.crash_worker", emulator.base_url,
                   str(state), str(dlt_dir), str(parquet), "bulk"]  # fmt: skip
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while len(_taken_uploads(emulator)) < file_number and time.monotonic() < deadline:
            assert proc.poll() is None, "the worker ended before the upload to kill it in"
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        before_kill = _taken_uploads(emulator)
        recorded = _recorded(state)
        emulator.faults.clear()
        after_kill = len(emulator.requests)

        sync(_version(2), emulator.base_url, str(state), str(dlt_dir), **BULK)
        emulator.process_jobs()
        resent = _imported(emulator, _taken_uploads(emulator, after_kill))
        sent_before_kill = _imported(emulator, before_kill)
        names = {c["email"]: c.get("first_name") for c in emulator.contacts()}

    assert len(before_kill) == file_number
    assert recorded == (file_number - 1) * PER_FILE  # every file before the one in flight
    assert len(names) == CONTACTS
    assert all(names[f"user{i}@example.com"] == f"v2-{i}" for i in range(CONTACTS))
    assert resent == CONTACTS - recorded, "the rerun resent contacts recorded as accepted"
    assert sent_before_kill + resent == CONTACTS + PER_FILE  # the file in flight, twice


DELETE = "DELETE /v3/marketing/contacts"


@pytest.mark.slow
def test_a_load_killed_after_sending_a_deletion_resends_the_contact_when_its_row_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The deletion of user0 reaches SendGrid, whose answer crawls: the process is killed
    # before it records anything, and dlt's working folder is lost with it (as with the
    # orchestrators' temporary folders). SendGrid deletes user0; its row then comes back.
    monkeypatch.chdir(tmp_path)
    state, dlt_dir = tmp_path / "state.duckdb", tmp_path / "dlt"
    parquet = tmp_path / "without_user0.parquet"
    pq.write_table(_version(1).slice(1), parquet)
    with Emulator(api_key=API_KEY, job_polls_until_done=1) as emulator:
        sync(_version(1), emulator.base_url, str(state), str(dlt_dir), **MIRROR)
        emulator.faults.add(DELETE, action="drip", delay=0.05, times=10)
        command = [sys.executable, "-m", "tests.e2e.crash_worker", emulator.base_url,
                   str(state), str(dlt_dir), str(parquet), "mirror"]  # fmt: skip
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not any(r.route == DELETE for r in emulator.requests):
            assert proc.poll() is None and time.monotonic() < deadline, "no deletion to kill in"
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        emulator.faults.clear()
        emulator.process_jobs()
        assert emulator.contact("user0@example.com") is None
        shutil.rmtree(dlt_dir)

        sync(_version(1), emulator.base_url, str(state), str(dlt_dir), **MIRROR)
        emulator.process_jobs()

        assert emulator.contact("user0@example.com")["first_name"] == "v1-0"
        assert len(emulator.contacts()) == CONTACTS
        since = len(emulator.requests)
        sync(_version(1), emulator.base_url, str(state), str(dlt_dir), **MIRROR)
        assert _upserted(emulator, since) == 0
