"""Mirror mode, ``replace`` and ``hard_delete``: one deletion mechanism, deleting only the
contacts this sync created, within the safety limits, and refusing sources that are not whole.

Real dlt pipelines into the emulator over loopback HTTP. "Someone else" writes contacts
through the API with a plain client, as another SendGrid user would.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import pytest
from dlt.common.storages.load_package import PackageStorage
from dlt.pipeline.exceptions import PipelineStepFailed

from sendgrid_destination import sendgrid
from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.emulator import Emulator
from sendgrid_destination.errors import ConfigurationError, DeletionLimitError
from sendgrid_destination.state import StateStore
from tests.e2e.conftest import (
    API_KEY,
    cause_of,
    cli,
    destination_for,
    flagged_contacts,
    run_summary,
    upserts,
)

DELETE = "DELETE /v3/marketing/contacts"
REMOVE = "DELETE /v3/marketing/lists/{id}/contacts"
MAPPING: dict[str, Any] = {"email": "email", "first_name": "first_name"}


def people(indexes: list[int], **columns: list[Any]) -> pa.Table:
    data: dict[str, list[Any]] = {
        "email": [f"user{i}@example.com" for i in indexes],
        "first_name": [f"First{i}" for i in indexes],
    }
    data.update(columns)
    return pa.table(data)


def emails(emulator: Emulator) -> set[str]:
    return {c["email"] for c in emulator.contacts()}


def requests_to(emulator: Emulator, route: str) -> list[Any]:
    return [r for r in emulator.requests if r.route == route]


def created_elsewhere(emulator: Emulator, *addresses: str, list_ids: list[str] = ()) -> None:
    """Another SendGrid user creates these contacts (through the API, not this sync)."""
    client = SendGridClient(emulator.api_key, base_url=emulator.base_url)
    body = {"contacts": [{"email": a} for a in addresses]}
    if list_ids:
        body["list_ids"] = list(list_ids)
    client.upsert_contacts(json.dumps(body).encode())
    emulator.process_jobs()


@pytest.fixture
def mirror(destination: Callable[..., sendgrid]) -> Callable[..., sendgrid]:
    def make(**overrides: Any) -> sendgrid:
        return destination(mapping=MAPPING, mode="mirror", **overrides)

    return make


def test_mirror_deletes_exactly_the_contacts_whose_rows_left_and_never_anyone_elses(
    emulator, mirror, run, state_path
) -> None:
    created_elsewhere(emulator, "outsider@example.com", "user99@example.com")
    run(people(list(range(40))), mirror())
    # user99 already existed in SendGrid: the sync's upsert updated it, it did not create it.
    run(people([*range(40), 99]), mirror())
    emulator.clear_requests()

    third = run(people([*range(2, 40)]), mirror())  # user0, user1 and user99 left

    assert emails(emulator) == {
        "outsider@example.com",
        "user99@example.com",
        *(f"user{i}@example.com" for i in range(2, 40)),
    }
    assert [r.status for r in requests_to(emulator, DELETE)] == [202]
    assert upserts(emulator) == []
    summary = run_summary(state_path, third)
    assert (summary["left_source"], summary["deleted"], summary["not_deleted"]) == (3, 2, 1)
    assert summary["removal_jobs"] == {"completed": 1}


def test_a_contact_deleted_by_mirror_is_created_again_when_its_row_comes_back(
    emulator, mirror, run, state_path
) -> None:
    run(people(list(range(20))), mirror())
    run(people(list(range(1, 20))), mirror())
    assert "user0@example.com" not in emails(emulator)
    emulator.clear_requests()

    back = run(people(list(range(20))), mirror())

    assert "user0@example.com" in emails(emulator)
    assert run_summary(state_path, back)["new"] == 1


def test_the_safety_limit_stops_a_half_deletion_before_any_delete_then_force_allows_it_once(
    emulator, mirror, run, state_path
) -> None:
    run(people(list(range(20))), mirror())
    emulator.clear_requests()

    with pytest.raises(PipelineStepFailed) as failed:
        run(people([*range(10), 20]), mirror())  # 10 of 20 left (and one is new)

    message = str(cause_of(failed.value, DeletionLimitError))
    assert "10 contact(s)" in message and "50%" in message and "force_deletes" in message
    assert "its own table name" in message  # another pipeline's table of the same name?
    assert "`dlt -y pipeline e2e abort-packages`" in message  # the source was wrong?
    assert requests_to(emulator, DELETE) == []
    assert upserts(emulator) == []  # it stopped before the load's upserts too
    assert len(emails(emulator)) == 20

    # dlt keeps the package pending; the next load with force_deletes completes it.
    run(people([*range(10), 20]), mirror(force_deletes=True))

    assert emails(emulator) == {f"user{i}@example.com" for i in [*range(10), 20]}


def test_max_deletes_caps_the_count_whatever_the_fraction(emulator, mirror, run) -> None:
    run(people(list(range(100))), mirror())

    with pytest.raises(PipelineStepFailed) as failed:
        run(people(list(range(97))), mirror(max_deletes=2))

    assert "max_deletes = 2" in str(cause_of(failed.value, DeletionLimitError))
    assert requests_to(emulator, DELETE) == []


def test_many_deletions_go_in_urls_under_eight_kilobytes(emulator, mirror, run) -> None:
    run(people(list(range(600))), mirror())
    emulator.clear_requests()

    run(people(list(range(100))), mirror(force_deletes=True))

    deletes = requests_to(emulator, DELETE)
    assert len(deletes) >= 3 and all(r.status == 202 for r in deletes)
    assert all(len(r.path) <= 8_000 for r in deletes)
    assert len(emails(emulator)) == 100


def test_membership_mode_takes_contacts_whose_rows_left_out_of_the_lists_without_deleting(
    emulator, destination, run, state_path
) -> None:
    vip = emulator.add_list("VIP")
    dest = destination(mapping=MAPPING, mode="membership", lists=["VIP"], max_delete_fraction=0.2)
    run(people(list(range(10))), dest)
    emulator.clear_requests()

    second = run(people(list(range(8))), dest)

    assert len(emails(emulator)) == 10
    assert vip not in emulator.contact("user9@example.com")["list_ids"]
    assert vip in emulator.contact("user7@example.com")["list_ids"]
    assert requests_to(emulator, DELETE) == []
    summary = run_summary(state_path, second)
    assert (summary["left_source"], summary["list_removals"], summary["deleted"]) == (2, 2, 0)


def test_a_contact_whose_removal_from_one_list_failed_is_removed_by_the_next_load(
    emulator, destination, run, state_path
) -> None:
    # A contact that left was in two lists: one removal job per list. The first fails, the
    # second completes; the contact used to be forgotten with it, and stayed in the first list.
    first, second = emulator.add_list("L1"), emulator.add_list("L2")
    dest = destination(
        mapping=MAPPING, mode="membership", lists=["L1", "L2"], max_delete_fraction=0.9
    )
    run(people([0, 1, 2]), dest)
    emulator.fail_next_jobs(1, "boom")

    failed = run(people([1, 2]), dest)

    assert run_summary(state_path, failed)["removal_jobs"] == {"failed": 1, "completed": 1}
    assert len(emulator.contact("user0@example.com")["list_ids"]) == 1
    emulator.clear_requests()

    again = run(people([1, 2]), dest)

    assert emulator.contact("user0@example.com")["list_ids"] == []
    assert run_summary(state_path, again)["list_removals"] == 1
    assert sorted(
        {first, second} & {r.path.split("/")[4] for r in requests_to(emulator, REMOVE)}
    ) in (
        [first],
        [second],
    )
    emulator.clear_requests()
    run(people([1, 2]), dest)  # nothing left to do, nothing sent
    assert requests_to(emulator, REMOVE) == []


@pytest.mark.parametrize("job_order", ["fifo", "reverse"])
def test_an_upsert_by_another_table_waits_for_a_deletion_in_flight_of_the_same_contact(
    clock, tmp_path, run, job_order
) -> None:
    # Table a (mirror) deletes user0 and stops waiting before SendGrid ends the job; table b
    # then sends user0. SendGrid keeps no order between jobs: a deletion landing after b's
    # upsert undid it for good (b's state said accepted, so no rerun sent it again).
    state = tmp_path / "state" / "sg.duckdb"
    settings: dict[str, Any] = {"mapping": MAPPING, "job_wait_timeout": 1_000}
    with Emulator(api_key=API_KEY, clock=clock, job_delay_seconds=100, job_order=job_order) as emu:
        run(
            people(list(range(20))),
            destination_for(emu, state, mode="mirror", **settings),
            name="a",
        )
        short = {**settings, "job_wait_timeout": 10}
        run(
            people(list(range(1, 20))),
            destination_for(emu, state, mode="mirror", **short),
            name="a",
        )
        with StateStore.open(state, read_only=True) as store:
            assert store.removals.counts() == {"sent delete": 1}

        b = run(people([0]), destination_for(emu, state, **settings), name="b")
        emu.process_jobs()

        assert "user0@example.com" in emails(emu)
        summary = run_summary(state, b, "b")
        # b followed a's deletion to its end before planning: user0 went as a new contact.
        # The job is a's: b's summary says so in a note, not in its own removal_jobs.
        assert (summary["new"], summary["removal_jobs"]) == (1, {})
        assert any("1 deletion job(s) of table 'a'" in n for n in summary["notes"])
        emu.clear_requests()
        run(people([0]), destination_for(emu, state, **settings), name="b")
        assert upserts(emu) == [] and "user0@example.com" in emails(emu)


@pytest.mark.parametrize("job_order", ["fifo", "reverse"])
@pytest.mark.parametrize("mode", ["mirror", "membership"])
def test_a_deferred_change_of_a_contact_whose_row_then_left_is_dropped_not_sent(
    clock, tmp_path, run, job_order, mode
) -> None:
    # user0's change waits for the job of its previous one; its row then leaves. Sending the
    # waiting change in the load that deletes user0 (or takes it out of the list) raced the
    # removal: SendGrid keeps no order between jobs, and the upsert brought it back.
    state = tmp_path / "state" / "sg.duckdb"
    settings: dict[str, Any] = {
        "mapping": MAPPING,
        "mode": mode,
        "force_deletes": True,
        "job_wait_timeout": 5,
        "lists": ["L"],
        "create_missing_lists": True,
    }
    with Emulator(api_key=API_KEY, clock=clock, job_order=job_order) as emu:
        dest = destination_for(emu, state, **settings)
        run(people(list(range(5))), dest)
        emu.backend.delay_seconds = 1_000  # from now on each job takes 1,000 s
        run(people(list(range(5)), first_name=["v1", "x", "x", "x", "x"]), dest)
        deferring = run(people(list(range(5)), first_name=["v2", "x", "x", "x", "x"]), dest)
        assert run_summary(state, deferring)["deferred"] == 1
        clock.advance(2_000)  # v1's job has ended; v2 still waits in the state

        left = run(people(list(range(1, 5)), first_name=["x"] * 4), dest)
        emu.process_jobs()  # SendGrid runs what it accepted, in its order

        summary = run_summary(state, left)
        assert summary["contacts_sent"] == 0 and summary["left_source"] == 1
        assert any("1 deferred change(s)" in note for note in summary["notes"])
        user0 = emu.contact("user0@example.com")
        if mode == "mirror":  # this sync created it: deleted, and not created again
            assert user0 is None
        else:  # taken out of the list, its last accepted values kept
            assert user0 is not None and user0["list_ids"] == []
            assert user0["first_name"] == "v1"
        with StateStore.open(state, read_only=True) as store:
            assert store.deferred("contacts").num_rows == 0


@pytest.mark.parametrize("mode", ["mirror", "membership"])
def test_a_deferred_change_of_a_contact_whose_row_left_but_that_is_not_removed_is_still_sent(
    clock, tmp_path, run, mode
) -> None:
    # user0 was made by another sync and is in no list of this one: its row leaving removes
    # nothing (the table forgets it), so its deferred change races nothing and is sent.
    state = tmp_path / "state" / "sg.duckdb"
    with Emulator(api_key=API_KEY, clock=clock) as emu:
        other = destination_for(emu, tmp_path / "other" / "sg.duckdb", mapping=MAPPING)
        run(people([0]), other, pipeline="other")
        emu.process_jobs()
        settings = {"mapping": MAPPING, "mode": mode, "force_deletes": True, "job_wait_timeout": 5}
        dest = destination_for(emu, state, **settings)
        run(people(list(range(5))), dest)
        emu.backend.delay_seconds = 1_000
        run(people(list(range(5)), first_name=["v1", "x", "x", "x", "x"]), dest)
        run(people(list(range(5)), first_name=["v2", "x", "x", "x", "x"]), dest)
        clock.advance(2_000)

        left = run(people(list(range(1, 5)), first_name=["x"] * 4), dest)
        emu.process_jobs()

        assert run_summary(state, left)["contacts_sent"] == 1
        assert emu.contact("user0@example.com")["first_name"] == "v2"


def test_a_tables_removal_jobs_still_pending_are_counted_with_those_of_earlier_loads(
    clock, tmp_path, run
) -> None:
    state = tmp_path / "state" / "sg.duckdb"
    settings: dict[str, Any] = {"mapping": MAPPING, "mode": "mirror", "job_wait_timeout": 10}
    with Emulator(api_key=API_KEY, clock=clock, job_delay_seconds=100) as emu:
        run(people(list(range(20))), destination_for(emu, state, **settings))
        emu.process_jobs()
        run(people(list(range(1, 20))), destination_for(emu, state, **settings))  # user0 goes

        third = run(people(list(range(2, 20))), destination_for(emu, state, **settings))

        # user0's deletion (the last load's) and user1's (this load's) are both pending.
        assert run_summary(state, third)["removal_jobs"] == {"pending": 2}


@pytest.mark.parametrize("fault", ["job_forgotten", "job_failed"])
def test_a_contact_whose_deletion_had_an_unknown_outcome_is_sent_again_when_its_row_returns(
    emulator, mirror, run, state_path, fault
) -> None:
    run(people(list(range(10))), mirror())
    if fault == "job_forgotten":  # the deletion ran, but its status answers 404
        emulator.fault_next_jobs(1, import_status="pending_then_not_found", pending_polls=0)
    else:  # the job says failed: SendGrid may still have deleted some of its contacts
        emulator.fail_next_jobs(1, "Something went wrong")
    run(people(list(range(1, 10))), mirror())
    emulator.process_jobs()  # SendGrid runs what it accepted, whatever its status said
    if fault == "job_failed":  # it was deleted after all
        client = SendGridClient(emulator.api_key, base_url=emulator.base_url)
        client.delete_contacts([emulator.contact("user0@example.com")["id"]])
        emulator.process_jobs()
    assert "user0@example.com" not in emails(emulator)

    back = run(people(list(range(10))), mirror())

    summary = run_summary(state_path, back)
    assert (summary["retried"], summary["unchanged"], summary["deleted"]) == (1, 9, 0)
    assert emulator.contact("user0@example.com")["first_name"] == "First0"
    emulator.clear_requests()
    run(people(list(range(10))), mirror())
    assert upserts(emulator) == [] and requests_to(emulator, DELETE) == []


def _two_tables(a: list[int], b: list[int]) -> Any:
    @dlt.source
    def crm() -> Any:
        yield dlt.resource(people(a), name="leads")
        yield dlt.resource(people(b), name="customers")

    return crm()


def _loaded_first(monkeypatch: pytest.MonkeyPatch, table: str) -> None:
    """dlt loads a package's job files in the order its folder lists them: ``table``'s first."""
    listed = PackageStorage.list_new_jobs
    monkeypatch.setattr(
        PackageStorage,
        "list_new_jobs",
        lambda self, load_id: sorted(
            listed(self, load_id), key=lambda f: not Path(f).name.startswith(f"{table}.")
        ),
    )


@pytest.mark.parametrize("first", ["leads", "customers"])
def test_a_contact_moving_between_two_mirrored_tables_in_one_load_is_never_deleted(
    emulator, mirror, tmp_path, state_path, monkeypatch, first
) -> None:
    # One pipeline, one load, user0 moves from leads to customers (a lead that became a
    # customer). dlt loads the tables one after the other in the order its folder lists them
    # (by file names with random parts): the test picks that order.
    _loaded_first(monkeypatch, first)
    pipeline = dlt.pipeline("two_tables", pipelines_dir=str(tmp_path / "dlt"))
    pipeline.run(_two_tables([0, 1, 2], [5, 6]), destination=mirror(max_delete_fraction=1.0))
    contact_id = emulator.contact("user0@example.com")["id"]
    emulator.clear_requests()

    info = pipeline.run(_two_tables([1, 2], [0, 5, 6]), destination=mirror(max_delete_fraction=1.0))

    assert requests_to(emulator, DELETE) == []
    assert emulator.contact("user0@example.com")["id"] == contact_id
    leads, customers = (
        run_summary(state_path, info, "leads"),
        run_summary(state_path, info, "customers"),
    )
    assert (leads["left_source"], leads["deleted"], customers["new"]) == (1, 0, 1)
    emulator.clear_requests()
    pipeline.run(_two_tables([1, 2], [0, 5, 6]), destination=mirror(max_delete_fraction=1.0))
    assert upserts(emulator) == [] and requests_to(emulator, DELETE) == []


@pytest.mark.parametrize("first", ["leads", "customers"])
def test_a_row_of_another_table_matching_two_contacts_does_not_keep_one_that_left(
    clock, tmp_path, state_path, monkeypatch, first
) -> None:
    # user0 leaves leads; customers' new row carries user0's email and user5's external_id:
    # refused when customers loads, it stands for neither, whichever table dlt loads first
    # (read ahead by leads, it kept user0, which no table then tracked).
    _loaded_first(monkeypatch, first)
    mapping = {"email": "email", "external_id": "crm_id"}

    def crm(leads: list[tuple[str, str]], customers: list[tuple[str, str]]) -> Any:
        def rows(people: list[tuple[str, str]]) -> pa.Table:
            return pa.table({"email": [p[0] for p in people], "crm_id": [p[1] for p in people]})

        @dlt.source
        def source() -> Any:
            yield dlt.resource(rows(leads), name="leads")
            yield dlt.resource(rows(customers), name="customers")

        return source()

    user = {i: (f"user{i}@example.com", f"E{i}") for i in (0, 1, 2, 5, 6)}
    with Emulator(api_key=API_KEY, clock=clock, job_polls_until_done=1) as emu:
        pipeline = dlt.pipeline("mixed", pipelines_dir=str(tmp_path / "dlt"))
        dest = destination_for(
            emu, state_path, mapping=mapping, mode="mirror", max_delete_fraction=1.0
        )
        pipeline.run(crm([user[0], user[1], user[2]], [user[5], user[6]]), destination=dest)
        mixed = ("user0@example.com", "E5")

        info = pipeline.run(crm([user[1], user[2]], [user[5], user[6], mixed]), destination=dest)

        emu.process_jobs()
        assert "user0@example.com" not in emails(emu)
        assert run_summary(state_path, info, "leads")["deleted"] == 1
        assert run_summary(state_path, info, "customers")["rejected"] == 1


def test_a_contact_the_next_table_flags_as_deleted_is_deleted_by_the_table_it_left(
    emulator, mirror, tmp_path, state_path, monkeypatch
) -> None:
    _loaded_first(monkeypatch, "leads")

    def load(leads: list[int], customers: list[int], flagged: list[bool]) -> Any:
        @dlt.source
        def crm() -> Any:
            yield dlt.resource(people(leads), name="leads")
            yield dlt.resource(
                people(customers, deleted=flagged),
                name="customers",
                write_disposition="merge",
                primary_key="email",
                columns={"deleted": {"data_type": "bool", "hard_delete": True}},
            )

        pipeline = dlt.pipeline("flag_next", pipelines_dir=str(tmp_path / "dlt"))
        return pipeline.run(crm(), destination=mirror(max_delete_fraction=1.0))

    load([0, 1, 2], [5], [False])

    info = load([1, 2], [0, 5], [True, False])  # user0 left leads; customers flags it

    assert "user0@example.com" not in emails(emulator)
    assert run_summary(state_path, info, "leads")["deleted"] == 1


def test_another_tables_wrong_settings_never_stop_a_table_that_deletes(
    emulator, mirror, tmp_path, state_path, monkeypatch
) -> None:
    _loaded_first(monkeypatch, "leads")
    tables = {"leads": {"mapping": MAPPING}, "customers": {"mapping": MAPPING, "bogus": 1}}
    pipeline = dlt.pipeline("bad_other", pipelines_dir=str(tmp_path / "dlt"))
    pipeline.run(_two_tables([0, 1, 2], [5]), destination=mirror(max_delete_fraction=1.0))

    with pytest.raises(PipelineStepFailed):  # customers is not loaded: the load says so
        pipeline.run(
            _two_tables([1, 2], [5]), destination=mirror(max_delete_fraction=1.0, tables=tables)
        )

    assert "user0@example.com" not in emails(emulator)  # leads loaded, and deleted user0
    with StateStore.open(state_path, read_only=True) as store:
        assert store.removals.tracked("leads") == 2


def test_a_contact_moving_to_a_table_that_maps_only_its_external_id_is_never_deleted(
    emulator, mirror, tmp_path, monkeypatch
) -> None:
    # leads sends email and external_id; customers knows its customers by external_id only:
    # the state ties user0's email key to X0 (identities), so its customers row is user0.
    _loaded_first(monkeypatch, "leads")
    ids = {"external_id": "crm_id"}
    tables = {"leads": {"mapping": {**MAPPING, **ids}}, "customers": {"mapping": ids}}

    def load(leads: list[int], customers: list[int]) -> None:
        @dlt.source
        def crm() -> Any:
            yield dlt.resource(people(leads, crm_id=[f"X{i}" for i in leads]), name="leads")
            yield dlt.resource(pa.table({"crm_id": [f"X{i}" for i in customers]}), name="customers")

        destination = mirror(max_delete_fraction=1.0, tables=tables)
        dlt.pipeline("ids", pipelines_dir=str(tmp_path / "dlt")).run(crm(), destination=destination)

    load([0, 1, 2], [5])
    contact_id = emulator.contact("user0@example.com")["id"]
    emulator.clear_requests()

    load([1, 2], [0, 5])

    assert requests_to(emulator, DELETE) == []
    assert emulator.contact("user0@example.com")["id"] == contact_id


SEARCH = "POST /v3/marketing/contacts/search/identifiers/{identifier_type}"


def test_a_contact_the_search_misses_once_is_looked_up_again_by_the_next_load_and_deleted(
    emulator, mirror, run, state_path
) -> None:
    # SendGrid's search lags behind its jobs: a contact it does not find yet is not gone.
    run(people(list(range(20))), mirror())
    emulator.faults.add(SEARCH, status=404, times=1)

    second = run(people(list(range(1, 20))), mirror())

    summary = run_summary(state_path, second)
    assert (summary["deleted"], summary["already_gone"], summary["removals_waiting"]) == (0, 0, 1)
    assert "user0@example.com" in emails(emulator)

    third = run(people(list(range(1, 20))), mirror())

    assert run_summary(state_path, third)["deleted"] == 1
    assert "user0@example.com" not in emails(emulator)


def test_a_flagged_contact_the_search_misses_is_looked_up_again_by_a_load_without_its_row(
    emulator, destination, flagged_pipeline, state_path
) -> None:
    dest = destination(mapping=MAPPING, max_delete_fraction=0.5)
    flagged_pipeline(people(list(range(20)), deleted=[False] * 20), dest)
    emulator.faults.add(SEARCH, status=404, times=1)

    second = flagged_pipeline(people([3], deleted=[True]), dest)
    third = flagged_pipeline(people([4], deleted=[False]), dest)  # user3's row is gone

    assert run_summary(state_path, second)["removals_waiting"] == 1
    assert run_summary(state_path, third)["deleted"] == 1
    assert "user3@example.com" not in emails(emulator)
    with StateStore.open(state_path, read_only=True) as store:
        assert store.removals.counts() == {}


def test_a_contact_whose_row_came_back_after_a_missed_search_starts_again_from_one_miss(
    emulator, mirror, run, state_path
) -> None:
    run(people(list(range(20))), mirror())
    emulator.faults.add(SEARCH, status=404, times=1)
    run(people(list(range(1, 20))), mirror())  # user0 left; the search missed it
    run(people(list(range(20))), mirror())  # user0 is back
    with StateStore.open(state_path, read_only=True) as store:
        assert store.removals.counts() == {}
    emulator.faults.add(SEARCH, status=404, times=1)

    again = run(people(list(range(1, 20))), mirror())  # it leaves again, missed once more

    summary = run_summary(state_path, again)
    assert (summary["already_gone"], summary["removals_waiting"]) == (0, 1)
    assert run_summary(state_path, run(people(list(range(1, 20))), mirror()))["deleted"] == 1


def _deleted_elsewhere(emulator: Emulator, email: str) -> None:
    """Someone deletes the contact through the API (not this destination), job done."""
    client = SendGridClient(emulator.api_key, base_url=emulator.base_url)
    client.delete_contacts([emulator.contact(email)["id"]])
    emulator.process_jobs()


def test_a_contact_deleted_elsewhere_is_forgotten_once_two_loads_did_not_find_it(
    emulator, mirror, run, state_path
) -> None:
    run(people(list(range(20))), mirror())
    _deleted_elsewhere(emulator, "user0@example.com")
    emulator.clear_requests()

    second = run(people(list(range(1, 20))), mirror())
    third = run(people(list(range(1, 20))), mirror())

    assert run_summary(state_path, second)["removals_waiting"] == 1
    assert (run_summary(state_path, third)["already_gone"], requests_to(emulator, DELETE)) == (
        1,
        [],
    )
    with StateStore.open(state_path, read_only=True) as store:
        assert store.removals.tracked("contacts") == 19 and store.removals.counts() == {}


def test_replace_deletes_exactly_the_contacts_that_left_within_the_threshold(
    emulator, destination, tmp_path, state_path
) -> None:
    pipeline = dlt.pipeline("replace", pipelines_dir=str(tmp_path / "dlt"))
    dest = destination(mapping=MAPPING)

    def load(data: pa.Table) -> Any:
        return pipeline.run(
            data, table_name="contacts", write_disposition="replace", destination=dest
        )

    load(people(list(range(30))))
    second = load(people(list(range(28))))

    assert emails(emulator) == {f"user{i}@example.com" for i in range(28)}
    assert run_summary(state_path, second)["deleted"] == 2
    with pytest.raises(PipelineStepFailed) as failed:
        load(people(list(range(10))))  # 18 of 28 would go: over 10%
    cause_of(failed.value, DeletionLimitError)
    assert len(emails(emulator)) == 28


@pytest.fixture
def flagged_pipeline(tmp_path: Path) -> Callable[[pa.Table, sendgrid], Any]:
    contacts = flagged_contacts("email")
    pipeline = dlt.pipeline("flags", pipelines_dir=str(tmp_path / "dlt"))

    def load(data: pa.Table, dest: sendgrid) -> Any:
        return pipeline.run(contacts(data), destination=dest)

    return load


def test_hard_delete_deletes_exactly_the_flagged_contacts_this_sync_created(
    emulator, destination, flagged_pipeline, state_path
) -> None:
    dest = destination(mapping=MAPPING, max_delete_fraction=0.5)
    created_elsewhere(emulator, "user50@example.com")
    flagged_pipeline(people(list(range(20)), deleted=[False] * 20), dest)
    flagged_pipeline(people([50], deleted=[False]), dest)  # updates someone else's contact
    emulator.clear_requests()

    flags = [i in (3, 4, 5) for i in range(20)] + [True]
    third = flagged_pipeline(people([*range(20), 50], deleted=flags), dest)

    gone = {"user3@example.com", "user4@example.com", "user5@example.com"}
    assert emails(emulator) == ({f"user{i}@example.com" for i in range(20)} - gone) | {
        "user50@example.com"
    }
    assert upserts(emulator) == []  # flagged rows are not sent; the others are unchanged
    summary = run_summary(state_path, third)
    assert (summary["flagged"], summary["deleted"], summary["not_deleted"]) == (4, 3, 1)
    assert summary["unchanged"] == 17


def test_a_flagged_row_of_an_unknown_contact_deletes_nothing(
    emulator, destination, flagged_pipeline
) -> None:
    created_elsewhere(emulator, "user7@example.com")

    flagged_pipeline(people([7], deleted=[True]), destination(mapping=MAPPING))

    assert emails(emulator) == {"user7@example.com"}
    assert requests_to(emulator, DELETE) == []


def test_mirror_of_an_incremental_resource_is_refused_unless_the_load_is_a_full_refresh(
    emulator, destination, tmp_path
) -> None:
    @dlt.resource(name="contacts")
    def contacts(updated=dlt.sources.incremental("updated", initial_value=0)) -> Any:  # noqa: B008
        yield people(list(range(5)), updated=list(range(5)))

    pipeline = dlt.pipeline("incremental", pipelines_dir=str(tmp_path / "dlt"))
    dest = destination(mapping=MAPPING, mode="mirror")
    pipeline.run(contacts(), destination=dest)  # a first load: nothing could look gone
    assert len(emails(emulator)) == 5
    emulator.clear_requests()

    with pytest.raises(PipelineStepFailed) as failed:
        pipeline.run(
            pa.table({"email": ["new@example.com"], "first_name": ["N"], "updated": [9]}),
            table_name="contacts",
            destination=dest,
        )
    assert "incremental" in str(cause_of(failed.value, ConfigurationError))
    assert emulator.requests == []
    pipeline.abort_packages()

    pipeline.run(contacts(), destination=dest, refresh="drop_resources")

    assert len(emails(emulator)) == 5
    assert [r for r in emulator.requests if r.method == "DELETE"] == []


def test_mirror_with_record_batches_is_refused_before_any_request(
    emulator, destination, run
) -> None:
    with pytest.raises(PipelineStepFailed) as failed:
        run(people(list(range(5))), destination(mapping=MAPPING, mode="mirror", batch_size=2))

    assert "batch_size" in str(cause_of(failed.value, ConfigurationError))
    assert emulator.requests == []


def test_a_merge_strategy_the_destination_cannot_honour_is_refused(
    emulator, destination, tmp_path
) -> None:
    @dlt.resource(
        name="contacts",
        primary_key="email",
        write_disposition={"disposition": "merge", "strategy": "insert-only"},
    )
    def contacts() -> Any:
        yield people([1])

    pipeline = dlt.pipeline("insert_only", pipelines_dir=str(tmp_path / "dlt"))
    with pytest.raises(PipelineStepFailed) as failed:
        pipeline.run(contacts(), destination=destination(mapping=MAPPING))

    assert "'insert-only'" in str(cause_of(failed.value, ConfigurationError))
    assert emulator.requests == []


def test_a_contact_whose_first_upsert_is_still_pending_waits_instead_of_being_judged(
    emulator, mirror, run, state_path
) -> None:
    emulator.fault_next_jobs(1, import_status="pending_forever")
    run(people(list(range(20))), mirror(job_wait_timeout=5))
    emulator.clear_requests()

    second = run(people(list(range(19))), mirror(job_wait_timeout=5))

    assert requests_to(emulator, DELETE) == []
    summary = run_summary(state_path, second)
    assert (summary["left_source"], summary["removals_waiting"]) == (1, 1)
    with StateStore.open(state_path, read_only=True) as store:
        assert store.removals.tracked("contacts") == 20  # still tracked: decided later


def test_status_json_shows_list_changes_deletions_and_removals_in_flight(
    emulator, destination, run, state_path, capsys
) -> None:
    vip = emulator.add_list("VIP")
    dest = destination(mapping=MAPPING, mode="mirror", lists=["VIP"], max_delete_fraction=0.5)
    run(people(list(range(4))), dest)
    emulator.fault_next_jobs(1, import_status="pending_forever")  # the deletion's job

    run(
        people(list(range(3))),
        destination(
            mapping=MAPPING,
            mode="mirror",
            lists=["VIP"],
            max_delete_fraction=0.5,
            job_wait_timeout=5,
        ),
    )

    status = json.loads(cli(capsys, "status", "--json", "--state", str(state_path)))
    assert status["removals"] == {"sent delete": 1}
    latest, first = status["runs"]
    assert first["summary"]["list_additions"] == 4
    assert (latest["summary"]["left_source"], latest["summary"]["deleted"]) == (1, 1)
    assert latest["summary"]["removal_jobs"] == {"pending": 1}
    assert vip in emulator.contact("user0@example.com")["list_ids"]
    text = cli(capsys, "status", "--state", str(state_path))
    assert "removals: 1 sent delete" in text and "deleted 1" in text


def test_contacts_a_schema_6_state_recorded_are_never_deleted_but_later_ones_are(
    emulator, mirror, run, state_path
) -> None:
    run(people(list(range(20))), mirror())
    _as_schema_6(state_path)
    run(people(list(range(30))), mirror())  # 10 new contacts, recorded under schema 7
    emulator.clear_requests()

    third = run(people([*range(1, 20), *range(21, 30)]), mirror())  # user0 and user20 left

    assert "user0@example.com" in emails(emulator)  # who created it is unknown: kept
    assert "user20@example.com" not in emails(emulator)
    summary = run_summary(state_path, third)
    assert (summary["left_source"], summary["deleted"], summary["not_deleted"]) == (2, 1, 1)


def _as_schema_6(state_path: Path) -> None:
    """Rewrite the state as schema 6 left it: no lists, no record of who created a contact."""
    import duckdb

    con = duckdb.connect(str(state_path))
    try:
        for sql in (
            "ALTER TABLE contacts DROP COLUMN first_seq",
            "ALTER TABLE contacts DROP COLUMN lists",
            "ALTER TABLE deferred DROP COLUMN list_scope",
            "DROP TABLE load_keys",
            "DROP TABLE removals",
            "UPDATE meta SET value = '6' WHERE key = 'schema_version'",
        ):
            con.execute(sql)
    finally:
        con.close()


def test_a_table_dlt_splits_over_several_job_files_is_loaded_and_judged_as_one(
    emulator, mirror, run, state_path, monkeypatch
) -> None:
    monkeypatch.setenv("DATA_WRITER__FILE_MAX_ITEMS", "5")  # dlt rotates job files at 5 rows
    dest = mirror(max_delete_fraction=0.5)

    def files(indexes: list[int]) -> list[pa.Table]:
        return [people(indexes[i : i + 5]) for i in range(0, len(indexes), 5)]

    run(files(list(range(15))), dest)
    emulator.clear_requests()

    second = run(files(list(range(12))), dest)  # three files: 0-4, 5-9, 10-11

    assert emails(emulator) == {f"user{i}@example.com" for i in range(12)}
    assert len(requests_to(emulator, DELETE)) == 1
    assert run_summary(state_path, second)["deleted"] == 3
    with StateStore.open(state_path, read_only=True) as store:
        assert store.con.execute("SELECT count(*) FROM load_keys").fetchall() == [(0,)]
        files_seen = store.con.execute(
            "SELECT count(*) FROM run_files WHERE run_id = ?", [f"{second.loads_ids[-1]}:contacts"]
        ).fetchall()
    assert files_seen == [(1,)]  # the first file's call took the other two
    assert run_summary(state_path, second)["rows_read"] == 12


def test_a_deletion_whose_202_was_lost_is_sent_again_and_deletes_each_contact_once(
    emulator, mirror, run, state_path
) -> None:
    run(people(list(range(20))), mirror())
    # SendGrid takes the DELETE (its job exists) but the answer never arrives: the transport
    # sends it again, and the second job finds the contacts gone.
    emulator.faults.add(DELETE, action="drop_after")

    second = run(people(list(range(18))), mirror())

    assert emails(emulator) == {f"user{i}@example.com" for i in range(18)}
    assert [r.fault for r in requests_to(emulator, DELETE)] == ["drop_after", None]
    assert run_summary(state_path, second)["deleted"] == 2
    with StateStore.open(state_path, read_only=True) as store:
        assert store.removals.tracked("contacts") == 18
        assert store.removals.counts() == {}


def test_a_load_without_the_hard_delete_column_flags_nothing(
    emulator, destination, flagged_pipeline, state_path
) -> None:
    dest = destination(mapping=MAPPING)
    flagged_pipeline(people(list(range(5)), deleted=[False] * 5), dest)

    second = flagged_pipeline(people(list(range(6))), dest)  # the column is not in this load

    assert len(emails(emulator)) == 6
    summary = run_summary(state_path, second)
    assert (summary["flagged"], summary["new"], summary["deleted"]) == (0, 1, 0)


def test_a_contact_another_table_still_sends_is_not_deleted_when_it_leaves_one_table(
    emulator, mirror, run, state_path
) -> None:
    run(people(list(range(20))), mirror(), name="customers")
    run(people([0]), mirror(), name="newsletter")
    emulator.clear_requests()

    left = run(people(list(range(1, 20))), mirror(), name="customers")

    assert "user0@example.com" in emails(emulator)
    assert requests_to(emulator, DELETE) == []
    summary = run_summary(state_path, left, stream="customers")
    assert (summary["left_source"], summary["deleted"], summary["not_deleted"]) == (1, 0, 1)


def test_a_contact_its_job_failed_is_never_looked_up_for_deletion_when_its_row_leaves(
    emulator, mirror, run, state_path
) -> None:
    # SendGrid's search refuses a whole request (400) for one address it calls invalid, and
    # its rules are stricter than the check's: "a..b" and ".dot" pass the check and fail in
    # the job. Such a contact is not one SendGrid holds: it must never be searched for.
    odd = ["a..b@example.com", ".dot@example.com"]
    addresses = [*odd, *(f"user{i}@example.com" for i in range(2, 40))]
    run(people(list(range(40)), email=addresses), mirror())
    assert not set(odd) & emails(emulator)
    emulator.clear_requests()

    second = run(people(list(range(4, 40))), mirror())  # both odd rows, user2 and user3 left

    assert {"user2@example.com", "user3@example.com"}.isdisjoint(emails(emulator))
    assert [r.status for r in requests_to(emulator, SEARCH)] == [200]
    summary = run_summary(state_path, second)
    assert (summary["left_source"], summary["deleted"], summary["removals_waiting"]) == (2, 2, 0)


def test_a_deletion_answered_404_is_looked_up_again_and_deletes_those_still_there(
    emulator, mirror, run, state_path
) -> None:
    run(people(list(range(20))), mirror())
    # One of the two contacts that leave is deleted elsewhere between the search and the
    # delete: SendGrid answers the spec's 404 for the request.
    _deleted_elsewhere(emulator, "user0@example.com")
    emulator.faults.add(DELETE, status=404, times=1)

    second = run(people(list(range(2, 20))), mirror())

    assert [r.status for r in requests_to(emulator, DELETE)][-2:] == [404, 202]
    assert "user1@example.com" not in emails(emulator)
    summary = run_summary(state_path, second)
    # user0 missed by the fresh look-up; taken for gone when the next load misses it too.
    assert (summary["deleted"], summary["removals_waiting"]) == (1, 1)
    third = run(people(list(range(2, 20))), mirror())
    assert run_summary(state_path, third)["already_gone"] == 1
    with StateStore.open(state_path, read_only=True) as store:
        assert store.removals.tracked("contacts") == 18 and store.removals.counts() == {}


def test_a_deletion_answered_404_again_after_a_fresh_look_up_stops_the_load(
    emulator, mirror, run
) -> None:
    run(people(list(range(20))), mirror())
    emulator.faults.add(DELETE, status=404, times=2)

    with pytest.raises(PipelineStepFailed):
        run(people(list(range(1, 20))), mirror())

    assert "user0@example.com" in emails(emulator)
    assert [r.status for r in requests_to(emulator, DELETE)] == [404, 404]


def test_contacts_a_fresh_look_up_after_a_404_misses_wait_for_the_next_load(
    emulator, mirror, run, state_path
) -> None:
    run(people(list(range(20))), mirror())
    emulator.faults.add(DELETE, status=404, times=1)
    # The look-up before the deletion finds both contacts; the one after the 404 finds none
    # (search lags behind jobs): neither is taken for gone on one miss.
    emulator.faults.add(SEARCH, action="delay", delay=0, times=1)
    emulator.faults.add(SEARCH, status=404, times=1)

    second = run(people(list(range(2, 20))), mirror())

    assert (run_summary(state_path, second)["removals_waiting"], len(emails(emulator))) == (2, 20)
    third = run(people(list(range(2, 20))), mirror())
    assert run_summary(state_path, third)["deleted"] == 2
    assert emails(emulator) == {f"user{i}@example.com" for i in range(2, 20)}
