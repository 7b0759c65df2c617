"""Rows matching several contacts known to the state (one carries another contact's
identifier): refused, standing for none of them, whatever the order, the mode, the number of
such rows or identifiers, and alike in a plan and a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import pytest

from sendgrid_destination.dry_run import latest_plans
from sendgrid_destination.emulator import Emulator
from tests.e2e.conftest import (
    API_KEY,
    destination_for,
    flagged_contacts,
    rejects_of,
    run_summary,
)
from tests.e2e.test_identifier_rule import MAPPING, _rows


def _flagged_run(clock: Any, tmp: Path, mode: str, second: pa.Table) -> tuple[set[str], dict]:
    """Four contacts (user<i>, E<i>) sent by a merge table with a hard-delete column in
    ``mode``; then ``second`` (with ``deleted``): the emails left in SendGrid, the summary."""
    contacts = flagged_contacts("crm_id")
    state = tmp / mode / "sg.duckdb"
    with Emulator(api_key=API_KEY, clock=clock, job_polls_until_done=1) as emu:
        dest = destination_for(emu, state, mapping=MAPPING, mode=mode, max_delete_fraction=0.9)
        pipeline = dlt.pipeline(f"flags_{mode}", pipelines_dir=str(tmp / mode / "dlt"))
        rows = _rows(*[(f"user{i}@example.com", f"E{i}", f"First{i}") for i in range(4)])
        pipeline.run(
            contacts(rows.append_column("deleted", pa.array([False] * 4))), destination=dest
        )
        info = pipeline.run(contacts(second), destination=dest)
        emu.process_jobs()
        return {c["email"] for c in emu.contacts()}, run_summary(state, info)


def test_a_contacts_own_flagged_row_decides_alike_in_mirror_and_merge_beside_an_ambiguous_row(
    clock, tmp_path
) -> None:
    # user1's own (and last standing) row is flagged; another row carries user1's email and
    # user2's external_id (refused, standing for neither): user1's flag decides in both
    # modes (the ambiguous row's presence under user1's key once cancelled it in mirror).
    second = _rows(
        ("user0@example.com", "E0", "First0"),
        ("user1@example.com", "E1", "First1"),
        ("user1@example.com", "E2", "Mixed"),
        ("user2@example.com", "E2", "First2"),
        ("user3@example.com", "E3", "First3"),
    ).append_column("deleted", pa.array([False, True, False, False, False]))

    upsert_left, upsert_summary = _flagged_run(clock, tmp_path, "upsert", second)
    mirror_left, mirror_summary = _flagged_run(clock, tmp_path, "mirror", second)

    assert (upsert_summary["rejected"], mirror_summary["rejected"]) == (1, 1)
    assert "user1@example.com" not in upsert_left  # the flag deleted it
    assert mirror_left == upsert_left, (mirror_summary["deleted"], upsert_summary["deleted"])


@pytest.mark.parametrize("mode", ["upsert", "mirror"])
def test_an_ambiguous_row_flagged_for_deletion_is_refused_and_deletes_neither_contact(
    clock, tmp_path, mode
) -> None:
    others = [(f"user{i}@example.com", f"E{i}", f"First{i}") for i in (0, 1, 2, 3)]
    second = _rows(*others, ("user1@example.com", "E2", "Mixed"))
    flags = pa.array([False] * 4 + [True])

    left, summary = _flagged_run(clock, tmp_path, mode, second.append_column("deleted", flags))

    assert (summary["rejected"], summary["flagged"], summary["deleted"]) == (1, 0, 0)
    assert len(left) == 4


def test_several_ambiguous_rows_over_overlapping_contacts_keep_them_all_in_mirror(
    emulator, destination, run, state_path
) -> None:
    settings = {"mapping": MAPPING, "mode": "mirror", "max_delete_fraction": 0.9}
    rows = [(f"user{i}@example.com", f"E{i}", f"First{i}") for i in range(6)]
    run(_rows(*rows), destination(**settings))
    # users 1-3 have no row of their own: only rows mixing their identifiers.
    mixed = [
        *(rows[0], rows[4], rows[5]),
        ("user1@example.com", "E2", "M1"),
        ("user2@example.com", "E3", "M2"),
        ("user3@example.com", "E1", "M3"),
    ]

    second = run(_rows(*mixed), destination(**settings))

    summary = run_summary(state_path, second)
    assert (summary["rejected"], summary["deleted"], summary["left_source"]) == (3, 0, 0)
    assert len(emulator.contacts()) == 6


def test_an_ambiguous_row_between_two_rows_of_its_contact_neither_supersedes_nor_is_superseded(
    emulator, destination, run, state_path
) -> None:
    settings = {"mapping": MAPPING}
    rows = [(f"user{i}@example.com", f"E{i}", f"First{i}") for i in range(3)]
    run(_rows(*rows), destination(**settings))

    second = run(
        _rows(
            ("user1@example.com", "E1", "Early"),
            ("user1@example.com", "E2", "Mixed"),
            ("user1@example.com", "E1", "Late"),
        ),
        destination(**settings),
    )

    summary = run_summary(state_path, second)
    assert (summary["rejected"], summary["superseded"], summary["changed"]) == (1, 1, 1)
    assert emulator.contact("user1@example.com")["first_name"] == "Late"
    assert emulator.contact("user2@example.com")["first_name"] == "First2"


def test_a_plan_of_an_ambiguous_row_counts_what_the_run_then_does(
    emulator, destination, run, state_path
) -> None:
    settings = {"mapping": MAPPING, "mode": "mirror", "max_delete_fraction": 0.9}
    rows = [(f"user{i}@example.com", f"E{i}", f"First{i}") for i in range(4)]
    run(_rows(*rows), destination(**settings))
    second = [rows[0], rows[3], ("user1@example.com", "E2", "Mixed")]

    run(_rows(*second), destination(**settings, plan=True))
    planned = latest_plans(state_path)["contacts"]
    info = run(_rows(*second), destination(**settings))

    summary = run_summary(state_path, info)
    keys = ("rejected", "deleted", "left_source", "changed", "superseded")
    assert {k: planned[k] for k in keys} == {k: summary[k] for k in keys}
    assert (summary["rejected"], summary["deleted"]) == (1, 0)


def test_three_identifiers_an_ambiguous_row_whose_first_identifier_is_new_keeps_both(
    emulator, destination, run, state_path
) -> None:
    mapping = {**MAPPING, "phone_number_id": "phone"}
    settings = {"mapping": mapping, "mode": "mirror", "max_delete_fraction": 0.9}

    def rows(*r: tuple[str, str, str, str]) -> pa.Table:
        e, i, n, p = zip(*r, strict=True)
        return pa.table(
            {"email": list(e), "crm_id": list(i), "first_name": list(n), "phone": list(p)}
        )

    people = [(f"user{i}@example.com", f"E{i}", f"F{i}", f"+1415555010{i}") for i in range(4)]
    run(rows(*people), destination(**settings))
    # A new email, user1's external_id and user2's phone: matches users 1 and 2.
    second = run(
        rows(people[0], people[3], ("new@example.com", "E1", "Mixed", "+14155550102")),
        destination(**settings),
    )

    summary = run_summary(state_path, second)
    assert (summary["rejected"], summary["deleted"], summary["new"]) == (1, 0, 0)
    (reject,) = rejects_of(state_path)
    assert "belong to different contacts" in reject["reason"]
    assert len(emulator.contacts()) == 4
