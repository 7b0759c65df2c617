"""Every 202 is recorded and its job followed, whatever raises on the main thread.

The main thread renders, packs and records while up to ``max_in_flight`` upserts are on the
wire; if it raises (here: the job file cannot be read any more half-way through the render),
the upserts already sent still answer, and their 202s must reach the state with their jobs
followed: otherwise their contacts would be sent again by the next run, and their jobs never
polled.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.config import SendGridConfiguration
from sendgrid_destination.contact_sync import ContactSync
from sendgrid_destination.emulator import Emulator
from sendgrid_destination.mapping import parse_mapping
from sendgrid_destination.source_rows import SourceRows
from sendgrid_destination.state import StateStore
from tests.e2e.conftest import API_KEY, DEFAULT_MAPPING, contacts_table, state_rows, upserts

PER_REQUEST = 50
BATCH_ROWS = 100


class _DiskGoneHalfway(SourceRows):
    """A job file whose render pass fails on its third batch (the plan's pass reads it all).

    Before failing it waits until ``on_the_wire()`` holds, so the failure always lands while
    bodies are in flight, however slowly the machine schedules the upsert threads.
    """

    def __init__(self, path: Path, on_the_wire: Callable[[], bool]) -> None:
        self._file = SourceRows.from_file(str(path), ["email", "first_name"], BATCH_ROWS)
        super().__init__(self._file.schema)
        self._reads = 0
        self._on_the_wire = on_the_wire

    def batches(self) -> Iterator[tuple[pa.RecordBatch, int]]:
        self._reads += 1
        for n, item in enumerate(self._file.batches()):
            if self._reads > 1 and n == 2:
                deadline = time.monotonic() + 10.0
                while not self._on_the_wire() and time.monotonic() < deadline:
                    time.sleep(0.01)
                raise OSError("the job file went away")
            yield item


def test_upserts_in_flight_when_the_main_thread_raises_are_recorded_and_their_jobs_followed(
    clock, tmp_path: Path
) -> None:
    job_file = tmp_path / "contacts.parquet"
    pq.write_table(contacts_table(5 * BATCH_ROWS), job_file)
    config = SendGridConfiguration(
        api_key=API_KEY,
        mapping=DEFAULT_MAPPING,
        max_contacts_per_request=PER_REQUEST,
        max_in_flight=2,
        job_poll_interval=1.0,
    )
    with Emulator(api_key=API_KEY, clock=clock, job_polls_until_done=1) as emu:
        # Real seconds: the bodies of the second batch are still on the wire when the third
        # batch's read fails.
        slow = emu.faults.add("PUT /v3/marketing/contacts", action="delay", delay=0.5, times=10)
        state_path = tmp_path / "state.duckdb"
        with (
            StateStore.open(state_path) as store,
            SendGridClient(API_KEY, base_url=emu.base_url, clock=clock) as client,
        ):
            sync = ContactSync(
                config, parse_mapping(DEFAULT_MAPPING), client, store, clock, "r1", "contacts"
            )
            with pytest.raises(OSError, match="went away"):
                # The third body has reached the emulator (and sleeps there) when the read fails.
                sync.run(_DiskGoneHalfway(job_file, lambda: slow.times <= 10 - 3))
        accepted = [r for r in upserts(emu) if r.status == 202]
        job_ids = sorted(str(job["id"]) for job in emu.jobs())

    # Two batches of 100 rows fill three bodies of 50 (the fourth was still open, so never
    # sent); the last two were on the wire when the read failed: all three are recorded.
    assert len(accepted) == 3
    recorded = state_rows(state_path, "SELECT job_id, status FROM jobs ORDER BY created_at")
    assert sorted(job for job, _ in recorded) == job_ids
    assert {status for _, status in recorded} == {"completed"}
    assert state_rows(state_path, "SELECT count(*) FROM contacts") == [(3 * PER_REQUEST,)]
