"""The seeded soak (issue 13's proof): dozens of scheduled runs of a changing warehouse table
into the emulator, under a random fault plan and random SIGKILLs, end with exactly the right
contacts.

Each run is a real dlt pipeline in a subprocess (``tests/soak/soak_worker.py``): it loads a
pending package first, then the table's new snapshot (``workload.Warehouse``: new and changed
contacts, duplicate rows of one contact with the last row winning, bad rows). Before and
during each run the seeded ``chaos.Chaos`` plan arms 429s with rate-limit headers, 5xx,
dropped connections (before and after the request was processed), a smaller body limit
answered 413 or 400, contacts failed in their job, whole jobs failed, errors-file variants,
import status 404s and jobs pending for a while, and SIGKILLs the loading process early (while
dlt extracts or normalizes, or before the first request) or after a number of requests. Faults
a run did not use up stay queued for the next one. A killed or failed run is simply followed
by the next one, as a scheduler would.

Then every fault is cleared and one clean run loads the final snapshot. At the end:

* the emulator holds exactly the last value of every contact of the source (key: the email,
  trimmed and lower-cased), and no contact the source never had valid;
* every invalid row of the last load that is its key's last row (or has no email) is in the
  state's rejects for that load, with a reason; no other row is;
* every contact the state calls accepted is in the emulator, and every contact of the source
  is accepted;
* running the same snapshot again sends nothing.

The figures (runs, kills, faults by kind, requests, contacts sent and sent more than once,
rejects) are printed, also when the test passes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import IO, Any

import pyarrow.parquet as pq
import pytest

from sendgrid_destination.emulator import Emulator, RateLimit
from sendgrid_destination.state import StateStore
from tests.soak.chaos import KINDS, UPSERT, Chaos, Fault, RunPlan
from tests.soak.soak_worker import API_KEY
from tests.soak.workload import CUSTOM_FIELDS, Snapshot, Warehouse

SEED = 20261313
RUNS = 44  # before the final clean run
CONTACTS = 400
ROOT = Path(__file__).resolve().parents[2]
# A run that is neither killed nor done within this is a hang: every request and every job
# wait is bounded far below it (attempts x timeouts, job_wait_timeout, dlt's 5 retries).
RUN_DEADLINE_SECONDS = 120.0
POLL_SECONDS = 0.003

Values = tuple[Any, ...]  # a contact's (first_name, last_name, score, plan)


@dataclass
class RunResult:
    number: int
    exit_code: int | None
    killed: bool
    seconds: float
    log: Path
    load_ids: list[str]
    faults: list[str]  # the kinds armed before and during the run
    statuses: Counter[int]  # of the API requests made while it ran

    def line(self) -> str:
        how = "killed" if self.killed else f"exit {self.exit_code}"
        answers = " ".join(f"{s}x{n}" for s, n in sorted(self.statuses.items()))
        return (
            f"  run {self.number:2}: {how:7} {self.seconds:5.1f} s  "
            f"[{', '.join(self.faults) or 'no faults'}]  {answers}"
        )

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class Soak:
    """Runs the worker for each snapshot under a plan, and keeps what the figures need."""

    def __init__(self, emulator: Emulator, root: Path, chaos: Chaos) -> None:
        self.emulator = emulator
        self.root = root
        self.chaos = chaos
        self.state = root / "state" / "sendgrid.duckdb"
        self.results: list[RunResult] = []
        self._armed: list[str] = []

    def run(self, snapshot: Snapshot, plan: RunPlan) -> RunResult:
        number = len(self.results) + 1
        parquet = self.root / f"snapshot-{number}.parquet"
        pq.write_table(snapshot.table(), parquet)
        self._armed = []
        self._arm_before(plan)
        log, result_file = self.root / f"run-{number}.log", self.root / f"run-{number}.json"
        started, baseline = time.monotonic(), len(self.emulator.requests)
        with log.open("wb") as out:
            proc = self._start(parquet, result_file, out)
            try:
                killed = self._watch(proc, plan, started, baseline, log)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
        if killed and plan.kill:
            self._armed.append(plan.kill.kind)
            self.chaos.counts[plan.kill.kind] += 1
        result = RunResult(
            number,
            proc.returncode,
            killed,
            time.monotonic() - started,
            log,
            json.loads(result_file.read_text())["load_ids"] if result_file.exists() else [],
            self._armed,
            Counter(r.status for r in self.emulator.requests[baseline:]),
        )
        self.results.append(result)
        return result

    def _start(self, parquet: Path, result_file: Path, out: IO[bytes]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.soak.soak_worker",
                self.emulator.base_url,
                str(self.state),
                str(self.root / "dlt"),
                str(parquet),
                str(result_file),
            ],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the kill takes any child too
        )

    def _arm_before(self, plan: RunPlan) -> None:
        emu = self.emulator
        # Per-run conditions start afresh; queued faults (status, drops, job faults) do not.
        emu.clear_upsert_body_limit()
        emu.clear_contact_errors()
        emu.backend.delay_seconds = plan.job_delay  # jobs stay pending this long
        if plan.job_delay:
            self._armed.append("jobs_pending")
            self.chaos.counts["jobs_pending"] += 1
        for kind, fault in plan.before:
            self._arm(kind, fault)

    def _watch(
        self, proc: subprocess.Popen[bytes], plan: RunPlan, started: float, base: int, log: Path
    ) -> bool:
        """Arm the plan's mid-run faults and kill as it says; whether the run was killed."""
        during = sorted(plan.during, key=lambda item: item[0])
        kill = plan.kill
        while proc.poll() is None:
            elapsed = time.monotonic() - started
            assert elapsed < RUN_DEADLINE_SECONDS, (
                f"a run still going after {RUN_DEADLINE_SECONDS:.0f} s (a hang): see {log}"
            )
            made = len(self.emulator.requests) - base
            while during and made >= during[0][0]:
                _, kind, fault = during.pop(0)
                self._arm(f"{kind} (during)", fault)
            if kill is not None and (
                (kill.after_seconds is not None and elapsed >= kill.after_seconds)
                or (kill.after_requests is not None and made >= kill.after_requests)
            ):
                time.sleep(kill.extra_ms / 1000)
                if proc.poll() is not None:
                    return False
                os.killpg(proc.pid, signal.SIGKILL)
                return True
            time.sleep(POLL_SECONDS)
        return False

    def _arm(self, kind: str, fault: Fault) -> None:
        self._armed.append(kind)
        self.chaos.arm(kind.removesuffix(" (during)"), fault, self.emulator)

    def calm(self) -> None:
        """No fault of any kind from now on."""
        emu = self.emulator
        emu.faults.clear()
        emu.backend.job_faults.clear()
        emu.clear_contact_errors()
        emu.clear_upsert_body_limit()
        emu.backend.delay_seconds = 0.0


def spy_on_accepted_contacts(emulator: Emulator) -> list[tuple[str, str]]:
    """(email, contact JSON) of every contact in an upsert the emulator accepted, in order.

    The emulator records requests without their bodies; this wraps the backend method the
    upsert handler calls once a body passed validation (a 202, or a ``drop_after``).
    """
    accepted: list[tuple[str, str]] = []
    enqueue = emulator.backend.enqueue_upsert

    def recording(contacts: list[dict[str, Any]], list_ids: list[str]) -> Any:
        accepted.extend((c.get("email", ""), json.dumps(c, sort_keys=True)) for c in contacts)
        return enqueue(contacts, list_ids)

    emulator.backend.enqueue_upsert = recording  # type: ignore[method-assign]
    return accepted


def emulator_contacts(emulator: Emulator, field_ids: dict[str, str]) -> dict[str, Values]:
    """email -> (first_name, last_name, score, plan) of every contact the emulator holds."""
    found = {}
    for contact in emulator.contacts():
        custom = contact.get("custom_fields") or {}
        found[contact["email"]] = (
            contact.get("first_name"),
            contact.get("last_name"),
            custom.get(field_ids["score"]),
            custom.get(field_ids["plan"]),
        )
    return found


def state_rows(state: Path, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    with StateStore.open(state, read_only=True) as store:
        return store.con.execute(sql, params or []).fetchall()


def figures(soak: Soak, chaos: Chaos, accepted: list[tuple[str, str]], rejects: int) -> str:
    results = soak.results
    requests = soak.emulator.requests
    statuses = Counter(r.status for r in requests)
    routes = Counter(r.route for r in requests)
    refused = Counter((r.route, r.status) for r in requests if r.status >= 400 or r.status == 0)
    versions = Counter(accepted)
    learned = state_rows(
        soak.state, "SELECT value FROM meta WHERE key = 'learned.max_request_bytes'"
    )
    lines = [
        f"soak: seed {SEED}, {len(results)} runs in {sum(r.seconds for r in results):.0f} s "
        f"({sum(r.killed for r in results)} killed, "
        f"{sum(1 for r in results if not r.killed and r.exit_code != 0)} failed, "
        f"{sum(1 for r in results if r.exit_code == 0)} completed)",
        "faults armed: " + ", ".join(f"{k} {n}" for k, n in sorted(chaos.counts.items())),
        f"requests: {len(requests)}; by status "
        + ", ".join(f"{s} {n}" for s, n in sorted(statuses.items()))
        + f"; upserts {routes[UPSERT]}",
        "refusals: "
        + ", ".join(f"{route} {status} x{n}" for (route, status), n in sorted(refused.items())),
        f"contacts sent (accepted upserts, incl. answers lost): {len(accepted)}; "
        f"distinct versions {len(versions)}; "
        f"sent more than once: {sum(n - 1 for n in versions.values() if n > 1)} sends of "
        f"{sum(1 for n in versions.values() if n > 1)} versions",
        f"rejects in the last load: {rejects}; learned body limit: "
        f"{learned[0][0] if learned else 'none'}",
        "runs:",
        *(r.line() for r in results),
    ]
    return "\n".join(lines)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_seeded_soak_of_faults_and_kills_ends_with_every_contacts_last_valid_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    warehouse = Warehouse(SEED, CONTACTS)
    chaos = Chaos(SEED + 1, lambda: list(warehouse.people))
    with Emulator(
        api_key=API_KEY,
        job_polls_until_done=0,  # jobs run on their own (after job_delay), polled or not
        rate_limits={UPSERT: RateLimit(25, 1.0)},
    ) as emu:
        field_ids = {name: emu.add_custom_field(name, kind) for name, kind in CUSTOM_FIELDS.items()}
        accepted = spy_on_accepted_contacts(emu)
        soak = Soak(emu, tmp_path, chaos)
        for _ in range(RUNS):
            result = soak.run(warehouse.snapshot(), chaos.plan())
            assert result.killed or result.exit_code is not None

        soak.calm()
        final = warehouse.snapshot(final=True)
        last = soak.run(final, RunPlan())
        assert last.exit_code == 0, f"the final clean run failed:\n{last.tail()}"
        leftover = emu.process_jobs()
        contacts = emulator_contacts(emu, field_ids)

        run_id = f"{last.load_ids[-1]}:contacts"
        rejected = state_rows(
            soak.state,
            "SELECT row_number, contact_key, reason FROM rejects WHERE run_id = ?",
            [run_id],
        )
        outcomes = dict(state_rows(soak.state, "SELECT contact_key, status FROM contact_status"))
        report = figures(soak, chaos, accepted, len(rejected))

        emu.clear_requests()
        again = soak.run(final, RunPlan())
        upserts_again = [r for r in emu.requests if r.route == UPSERT]

    with capsys.disabled():
        print("\n" + report)
    assert leftover == 0, "jobs were still pending after the final run"
    assert not set(KINDS) - set(chaos.counts), "the seed no longer exercises every fault"

    # The emulator holds exactly the last valid value of every contact, and nothing else.
    expected = {email: astuple(person) for email, person in final.expected_contacts.items()}
    wrong = sorted(e for e in expected if contacts.get(e) != expected[e])
    extra = sorted(set(contacts) - set(expected))
    assert not wrong and not extra, (
        f"{len(wrong)} contacts differ from their last valid row, e.g. "
        f"{[(e, contacts.get(e), expected[e]) for e in wrong[:2]]}; "
        f"{len(extra)} contacts the source never had valid: {extra[:5]}"
    )

    # Every invalid row of the last load is a reject of that load, with a reason.
    assert {row: key for row, key, _ in rejected} == final.refused_rows
    assert len(rejected) >= len(final.refused_rows)
    assert all(reason for _, _, reason in rejected)

    # Nothing the state calls accepted is missing; every contact of the source is accepted.
    accepted_keys = {k for k, status in outcomes.items() if status == "accepted"}
    assert {k.removeprefix("email:") for k in accepted_keys} <= set(contacts)
    not_accepted = {f"email:{e}" for e in final.expected_contacts} - accepted_keys
    assert not not_accepted, Counter(outcomes.get(k) for k in not_accepted)

    # And the state agrees with the emulator: the same snapshot again sends nothing.
    assert again.exit_code == 0, again.tail()
    assert upserts_again == []
