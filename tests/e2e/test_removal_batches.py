"""List removals and deletions sent in many requests: their 202s and their jobs' ends are
recorded in batches (``deletions.RECORD_EVERY``), every one of them, whatever raises.

Real dlt pipelines into the emulator over loopback HTTP; a small URL budget makes each
removal request carry two contact IDs, so ten contacts take five requests.
"""

from __future__ import annotations

from typing import Any

import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from sendgrid_destination import contact_ids, deletions
from sendgrid_destination.state import StateStore
from tests.e2e.conftest import contacts_table

REMOVE = "DELETE /v3/marketing/lists/{id}/contacts"
MAPPING: dict[str, Any] = {"email": "email", "first_name": "first_name"}


@pytest.fixture(autouse=True)
def two_ids_a_request(monkeypatch: pytest.MonkeyPatch) -> None:
    # http://127.0.0.1:<port>/v3/marketing/lists/<36>/contacts?contact_ids= is ~110
    # characters, an ID 36 and a comma: room for two.
    monkeypatch.setattr(contact_ids, "URL_BUDGET", 190)
    monkeypatch.setattr(deletions, "RECORD_EVERY", 3)


def _accepted_removals(emulator: Any) -> int:
    return sum(1 for r in emulator.requests if r.route == REMOVE and r.status == 202)


def _removals_left(state_path: Any) -> list[tuple[Any, ...]]:
    with StateStore.open(state_path, read_only=True) as store:
        return store.con.execute("SELECT status, count(*) FROM removals GROUP BY ALL").fetchall()


def test_a_move_of_more_removals_than_one_batch_takes_every_contact_out_and_records_all(
    emulator, destination, run, state_path
) -> None:
    old, new = emulator.add_list("Old"), emulator.add_list("New")
    run(contacts_table(10), destination(mapping=MAPPING, mode="membership", lists=["Old"]))

    run(contacts_table(10), destination(mapping=MAPPING, mode="membership", lists=["New"]))

    members = [c["list_ids"] for c in emulator.contacts()]
    assert len(members) == 10 and all(ids == [new] for ids in members), (old, members)
    assert _accepted_removals(emulator) == 5  # two IDs each: in two batches of records
    assert _removals_left(state_path) == []  # every job's end recorded


def test_removals_accepted_before_a_later_one_fails_are_recorded_and_never_sent_again(
    emulator, destination, run, state_path
) -> None:
    old, new = emulator.add_list("Old"), emulator.add_list("New")
    settings = {"mapping": MAPPING, "mode": "membership", "max_attempts": 1}
    run(contacts_table(10), destination(lists=["Old"], **settings))
    # The first two removal requests pass (one short of a batch of records), then the
    # removals fail until the faults are cleared.
    emulator.faults.add(REMOVE, action="delay", delay=0.0, times=2)
    emulator.faults.add(REMOVE, status=500, times=1000)
    with pytest.raises(PipelineStepFailed):
        run(contacts_table(10), destination(lists=["New"], **settings))
    assert _accepted_removals(emulator) == 2

    emulator.faults.clear()
    run(contacts_table(10), destination(lists=["New"], **settings))

    # 10 contacts in 5 requests over both runs: none of the 4 removed first was sent again.
    assert _accepted_removals(emulator) == 5
    assert all(c["list_ids"] == [new] for c in emulator.contacts()), old
    assert _removals_left(state_path) == []
