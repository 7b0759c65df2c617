"""The ``--json`` totals add up, and a load's summaries are all found: every row read is
counted in one total, every table of a load has its summary."""

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


def test_every_table_of_one_load_has_its_summary_however_many_tables_it_had(tmp_path) -> None:
    from sendgrid_destination.state import StateStore
    from sendgrid_destination.state.reports import load_summaries

    with StateStore.open(tmp_path / "state.duckdb") as store:
        for table in range(12):
            store.start_run(f"100.5:t{table}", f"t{table}")
            store.finish_run(f"100.5:t{table}", {"stream": f"t{table}"})
        store.start_run("99.1:t0", "t0")
        store.finish_run("99.1:t0", {"stream": "earlier"})

        found = load_summaries(store, "100.5")

    assert sorted(s["stream"] for s in found) == sorted(f"t{t}" for t in range(12))
