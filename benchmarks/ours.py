"""Our path, from RecordBatch to request bodies, driven the way ``ContactSync`` drives it.

Contract: ``OursPath(state_path)`` opens a ``StateStore`` on that file for its lifetime (use it
as a context manager); each ``run_pass(batches)`` treats the batches as one job file, as the
sync does: the plan over all rows (``Plan.build``: check, last row of each key, one join with
the state), then per batch ``Plan.render`` and ``Packer.add``, and the last body flushed at
the end. Each body is handed to the pass's ``on_body`` callback and then "accepted": its
hashes are recorded with ``record_sent``, as after a 202, with the pass's counters as the
attempt's progress; once every body is out, the pass's jobs are marked completed
(``record_job_outcomes``), as the sync records them
when it follows its jobs after sending, and the store is checkpointed, as it is when the sync
closes it, so that a second pass over the same rows finds them unchanged. The recording, the
outcomes and the checkpoint are timed apart (``record_seconds``) so the headline can be the
path alone; no network is involved.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import pyarrow as pa
import pyarrow.compute as pc

from benchmarks import data
from benchmarks.stats import BodySink, PassStats, mark
from sendgrid_destination.contact_model import MAX_CONTACTS_PER_REQUEST, MAX_REQUEST_BYTES
from sendgrid_destination.contact_sql import ContactSql
from sendgrid_destination.mapping import Binding, bind_mapping, parse_mapping
from sendgrid_destination.packing import Body, Packer, envelope_prefix
from sendgrid_destination.plan import Plan
from sendgrid_destination.source_rows import SourceRows
from sendgrid_destination.state import StateStore
from sendgrid_destination.summary import RunSummary


def bindings(schema: pa.Schema) -> list[Binding]:
    """The benchmark mapping bound to the data's schema, with the fixed custom field IDs."""
    return bind_mapping(parse_mapping(data.MAPPING), schema, data.CUSTOM_TYPES, data.CUSTOM_IDS)


class OursPath:
    """One state file, any number of passes (see the module docstring)."""

    def __init__(
        self,
        state_path: Path,
        *,
        max_bytes: int = MAX_REQUEST_BYTES,
        max_contacts: int = MAX_CONTACTS_PER_REQUEST,
    ) -> None:
        self.state_path = state_path
        self.max_bytes = max_bytes
        self.max_contacts = max_contacts
        self._opened = StateStore.open(state_path)
        self.store = self._opened.__enter__()
        self._passes = 0
        self._jobs: list[tuple[str, int]] = []  # accepted, not yet finished
        self._sent = RunSummary("", data.STREAM)  # the pass's counters, as the sync's tally

    def __enter__(self) -> OursPath:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._opened.__exit__(exc_type, exc, tb)

    def run_pass(
        self,
        batches: Sequence[pa.RecordBatch],
        on_body: BodySink | None = None,
        *,
        keep_rejects: bool = False,
    ) -> PassStats:
        self._passes += 1
        self._sent = RunSummary(f"bench-{self._passes}", data.STREAM)
        stats = PassStats()
        prefix = envelope_prefix([])
        start = mark()
        packer = Packer(prefix, self.max_bytes, self.max_contacts)
        if batches:
            sql = ContactSql(bindings(batches[0].schema))
            with Plan.build(
                self.store, sql, data.STREAM, f"bench-{self._passes}", _InMemoryRows(batches)
            ) as plan:
                stats.add_time("plan", start)
                self._count_rejects(plan.rejects, stats, keep_rejects)
                clock = mark()  # a state write, as the sync makes it
                self.store.invalid_rows.remember(
                    f"bench-{self._passes}", data.STREAM, plan.invalid_rows
                )
                stats.add_time("record", clock)
                for batch in batches:
                    if plan.counts.to_render:
                        for body in self._bodies(plan, packer, batch, stats):
                            self._accept(body, stats, on_body)
                    stats.rows += batch.num_rows
        clock = mark()
        last = packer.flush()
        stats.add_time("pack", clock)
        if last is not None:
            self._accept(last, stats, on_body)
        self._finish_jobs(stats)
        stats.finish(start)
        return stats

    def _finish_jobs(self, stats: PassStats) -> None:
        """The pass's jobs completed, recorded as the sync records them once its bodies are
        sent; then the checkpoint the sync's store makes when it closes (counted here so that
        every size pays for writing its contacts into the file)."""
        started = mark()
        self.store.record_job_outcomes(
            [_completed_job(job_id, contacts) for job_id, contacts in self._jobs]
        )
        self._jobs = []
        self.store.checkpoint()
        stats.add_time("record", started)

    def _count_rejects(self, rejects: pa.Table, stats: PassStats, keep: bool) -> None:
        if rejects.num_rows:
            rejected = pc.unique(rejects["row_number"])
            stats.rejected_rows += len(rejected)
            if keep:
                stats.rejected_row_numbers += rejected.to_pylist()

    def _bodies(
        self, plan: Plan, packer: Packer, batch: pa.RecordBatch, stats: PassStats
    ) -> list[Body]:
        clock = mark()
        rendered = plan.render(batch, stats.rows)
        clock = stats.add_time("render", clock)
        bodies = packer.add(rendered.to_send)
        stats.add_time("pack", clock)
        return bodies

    def _accept(self, body: Body, stats: PassStats, on_body: BodySink | None) -> None:
        stats.requests += 1
        stats.body_bytes += len(body.data)
        stats.contacts += body.contact_count
        if on_body is not None:
            on_body(body.data, body.contact_count)
        started = mark()
        job_id = f"bench-{self._passes}-{stats.requests}"
        # The attempt's counters ride with each recording, as the sync's tally does.
        self._sent.requests += 1
        self._sent.contacts_sent += body.contact_count
        self._sent.bytes_sent += len(body.data)
        self.store.record_sent(
            run_id=f"bench-{self._passes}",
            stream=data.STREAM,
            job_id=job_id,
            contacts=body.contacts,
            body_bytes=len(body.data),
            progress=self._sent.as_dict(),
        )
        self._jobs.append((job_id, body.contact_count))
        stats.add_time("record", started)


def _completed_job(job_id: str, contacts: int) -> dict[str, object]:
    return {
        "id": job_id,
        "status": "completed",
        "created_count": contacts,
        "updated_count": 0,
        "errored_count": 0,
        "errors_url": None,
    }


class _InMemoryRows(SourceRows):
    """Batches already in memory, numbered in order, as one job file's rows."""

    def __init__(self, batches: Sequence[pa.RecordBatch]) -> None:
        super().__init__(batches[0].schema)
        self._batches = batches

    def batches(self) -> Iterator[tuple[pa.RecordBatch, int]]:
        first = 0
        for batch in self._batches:
            yield batch, first
            first += batch.num_rows
