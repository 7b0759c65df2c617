"""Jobs that completed are recorded together, and never lost to an interrupted wait.

``JobTracker`` records the jobs that failed no contact ``RECORD_EVERY`` at a time in one
transaction (``StateStore.record_job_outcomes``), and all of them before ``wait`` returns or
raises. The jobs come from upserts the emulator accepted over HTTP on loopback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.clock import FakeClock
from sendgrid_destination.import_jobs import RECORD_EVERY, JobTracker
from sendgrid_destination.state import StateStore


class _InterruptedClock:
    """The tracker's clock: a signal arrives during its first sleep between polling rounds."""

    def __init__(self, clock: FakeClock) -> None:
        self._clock = clock

    def now(self) -> float:
        return self._clock.now()

    def sleep(self, seconds: float) -> None:
        raise KeyboardInterrupt


def _sent(emails: list[str], ids: list[str | None] | None = None) -> pa.Table:
    n = len(emails)
    return pa.table(
        {
            "contact_key": [f"email:{e}" for e in emails],
            "content_hash": pa.array([1] * n, pa.uint64()),
            "fingerprint": pa.array([1] * n, pa.uint64()),
            "is_new": [True] * n,
            "ids": pa.array(ids or [None] * n, pa.string()),
            "list_scope": [""] * n,
        }
    )


def _send(client: SendGridClient, store: StateStore, emails: list[str], **kw: Any) -> str:
    body = json.dumps({"contacts": [{"email": e} for e in emails]}).encode()
    job_id = client.upsert_contacts(body)
    store.record_sent(
        run_id="r1", stream="s", job_id=job_id, contacts=_sent(emails, **kw), body_bytes=len(body)
    )
    return job_id


def _statuses(store: StateStore) -> dict[str, str]:
    return dict(store.con.execute("SELECT job_id, status FROM jobs").fetchall())


def _contacts(store: StateStore) -> dict[str, str]:
    rows = store.con.execute("SELECT contact_key, status FROM contact_status").fetchall()
    return dict(rows)


@pytest.fixture
def quick_emu(start_emulator: Callable[..., Any]) -> Any:
    return start_emulator(job_polls_until_done=0)


def test_completed_jobs_are_recorded_before_a_wait_interrupted_by_a_signal_raises(
    tmp_path: Path, quick_emu: Any, make_client: Callable[..., SendGridClient], clock: FakeClock
) -> None:
    client = make_client(quick_emu.base_url)
    with StateStore.open(tmp_path / "state.duckdb") as store:
        done = [_send(client, store, [f"a{i}@x.co"]) for i in range(3)]
        quick_emu.fault_next_jobs(1, import_status="pending_forever")
        stuck = _send(client, store, ["stuck@x.co"])
        tracker = JobTracker(client, store, _InterruptedClock(clock), poll_interval=1.0)

        with pytest.raises(KeyboardInterrupt):
            tracker.wait([*done, stuck], "r1")

        assert _statuses(store) == {**dict.fromkeys(done, "completed"), stuck: "pending"}
        assert _contacts(store) == {
            "email:a0@x.co": "accepted",
            "email:a1@x.co": "accepted",
            "email:a2@x.co": "accepted",
            "email:stuck@x.co": "sent",
        }


def test_more_completed_jobs_than_one_batch_all_end_recorded_with_their_counts(
    tmp_path: Path, quick_emu: Any, make_client: Callable[..., SendGridClient], clock: FakeClock
) -> None:
    client = make_client(quick_emu.base_url)
    with StateStore.open(tmp_path / "state.duckdb") as store:
        jobs = [_send(client, store, [f"b{i}@x.co", f"c{i}@x.co"]) for i in range(RECORD_EVERY + 3)]
        tracker = JobTracker(client, store, clock, poll_interval=1.0)

        outcome = tracker.wait(jobs, "r1")

        assert outcome.statuses == {"completed": RECORD_EVERY + 3}
        counts = store.con.execute(
            "SELECT status, created_count, errored_count, contacts_status, count(*) FROM jobs "
            "GROUP BY ALL"
        ).fetchall()
        assert counts == [("completed", 2, 0, "accepted", RECORD_EVERY + 3)]
        assert set(_contacts(store).values()) == {"accepted"}


def test_jobs_recorded_together_keep_what_sendgrid_holds_for_contacts_sent_with_several_ids(
    tmp_path: Path, quick_emu: Any, make_client: Callable[..., SendGridClient], clock: FakeClock
) -> None:
    client = make_client(quick_emu.base_url)
    with StateStore.open(tmp_path / "state.duckdb") as store:
        plain = _send(client, store, ["p@x.co"])
        with_ids = _send(
            client, store, ["q@x.co"], ids=['{"email": "q@x.co", "external_id": "crm-9"}']
        )

        JobTracker(client, store, clock, poll_interval=1.0).wait([plain, with_ids], "r1")

        identities = store.con.execute(
            "SELECT contact_key, email, external_id FROM identities"
        ).fetchall()
        assert identities == [("email:q@x.co", "q@x.co", "crm-9")]
