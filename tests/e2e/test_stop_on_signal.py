"""SIGTERM (or Ctrl-C) during a load: no new body goes out, every accepted one is recorded,
and the process ends within one request attempt (``connect_timeout + read_timeout``), not
after the whole load."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sendgrid_destination.emulator import Emulator
from tests.e2e.conftest import state_rows, upserts
from tests.e2e.signal_worker import API_KEY

ROOT = Path(__file__).resolve().parents[2]
DELAY = 1.0  # real seconds per upsert, so that a load of 40 bodies would take 20 s


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_load_sending_nothing_new_and_recording_every_accepted_body(
    tmp_path: Path, sig: signal.Signals
) -> None:
    state_path = tmp_path / "state.duckdb"
    with Emulator(api_key=API_KEY, job_polls_until_done=1) as emu:
        emu.faults.add("PUT /v3/marketing/contacts", action="delay", delay=DELAY, times=100)
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.e2e.signal_worker",
                emu.base_url,
                str(state_path),
                str(tmp_path / "dlt"),
                "4000",
            ],
            cwd=ROOT,
            env={**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 60
            while len([r for r in upserts(emu) if r.status == 202]) < 2:
                assert time.monotonic() < deadline and child.poll() is None
                time.sleep(0.05)
            signalled = time.monotonic()
            sent_before = len(upserts(emu))
            child.send_signal(sig)
            child.wait(timeout=30)
            took = time.monotonic() - signalled
        finally:
            child.kill()
            child.wait(timeout=10)
        accepted = [r for r in upserts(emu) if r.status == 202]

    # At most the bodies already on the wire (max_in_flight = 2) finished after the signal.
    assert len(upserts(emu)) <= sent_before + 2
    assert len(accepted) < 40
    assert took < 2 * DELAY + 10
    (recorded,) = state_rows(state_path, "SELECT count(*) FROM requests")[0]
    assert recorded == len(accepted)
    (summary,) = state_rows(state_path, "SELECT summary FROM runs")[0]
    assert '"failed": "stopped by a signal; every request SendGrid accepted is recorded"' in summary


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_the_cli_stopped_by_a_signal_says_so_in_one_line_naming_the_signal(
    tmp_path: Path, sig: signal.Signals
) -> None:
    # dlt's own stop said "SignalReceivedException: Received `<redacted>`": the signal's
    # number, hidden by the redaction of other libraries' messages.
    import pyarrow as pa
    import pyarrow.parquet as pq

    emails = [f"p{i}@example.com" for i in range(4000)]
    pq.write_table(pa.table({"email": emails}), tmp_path / "p.parquet")
    (tmp_path / "s.toml").write_text(
        'name = "signalled"\n[source]\nkind = "parquet"\npath = "p.parquet"\n'
        "[destination.sendgrid]\nmax_contacts_per_request = 100\n"
        '[destination.sendgrid.mapping]\nemail = "email"\n'
    )
    with Emulator(api_key=API_KEY, job_polls_until_done=1) as emu:
        emu.faults.add("PUT /v3/marketing/contacts", action="delay", delay=DELAY, times=100)
        env = {
            **os.environ,
            "RUNTIME__DLTHUB_TELEMETRY": "false",
            "DESTINATION__SENDGRID__API_KEY": API_KEY,
            "DESTINATION__SENDGRID__BASE_URL": emu.base_url,
            "DESTINATION__SENDGRID__STATE_PATH": str(tmp_path / "state.duckdb"),
        }
        cli = str(Path(sys.executable).parent / "sendgrid-destination")
        command = [cli, "run", "s.toml", "--json"]
        child = subprocess.Popen(
            [*command, "--progress", "none", "--pipelines-dir", str(tmp_path / "dlt")],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            while not [r for r in upserts(emu) if r.status == 202]:
                assert time.monotonic() < deadline and child.poll() is None
                time.sleep(0.05)
            child.send_signal(sig)
            out, err = child.communicate(timeout=60)
        finally:
            child.kill()
            child.wait(timeout=10)

    assert child.returncode == 1, err
    error = json.loads(out)["error"]
    # dlt's stop, or ours when the load saw the signal first: both say what happened.
    assert error.startswith((f"The run was stopped by {sig.name}", "The load was asked to stop"))
    assert "every request SendGrid accepted is recorded" in error


def test_a_load_killed_after_its_sends_were_recorded_is_summed_up_by_the_run_completing_it(
    tmp_path: Path,
) -> None:
    # SIGKILL (nothing runs after it) while the load polls its jobs: its counters were only
    # saved when an attempt ended, so the completing run's summary said "0 new, sent 0" for
    # 300 rows read, while SendGrid had received all 300.
    state_path = tmp_path / "state.duckdb"
    command = [
        sys.executable,
        "-m",
        "tests.e2e.signal_worker",
        "",
        str(state_path),
        str(tmp_path / "dlt"),
        "300",
    ]
    env = {**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false"}
    with Emulator(api_key=API_KEY, job_polls_until_done=0, job_delay_seconds=3_600) as emu:
        command[3] = emu.base_url
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            polls = "GET /v3/marketing/contacts/imports/{id}"
            while not any(r.route == polls for r in emu.requests):  # every 202 recorded
                assert time.monotonic() < deadline and child.poll() is None
                time.sleep(0.02)
            child.kill()
        finally:
            child.kill()
            child.wait(timeout=10)
        emu.backend.delay_seconds = 0  # SendGrid catches up
        subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
        sent = sum(r.contact_count or 0 for r in upserts(emu) if r.status == 202)

    (first,) = state_rows(state_path, "SELECT summary FROM runs ORDER BY started_at LIMIT 1")
    summary = json.loads(first[0])
    assert sent == 300  # nothing was sent twice: the rerun found every contact recorded
    assert (summary["rows_read"], summary["new"], summary["contacts_sent"]) == (300, 300, 300)
    assert summary["requests"] == 3 and summary["jobs"] == {"completed": 3}
    assert any("killed before it saved its counts" in note for note in summary["notes"])
