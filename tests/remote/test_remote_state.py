"""The state on S3 (moto on loopback) for workers whose disk does not outlive a task: locked,
downloaded, uploaded as it goes and at the end; a second worker waits or stops clearly; a
killed worker loses at most what was accepted since its last upload."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs
from dlt.pipeline.exceptions import PipelineStepFailed

from sendgrid_destination.emulator import Emulator
from sendgrid_destination.errors import CorruptStateError, StateLockedError, ours_in
from sendgrid_destination.remote_lock import LockInfo
from sendgrid_destination.remote_state import fetch_copy
from sendgrid_destination.state import StateStore
from tests.remote.conftest import S3
from tests.remote.remote_worker import API_KEY, sync

ROOT = Path(__file__).resolve().parents[2]
CONTACTS = 2_000
PER_REQUEST = 100
UPLOAD_EVERY = 3


def _contacts(version: int, n: int = CONTACTS) -> pa.Table:
    return pa.table(
        {
            "email": [f"user{i}@example.com" for i in range(n)],
            "first_name": [f"v{version}-{i}" for i in range(n)],
        }
    )


def _upserted(emulator: Emulator, since: int = 0) -> int:
    return sum(
        r.contact_count or 0
        for r in emulator.requests[since:]
        if r.route == "PUT /v3/marketing/contacts" and r.status == 202
    )


def _remote_requests(url: str) -> int:
    """Accepted requests recorded in the remote state (0 when there is none)."""
    with fetch_copy(url) as local:
        if local is None:
            return 0
        with StateStore.open(local, read_only=True) as store:
            return int(store.con.execute("SELECT count(*) FROM requests").fetchall()[0][0])


def _worker(
    emulator: Emulator, s3: S3, url: str, tmp_path: Path, parquet: Path, *settings: str
) -> subprocess.Popen[bytes]:
    (tmp_path / "tmp").mkdir(exist_ok=True)  # the worker's temporary directory: its state copy
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.remote.remote_worker",
            emulator.base_url,
            url,
            str(tmp_path / f"dlt-{time.monotonic_ns()}"),  # each worker: a fresh disk
            str(parquet),
            *settings,
        ],
        cwd=ROOT,
        env=os.environ | s3.env | {"TMPDIR": str(tmp_path / "tmp")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=30)


def test_a_remote_state_survives_the_worker_and_the_next_one_sends_nothing_unchanged(
    s3: S3, tmp_path: Path
) -> None:
    url = s3.url("accounts/main/state.duckdb")
    with Emulator(api_key=API_KEY, job_polls_until_done=1) as emulator:
        sync(_contacts(1, 300), emulator.base_url, url, str(tmp_path / "worker-1"))
        after_first = len(emulator.requests)
        # Another worker, another empty disk: only the remote state connects the two.
        sync(_contacts(1, 300), emulator.base_url, url, str(tmp_path / "worker-2"))

        assert _upserted(emulator) == 300
        assert _upserted(emulator, after_first) == 0
    fs = s3fs.S3FileSystem()
    assert fs.exists(url)
    assert not fs.exists(url + ".lock")  # released at the end


def test_a_second_worker_stops_clearly_while_the_first_holds_the_lock(
    s3: S3, tmp_path: Path
) -> None:
    url = s3.url("state.duckdb")
    holder = LockInfo("worker-a:4242", "token-a", time.time() + 600)
    s3fs.S3FileSystem().pipe_file(url + ".lock", holder.to_json())
    with Emulator(api_key=API_KEY, job_polls_until_done=1) as emulator:
        started = time.monotonic()
        with pytest.raises(PipelineStepFailed) as caught:
            sync(_contacts(1, 10), emulator.base_url, url, str(tmp_path / "b"), state_lock_wait=1.5)
        waited = time.monotonic() - started

        assert _upserted(emulator) == 0
    message = str(caught.value)
    assert StateLockedError.__name__ in message
    assert "worker-a:4242" in message
    assert "state_lock_wait" in message
    assert 1.5 <= waited < 30


@pytest.mark.slow  # about 10 s: a worker process kept busy for a few seconds
def test_two_real_workers_on_one_state_take_turns_and_send_each_contact_once(
    s3: S3, tmp_path: Path
) -> None:
    url = s3.url("state.duckdb")
    parquet = tmp_path / "v1.parquet"
    pq.write_table(_contacts(1), parquet)
    with Emulator(api_key=API_KEY, job_polls_until_done=1) as emulator:
        # Slow upserts keep the first worker (and its lock) busy for a few seconds.
        requests = CONTACTS // PER_REQUEST
        emulator.faults.add("PUT /v3/marketing/contacts", action="delay", delay=0.2, times=requests)
        first = _worker(
            emulator, s3, url, tmp_path, parquet, f"max_contacts_per_request={PER_REQUEST}"
        )
        try:
            _wait_for(lambda: s3fs.S3FileSystem().exists(url + ".lock"), first)
            with pytest.raises(PipelineStepFailed) as caught:
                sync(_contacts(1), emulator.base_url, url, str(tmp_path / "b"))
            assert "in use by" in str(caught.value)
            # Told to wait, the second worker runs once the first has released the lock.
            sync(_contacts(1), emulator.base_url, url, str(tmp_path / "c"), state_lock_wait=120)
            assert first.wait(timeout=120) == 0, first.stderr.read() if first.stderr else ""
        finally:
            _stop(first)
        assert _upserted(emulator) == CONTACTS


@pytest.mark.slow  # a worker process, killed, and a lock left to expire
def test_a_killed_worker_loses_at_most_what_was_accepted_since_its_last_upload(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = s3.url("state.duckdb")
    parquet = tmp_path / "v2.parquet"
    pq.write_table(_contacts(2), parquet)
    with Emulator(api_key=API_KEY, job_polls_until_done=1) as emulator:
        worker = _worker(
            emulator,
            s3,
            url,
            tmp_path,
            parquet,
            f"max_contacts_per_request={PER_REQUEST}",
            "max_in_flight=1",
            f"state_upload_every={UPLOAD_EVERY}",
            "state_lock_ttl=2.0",
        )
        try:
            _wait_for(lambda: _upserted(emulator) >= 8 * PER_REQUEST, worker)
            os.kill(worker.pid, signal.SIGKILL)
        finally:
            _stop(worker)
        sent_before_kill = _upserted(emulator)
        recorded = _remote_requests(url) * PER_REQUEST
        after_kill = len(emulator.requests)
        left = list((tmp_path / "tmp").glob("sendgrid-remote-state-*/state.duckdb"))
        assert left, "the killed worker's copy of the state was not where it was expected"

        # The dead worker's lock expires (ttl 2 s) and the next worker takes it over; on the
        # same machine it removes the dead worker's copy (it holds every email).
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
        sync(_contacts(2), emulator.base_url, url, str(tmp_path / "next"), state_lock_wait=30)
        resent = _upserted(emulator, after_kill)
        names = {c["email"]: c.get("first_name") for c in emulator.contacts()}

    assert sent_before_kill < CONTACTS, "the worker finished before it was killed"
    assert not any((tmp_path / "tmp").iterdir()), "a state copy outlived its run"
    # Uploads came every UPLOAD_EVERY requests: the tail since the last one is all it lost.
    assert sent_before_kill - recorded <= UPLOAD_EVERY * PER_REQUEST
    assert resent == CONTACTS - recorded, "contacts recorded in the uploaded state were resent"
    assert len(names) == CONTACTS
    assert all(names[f"user{i}@example.com"] == f"v2-{i}" for i in range(CONTACTS))


def test_every_unreadable_lock_object_counts_as_expired_not_only_the_first(
    s3: S3, tmp_path: Path
) -> None:
    # The first takeover's marker was named for every unreadable lock: a second one could
    # never be taken over, and every later run stopped, naming itself as the holder.
    url = s3.url("state.duckdb")
    with Emulator(api_key=API_KEY, job_polls_until_done=1) as emulator:
        for attempt in range(1, 3):
            s3fs.S3FileSystem().pipe_file(url + ".lock", b"{half a lock")
            sync(_contacts(attempt, 10), emulator.base_url, url, str(tmp_path / "w"))
            assert _upserted(emulator) == 10 * attempt
            time.sleep(1.1)  # S3 dates objects to the second: the next lock is another


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_remote_state_is_refused_naming_the_object_not_its_temporary_copy(
    s3: S3, tmp_path: Path, damage: str
) -> None:
    # The refusal named a private copy deleted when the run ended, and advised moving files
    # aside beside it, or restoring a backup that a remote state never had.
    url = s3.url("state.duckdb")
    fs = s3fs.S3FileSystem()
    with Emulator(api_key=API_KEY, job_polls_until_done=1) as emulator:
        sync(_contacts(1, 10), emulator.base_url, url, str(tmp_path / "w"))
        whole = fs.cat_file(url)
        fs.pipe_file(url, whole[:5000] if damage == "truncated" else b"not a state" * 100)

        with pytest.raises(PipelineStepFailed) as failed:
            sync(_contacts(1, 10), emulator.base_url, url, str(tmp_path / "w"))

        assert _upserted(emulator) == 10  # nothing sent again
    refused = ours_in(failed.value)
    assert isinstance(refused, CorruptStateError)
    assert refused.message.startswith(f"The remote state {url} cannot be used: its copy")
    assert "sendgrid-remote-state-" not in refused.message


def test_status_reads_a_remote_state(
    s3: S3, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sendgrid_destination.cli import main

    url = s3.url("state.duckdb")
    with Emulator(api_key=API_KEY, job_polls_until_done=1) as emulator:
        sync(_contacts(1, 25), emulator.base_url, url, str(tmp_path / "w"))
    capsys.readouterr()

    assert main(["status", "--state", url, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["state_file"] == url
    assert status["contacts_by_outcome"] == {"accepted": 25}


def _wait_for(condition: object, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise AssertionError(f"the worker ended early ({proc.returncode}): {err[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the worker")
        time.sleep(0.01)


def test_a_plan_reads_a_remote_state_and_leaves_it_and_its_lock_alone(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from sendgrid_destination.cli import main

    url = s3.url("state.duckdb")
    pq.write_table(_contacts(1, 40), tmp_path / "people.parquet")
    sync_file = tmp_path / "people.toml"
    sync_file.write_text(
        'name = "people"\n[source]\nkind = "parquet"\npath = "people.parquet"\n'
        f'[destination.sendgrid]\nstate_path = "{url}"\njob_poll_interval = 0.05\n'
        '[destination.sendgrid.mapping]\nemail = "email"\nfirst_name = "first_name"\n'
    )
    monkeypatch.chdir(tmp_path)
    fs = s3fs.S3FileSystem()
    with Emulator(api_key=API_KEY, job_polls_until_done=1) as emulator:
        monkeypatch.setenv("DESTINATION__SENDGRID__API_KEY", API_KEY)
        monkeypatch.setenv("DESTINATION__SENDGRID__BASE_URL", emulator.base_url)
        dlt_dir = str(tmp_path / "dlt")
        assert main(["run", str(sync_file), "--pipelines-dir", dlt_dir]) == 0
        before = fs.cat_file(url)
        pq.write_table(_contacts(2, 45), tmp_path / "people.parquet")
        capsys.readouterr()

        code = main(["run", str(sync_file), "--plan", "--json", "--pipelines-dir", dlt_dir])

    document = json.loads(capsys.readouterr().out)
    plan = document["totals"]
    assert code == 0 and document["mode"] == "plan"
    assert (plan["new"], plan["changed"]) == (5, 40)
    assert fs.cat_file(url) == before
    assert not fs.exists(url + ".lock")
    assert not list(tmp_path.glob("**/*.plan.json"))  # a remote state keeps no plan locally


def test_a_failed_run_still_uploads_what_sendgrid_accepted(s3: S3, tmp_path: Path) -> None:
    url = s3.url("state.duckdb")
    with Emulator(api_key=API_KEY, job_polls_until_done=1) as emulator:
        # Two bodies accepted, then a 401 (terminal) for the rest of the first run.
        emulator.faults.add("PUT /v3/marketing/contacts", action="delay", delay=0.0, times=2)
        emulator.faults.add("PUT /v3/marketing/contacts", status=401, times=100)
        settings = {"max_contacts_per_request": PER_REQUEST, "max_in_flight": 1}
        with pytest.raises(PipelineStepFailed):
            sync(_contacts(1, 500), emulator.base_url, url, str(tmp_path / "a"), **settings)
        recorded = _remote_requests(url)
        emulator.faults.clear()
        after_failure = len(emulator.requests)

        sync(_contacts(1, 500), emulator.base_url, url, str(tmp_path / "b"), **settings)

        assert recorded == 2  # uploaded at the end of the failed run (upload_every is 20)
        assert _upserted(emulator, after_failure) == 500 - 2 * PER_REQUEST
        assert len(emulator.contacts()) == 500


def test_a_takeover_that_died_halfway_is_named_with_what_to_delete(s3: S3, tmp_path: Path) -> None:
    url = s3.url("state.duckdb")
    fs = s3fs.S3FileSystem()
    dead = LockInfo("worker-a:1", "token-a", time.time() - 60)
    fs.pipe_file(url + ".lock", dead.to_json())
    fs.pipe_file(url + ".lock.takeover-token-a", LockInfo("worker-b:2", "b", 0).to_json())
    with Emulator(api_key=API_KEY) as emulator, pytest.raises(PipelineStepFailed) as caught:
        sync(_contacts(1, 5), emulator.base_url, url, str(tmp_path / "c"))

    assert f"delete {url.removeprefix('s3://')}.lock and" in str(caught.value)
    assert "takeover-token-a" in str(caught.value)
