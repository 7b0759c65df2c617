"""Lists: names resolved against the account (every page), per-row lists from a column, and
removal from the lists a contact's row no longer names.

Real dlt pipelines into the emulator over loopback HTTP; list membership is read back from
the emulator's contacts, and every request is counted on the wire.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from sendgrid_destination.emulator import Emulator
from sendgrid_destination.errors import ConfigurationError, RequestRejectedError
from sendgrid_destination.state import StateStore
from tests.e2e.conftest import cause_of, destination_for, run_summary, upserts

LISTS = "GET /v3/marketing/lists"
REMOVE = "DELETE /v3/marketing/lists/{id}/contacts"
MAPPING: dict[str, Any] = {"email": "email"}


def lists_of(emulator: Emulator, email: str) -> set[str]:
    contact = emulator.contact(email)
    assert contact is not None, email
    return set(contact["list_ids"])


def requests_to(emulator: Emulator, route: str) -> list[Any]:
    return [r for r in emulator.requests if r.route == route]


def people(segments: list[Any], *, start: int = 0) -> pa.Table:
    n = len(segments)
    emails = [f"user{i}@example.com" for i in range(start, start + n)]
    return pa.table({"email": emails, "segments": segments})


def test_list_names_resolve_across_three_pages_of_lists(clock, run, state_path) -> None:
    with Emulator(api_key="SG.test-e2e-key", clock=clock, lists_page_limit=100) as emu:
        ids = {f"List {i:03}": emu.add_list(f"List {i:03}") for i in range(250)}
        dest = destination_for(emu, state_path, mapping=MAPPING, lists=["List 001", "List 249"])

        run(people([None, None]), dest)

        pages = requests_to(emu, LISTS)
        assert len(pages) == 3  # 100 + 100 + 50, following _metadata.next
        assert lists_of(emu, "user0@example.com") == {ids["List 001"], ids["List 249"]}


def test_a_list_column_puts_each_contact_in_the_lists_its_row_names(
    emulator, destination, run, state_path
) -> None:
    a, b, c = (emulator.add_list(name) for name in ("A", "B", "C"))
    data = people([["A"], ["A", "B"], [], None])
    data = data.append_column("names", pa.array([" A ", "B, C", "", None]))

    info = run(data, destination(mapping=MAPPING, list_column="segments"))
    run(data, destination(mapping=MAPPING, list_column="names"), name="other")

    assert lists_of(emulator, "user0@example.com") == {a}
    assert lists_of(emulator, "user1@example.com") == {a, b, c}
    assert lists_of(emulator, "user3@example.com") == set()
    summary = run_summary(state_path, info)
    assert summary["list_additions"] == 3  # user0: A; user1: A, B
    # Bodies are grouped by their set of lists: {A}, {A,B}, {} -> three requests.
    assert summary["requests"] == 3


def test_a_contact_moved_from_list_a_to_list_b_by_its_list_column_leaves_a(
    emulator, destination, run, state_path
) -> None:
    a, b = emulator.add_list("A"), emulator.add_list("B")
    dest = destination(mapping=MAPPING, list_column="segments")
    run(people([["A"], ["A"], ["A", "B"]]), dest)
    assert lists_of(emulator, "user0@example.com") == {a}
    emulator.clear_requests()

    second = run(people([["B"], ["A"], ["A", "B"]]), dest)

    assert lists_of(emulator, "user0@example.com") == {b}
    assert lists_of(emulator, "user1@example.com") == {a}
    assert lists_of(emulator, "user2@example.com") == {a, b}
    removals = requests_to(emulator, REMOVE)
    assert [r.status for r in removals] == [202]
    assert removals[0].path.startswith(f"/v3/marketing/lists/{a}/contacts?contact_ids=")
    summary = run_summary(state_path, second)
    assert (summary["changed"], summary["unchanged"]) == (1, 2)
    assert (summary["list_additions"], summary["list_removals"]) == (1, 1)
    assert summary["removal_jobs"] == {"completed": 1}


def test_a_contact_someone_else_put_in_a_list_is_never_removed_from_it(
    emulator, destination, run
) -> None:
    a, b = emulator.add_list("A"), emulator.add_list("B")
    dest = destination(mapping=MAPPING, list_column="segments")
    run(people([["B"]]), dest)
    # Someone adds the contact to A in SendGrid; the sync never put it there.
    emulator.faults.clear()
    _upsert_elsewhere(emulator, {"email": "user0@example.com"}, [a])
    assert lists_of(emulator, "user0@example.com") == {a, b}
    emulator.clear_requests()

    run(people([[]]), dest)  # the row no longer names B

    assert lists_of(emulator, "user0@example.com") == {a}
    assert [r.path.split("/")[4] for r in requests_to(emulator, REMOVE)] == [b]


def test_a_list_one_table_stops_naming_stays_while_another_tables_row_still_names_it(
    emulator, destination, run, state_path
) -> None:
    vip = emulator.add_list("VIP")
    dest = destination(mapping=MAPPING, list_column="segments")
    run(people([["VIP"]]), dest, name="a")
    run(people([["VIP"]]), dest, name="b")
    emulator.clear_requests()

    run(people([[]]), dest, name="a")  # a's row no longer names VIP; b's still does

    assert lists_of(emulator, "user0@example.com") == {vip}
    assert requests_to(emulator, REMOVE) == []
    with StateStore.open(state_path, read_only=True) as store:
        assert store.removals.counts() == {}  # nothing left queued either
    run(people([[]]), dest, name="b")  # now no table names it: it goes

    assert lists_of(emulator, "user0@example.com") == set()


@pytest.mark.parametrize("job_order", ["fifo", "reverse"])
def test_another_tables_upsert_into_a_list_waits_for_a_removal_from_it_in_flight(
    clock, tmp_path, run, job_order
) -> None:
    # user0 leaves table a (membership): a takes it out of VIP and stops waiting before
    # SendGrid ends the job. Table b's row then puts user0 in VIP. SendGrid keeps no order
    # between jobs: a removal landing after b's upsert took user0 out of VIP for good (b's
    # state said it was in, so no rerun sent it again).
    state = tmp_path / "state" / "sg.duckdb"
    wait = {"mapping": MAPPING, "job_wait_timeout": 1_000}
    a = {**wait, "lists": ["VIP"], "mode": "membership", "max_delete_fraction": 0.5}
    with Emulator(
        api_key="SG.test-e2e-key", clock=clock, job_delay_seconds=100, job_order=job_order
    ) as emu:
        vip = emu.add_list("VIP")
        run(people([None] * 3), destination_for(emu, state, **a), name="a")
        short = {"job_wait_timeout": 10}
        run(people([None] * 2, start=1), destination_for(emu, state, **{**a, **short}), name="a")
        with StateStore.open(state, read_only=True) as store:
            assert store.removals.counts() == {"sent unlist": 1}
        b = {**wait, "list_column": "segments"}

        # b does not wait for its own job either: SendGrid may run the two in any order.
        first = run(people([["VIP"]]), destination_for(emu, state, **{**b, **short}), name="b")
        emu.process_jobs()
        again = run(people([["VIP"]]), destination_for(emu, state, **b), name="b")

        assert lists_of(emu, "user0@example.com") == {vip}
        summary = run_summary(state, first, "b")
        assert (summary["deferred"], summary["requests"]) == (1, 0)  # held back
        summary = run_summary(state, again, "b")
        assert (summary["new"], summary["removal_jobs"]) == (1, {})
        assert any("1 list removal job(s) of table 'a'" in n for n in summary["notes"])


def test_a_list_dropped_from_the_settings_is_left_by_the_contacts_the_sync_put_there(
    emulator, destination, run, state_path
) -> None:
    a, b = emulator.add_list("A"), emulator.add_list("B")
    run(people([None, None]), destination(mapping=MAPPING, lists=["A"]))
    assert lists_of(emulator, "user0@example.com") == {a}

    second = run(people([None, None]), destination(mapping=MAPPING, lists=["B"]))

    assert lists_of(emulator, "user0@example.com") == {b}
    assert lists_of(emulator, "user1@example.com") == {b}
    summary = run_summary(state_path, second)
    assert (summary["list_additions"], summary["list_removals"]) == (2, 2)
    assert summary["removal_requests"] == 1  # both contacts in one DELETE


def test_an_unknown_list_name_stops_the_run_before_any_upsert_naming_it(
    emulator, destination, run
) -> None:
    emulator.add_list("A")

    with pytest.raises(PipelineStepFailed) as failed:
        run(people([["A", "Nope"]]), destination(mapping=MAPPING, list_column="segments"))

    error = cause_of(failed.value, ConfigurationError)
    assert "'Nope'" in str(error) and "create_missing_lists" in str(error)
    assert upserts(emulator) == []


def test_create_missing_lists_creates_them_and_puts_the_contacts_in(
    emulator, destination, run
) -> None:
    dest = destination(
        mapping=MAPPING,
        lists=["Newsletter 2026"],
        list_column="segments",
        create_missing_lists=True,
    )

    run(people([["VIP"], None]), dest)

    names = {lst["name"]: lst["id"] for lst in _all_lists(emulator)}
    assert set(names) == {"Newsletter 2026", "VIP"}
    assert lists_of(emulator, "user0@example.com") == {names["Newsletter 2026"], names["VIP"]}
    assert lists_of(emulator, "user1@example.com") == {names["Newsletter 2026"]}


def test_missing_list_names_from_rows_are_named_a_few_and_cut_short_in_the_error(
    emulator, destination, run
) -> None:
    # list_column names the wrong column (of long texts): the error must not pour them out.
    names = [[f"segment number {i} " + "x" * 60] for i in range(12)]

    with pytest.raises(PipelineStepFailed) as failed:
        run(people(names), destination(mapping=MAPPING, list_column="segments"))

    message = str(cause_of(failed.value, ConfigurationError))
    assert "'segment number 0 " in message and "and 7 more" in message
    # The first five in name order (0, 1, 10, 11, 2), each cut at 40 characters.
    assert "x" * 24 not in message and "segment number 3 " not in message
    assert upserts(emulator) == []


def test_missing_list_names_that_look_like_emails_or_phone_numbers_are_counted_not_shown(
    emulator, destination, run
) -> None:
    # list_column names the column of emails (or phones) by mistake: no log line, summary or
    # state may quote a person's address; a real list name missing is still named.
    rows = [["VIP2"], ["ann@example.com"], ["+1 (415) 555-0100"], ["bob@example.com"]]

    with pytest.raises(PipelineStepFailed) as failed:
        run(people(rows), destination(mapping=MAPPING, list_column="segments"))

    message = str(cause_of(failed.value, ConfigurationError))
    assert "'VIP2'" in message
    assert "3 name(s) that look like email addresses or phone numbers, not shown" in message
    assert "example.com" not in message and "555" not in message
    assert upserts(emulator) == []


@pytest.mark.parametrize(
    ("segments", "expected"),
    [
        ([["L" * 101]], "1 list name(s) to create are longer than SendGrid's 100 characters"),
        ([[f"list {i}"] for i in range(1001)], "1001 lists to create, beside the account's 0"),
    ],
)
def test_lists_sendgrid_would_refuse_to_create_stop_the_run_before_any_is_created(
    emulator, destination, run, segments, expected
) -> None:
    dest = destination(mapping=MAPPING, list_column="segments", create_missing_lists=True)

    with pytest.raises(PipelineStepFailed) as failed:
        run(people(segments), dest)

    assert expected in str(cause_of(failed.value, ConfigurationError))
    assert _all_lists(emulator) == [] and upserts(emulator) == []


def test_two_lists_with_one_name_are_an_error_naming_both_ids(emulator, destination, run) -> None:
    first = emulator.add_list("VIP")
    second = emulator.add_list("VIP", allow_duplicate_name=True)

    with pytest.raises(PipelineStepFailed) as failed:
        run(people([None]), destination(mapping=MAPPING, lists=["VIP"]))

    message = str(cause_of(failed.value, ConfigurationError))
    assert first in message and second in message
    assert upserts(emulator) == []


def test_list_ids_keep_working_beside_list_names(emulator, destination, run) -> None:
    a, b = emulator.add_list("A"), emulator.add_list("B")

    run(people([None]), destination(mapping=MAPPING, list_ids=[a], lists=["B"]))

    assert lists_of(emulator, "user0@example.com") == {a, b}


def test_a_list_column_of_another_type_is_refused_before_any_request(
    emulator, destination, run
) -> None:
    data = pa.table({"email": ["user0@example.com"], "segments": [3]})

    with pytest.raises(PipelineStepFailed) as failed:
        run(data, destination(mapping=MAPPING, list_column="segments"))

    assert "list_column 'segments'" in str(cause_of(failed.value, ConfigurationError))
    assert emulator.requests == []


def _all_lists(emulator: Emulator) -> list[dict[str, Any]]:
    from sendgrid_destination.api.client import SendGridClient

    client = SendGridClient(emulator.api_key, base_url=emulator.base_url)
    return [{"id": lst.id, "name": lst.name} for lst in client.lists()]


def _upsert_elsewhere(emulator: Emulator, contact: dict[str, Any], list_ids: list[str]) -> None:
    """Another SendGrid user writes a contact (through the API, not this destination)."""
    import json

    from sendgrid_destination.api.client import SendGridClient

    client = SendGridClient(emulator.api_key, base_url=emulator.base_url)
    client.upsert_contacts(json.dumps({"list_ids": list_ids, "contacts": [contact]}).encode())
    emulator.process_jobs()


def test_a_removal_answered_404_is_looked_up_again_and_sent_once_more(
    emulator, destination, run, state_path
) -> None:
    emulator.add_list("A")
    b = emulator.add_list("B")
    dest = destination(mapping=MAPPING, list_column="segments")
    run(people([["A"], ["A"]]), dest)
    # A contact deleted in SendGrid between the search and the removal answers so.
    emulator.faults.add(REMOVE, status=404, times=1)

    second = run(people([["B"], ["B"]]), dest)

    assert lists_of(emulator, "user0@example.com") == {b}
    assert lists_of(emulator, "user1@example.com") == {b}
    assert [r.status for r in requests_to(emulator, REMOVE)] == [404, 202]
    assert run_summary(state_path, second)["list_removals"] == 2


def test_a_removal_answered_404_again_after_a_fresh_look_up_stops_the_load(
    emulator, destination, run, state_path
) -> None:
    a = emulator.add_list("A")
    dest = destination(mapping=MAPPING, list_column="segments")
    run(people([["A"]]), dest)
    emulator.faults.add(REMOVE, status=404, times=2)

    with pytest.raises(PipelineStepFailed) as failed:
        run(people([[]]), dest)

    assert cause_of(failed.value, RequestRejectedError).status == 404
    assert lists_of(emulator, "user0@example.com") == {a}
    assert [r.status for r in requests_to(emulator, REMOVE)] == [404, 404]


@pytest.mark.parametrize("by", ["lists", "list_column"])
def test_a_list_deleted_in_sendgrid_is_made_again_and_later_loads_go_on(
    emulator, destination, run, state_path, by: str
) -> None:
    settings: dict[str, Any] = (
        {"lists": ["Promo"]} if by == "lists" else {"list_column": "segments"}
    )
    dest = destination(mapping=MAPPING, create_missing_lists=True, **settings)
    run(people([["Promo"], ["Promo"]]), dest)
    (old,) = {lst["id"] for lst in _all_lists(emulator)}
    emulator.delete_list(old)  # in the UI: its contacts hold it no more

    second = run(people([["Promo"], ["Promo"]]), dest)
    third = run(people([["Promo"], ["Promo"]]), dest)

    (new,) = {lst["id"] for lst in _all_lists(emulator)}
    assert new != old
    assert lists_of(emulator, "user0@example.com") == {new}
    assert lists_of(emulator, "user1@example.com") == {new}
    assert run_summary(state_path, second)["contacts_sent"] == 2
    assert run_summary(state_path, third)["contacts_sent"] == 0
    assert all(r.status < 400 for r in emulator.requests)


def test_a_removal_from_a_list_sendgrid_deleted_has_nothing_left_to_do(
    emulator, destination, run, state_path
) -> None:
    a, b = emulator.add_list("A"), emulator.add_list("B")
    dest = destination(mapping=MAPPING, list_column="segments")
    run(people([["A"], ["A"]]), dest)
    emulator.delete_list(a)  # in the UI
    _lagging_search_still_shows(emulator, a)
    emulator.clear_requests()

    second = run(people([["B"], ["B"]]), dest)
    third = run(people([["B"], ["B"]]), dest)

    # The removal meets the spec's 404 for a list that does not exist: nothing to do, and
    # no later load stops on it (each did, sending it again on every look-up).
    assert [r.status for r in requests_to(emulator, REMOVE)] == [404]
    assert b in lists_of(emulator, "user0@example.com")
    assert run_summary(state_path, second)["list_removals"] == 0
    assert run_summary(state_path, third)["contacts_sent"] == 0
    with StateStore.open(state_path, read_only=True) as store:
        assert store.removals.counts() == {}


def _lagging_search_still_shows(emulator: Emulator, list_id: str) -> None:
    """Contacts keep showing a deleted list, as a search lagging behind the deletion would
    (the emulator drops it from them at once)."""
    store = emulator.backend.store
    with emulator.backend.lock:
        for contact in store.all():
            contact.list_ids.append(list_id)
            store.save(contact)
