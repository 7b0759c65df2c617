"""The ``--json`` totals add up: every row read is counted in one of them."""

from __future__ import annotations

from sendgrid_destination.summary import RunSummary
from sendgrid_destination.sync_runner import SyncReport


def test_rows_refused_before_and_unchanged_since_are_in_the_totals_so_the_rows_add_up() -> None:
    report = SyncReport("people", "run", "state.duckdb")
    report.summaries = [
        RunSummary("1:people", "people", rows_read=12, unchanged=10, waiting_for_change=2)
    ]

    totals = report.totals()

    assert totals["waiting_for_change"] == 2
    assert totals["unchanged"] + totals["waiting_for_change"] == totals["rows_read"]
