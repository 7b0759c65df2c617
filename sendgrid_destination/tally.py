"""The run's counters, bumped in one place: each event of a sync is one method here.

``Tally(run_id, stream)`` builds a ``RunSummary``; the sync reports what happened (the plan's
counts, rejects, renders, held-back contacts, accepted requests, settled jobs) and never touches
a counter itself. Reasons go through ``redact``: they become log lines and summary keys.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from sendgrid_destination.client import redact
from sendgrid_destination.import_jobs import JobsOutcome
from sendgrid_destination.plan import PlanCounts
from sendgrid_destination.summary import RunSummary


class Tally:
    def __init__(self, run_id: str, stream: str) -> None:
        self.summary = RunSummary(run_id, stream)

    def planned(self, counts: PlanCounts) -> None:
        s = self.summary
        s.rows_read += counts.rows_read
        s.superseded += counts.superseded
        s.unchanged += counts.unchanged

    def rendered(self, to_send: pa.Table, unchanged: int) -> None:
        new = _true_count(to_send["is_new"])
        self.summary.new += new
        self.summary.changed += to_send.num_rows - new
        self.summary.unchanged += unchanged

    def held_back(self, contacts: int) -> None:
        self.summary.deferred += contacts

    def accepted(self, contacts: int, body_bytes: int) -> None:
        self.summary.requests += 1
        self.summary.bytes_sent += body_bytes
        self.summary.contacts_sent += contacts

    def rejected(self, rejects: pa.Table, *, by_api: bool) -> None:
        if rejects.num_rows == 0:
            return
        rows = int(pc.count_distinct(rejects["row_number"]).as_py())
        if by_api:
            self.summary.rejected_by_api += rows
        else:
            self.summary.rejected += rows
        counts = rejects.group_by("reason").aggregate([("row_number", "count")])
        for reason, n in zip(
            counts["reason"].to_pylist(), counts["row_number_count"].to_pylist(), strict=True
        ):
            self.summary.rejected_by_reason[redact(str(reason))] += int(n)

    def jobs_settled(self, outcome: JobsOutcome) -> None:
        self.summary.jobs.update(outcome.statuses)
        self.summary.failed_in_jobs += outcome.failed
        self.summary.failed_by_reason.update(outcome.failed_by_reason)
        self.summary.unconfirmed += outcome.unconfirmed


def _true_count(mask: pa.Array | pa.ChunkedArray) -> int:
    return int(pc.sum(mask).as_py() or 0)
