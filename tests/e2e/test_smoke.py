"""The shortest path through the product: rows in, contacts in the emulator, nothing resent."""

from __future__ import annotations

from tests.e2e.conftest import contacts_table, run_summary, upserts


def test_rows_become_contacts_and_an_unchanged_rerun_sends_nothing(
    emulator, destination, run, state_path
) -> None:
    data = contacts_table(50)
    first = run(data, destination())
    assert len(emulator.contacts()) == 50
    assert emulator.contact("user7@example.com")["first_name"] == "First7"
    assert run_summary(state_path, first)["contacts_sent"] == 50
    sent_before = len(upserts(emulator))

    second = run(data, destination())
    assert len(upserts(emulator)) == sent_before
    assert run_summary(state_path, second)["unchanged"] == 50


def test_the_run_summary_is_reachable_from_the_dlt_load_info(emulator, destination, run) -> None:
    import dlt

    from sendgrid_destination import run_summaries

    info = run(contacts_table(10), destination())
    summaries = run_summaries(dlt.current.pipeline(), info)
    assert [(s.stream, s.rows_read, s.contacts_sent) for s in summaries] == [("contacts", 10, 10)]
