"""SendGrid misbehaving end to end: 400s naming contacts or not, 429 storms, 5xx bursts,
dropped connections, temporary blocks and tight rate limits, through a real dlt pipeline.
Every wait goes through the shared FakeClock, so waits are asserted, never slept."""

from __future__ import annotations

import json
import logging
import math
import socket

import pyarrow as pa
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from sendgrid_destination.api.retry_policy import RATE_LIMIT_JITTER_SECONDS
from sendgrid_destination.emulator import Emulator
from sendgrid_destination.emulator.ratelimit import RateLimit
from sendgrid_destination.errors import HostUnreachableError, RequestRejectedError
from sendgrid_destination.summary import RunSummary
from tests.e2e.conftest import (
    API_KEY,
    cause_of,
    contacts_table,
    destination_for,
    rejects_of,
    run_summary,
    state_rows,
    upserts,
)

PUT = "PUT /v3/marketing/contacts"
IMPORTS = "GET /v3/marketing/contacts/imports/{id}"


def _emails(emulator: Emulator) -> list[str]:
    return sorted(c["email"] for c in emulator.contacts())


def _expected(n: int, *, without: tuple[int, ...] = ()) -> list[str]:
    return sorted(f"user{i}@example.com" for i in range(n) if i not in without)


# -- 400s ----------------------------------------------------------------------------------


def test_a_400_naming_contacts_rejects_exactly_those_with_sendgrids_message_and_resends_the_rest(
    emulator, destination, run, state_path
) -> None:
    errors = [
        {"field": "contacts[1].identifier", "message": "email 'user1@example.com' is not valid"},
        {"field": "contacts[3].first_name", "message": "first_name is too long"},
        {"field": "contacts[3].last_name", "message": "last_name is too long"},
    ]
    emulator.faults.add(PUT, status=400, body={"errors": errors}, times=1)

    info = run(contacts_table(5), destination())

    assert _emails(emulator) == _expected(5, without=(1, 3))
    puts = upserts(emulator)
    assert [(r.status, r.contact_count) for r in puts] == [(400, 5), (202, 3)]
    api = sorted((r["row_number"], r["contact_key"], r["reason"]) for r in rejects_of(state_path))
    assert api == [
        (1, "email:user1@example.com", "email 'user1@example.com' is not valid"),
        (3, "email:user3@example.com", "first_name is too long; last_name is too long"),
    ]
    assert {r["stage"] for r in rejects_of(state_path)} == {"api"}
    summary = run_summary(state_path, info)
    assert summary["rejected_by_api"] == 2
    assert summary["rejected"] == 0
    assert summary["contacts_sent"] == 3
    # Both requests went out: the refused one is counted apart from the accepted one.
    assert (summary["requests"], summary["bytes_sent"]) == (1, puts[1].body_bytes)
    assert (summary["refused_requests"], summary["refused_bytes"]) == (1, puts[0].body_bytes)


def test_a_contact_rejected_by_a_400_is_sent_again_by_the_next_run(
    emulator, destination, run, state_path
) -> None:
    emulator.faults.add(
        PUT,
        status=400,
        body={"errors": [{"field": "contacts[0].identifier", "message": "try later"}]},
    )
    run(contacts_table(3), destination())
    assert _emails(emulator) == _expected(3, without=(0,))

    second = run(contacts_table(3), destination())

    assert _emails(emulator) == _expected(3)
    summary = run_summary(state_path, second)
    assert (summary["new"], summary["unchanged"], summary["contacts_sent"]) == (1, 2, 1)


@pytest.mark.parametrize(
    "message", ["email 'user0@example.com' is not valid", "request body too large"]
)
def test_a_contact_a_400_refused_for_good_waits_for_its_row_to_change_then_goes(
    emulator, destination, run, state_path, message
) -> None:
    if message == "request body too large":  # 413 for this contact even alone
        emulator.faults.add(PUT, status=413, body={"errors": [{"message": message}]}, times=2)
        data = contacts_table(2)
    else:
        body = {"errors": [{"field": "contacts[0].identifier", "message": message}]}
        emulator.faults.add(PUT, status=400, body=body, times=1)
        data = contacts_table(3)
    settings = {"max_contacts_per_request": 2, "max_in_flight": 1}
    run(data, destination(**settings))
    refused_before = [r for r in upserts(emulator) if r.status != 202]
    assert refused_before and "user0@example.com" not in _emails(emulator)

    emulator.clear_requests()
    second = run(data, destination(**settings))  # the same rows: nothing to send

    assert upserts(emulator) == []
    summary = run_summary(state_path, second)
    assert (summary["waiting_for_change"], summary["contacts_sent"]) == (1, 0)
    assert (
        "not sent, refused before and unchanged since: 1" in RunSummary.from_dict(summary).format()
    )

    changed = data.set_column(1, "first_name", [["Changed", *data["first_name"].to_pylist()[1:]]])
    third = run(changed, destination(**settings))  # its row changed: sent, accepted now
    emulator.clear_requests()
    fourth = run(changed, destination(**settings))

    assert "user0@example.com" in _emails(emulator)
    assert run_summary(state_path, third)["contacts_sent"] == 1
    assert upserts(emulator) == [] and run_summary(state_path, fourth)["waiting_for_change"] == 0


def test_a_400_naming_no_contact_splits_the_body_until_the_culprit_is_alone(
    emulator, destination, run, state_path
) -> None:
    message = "email 'user0@example.com' is not valid"
    emulator.faults.add(
        PUT, status=400, body={"errors": [{"field": None, "message": message}]}, times=3
    )

    info = run(contacts_table(4), destination())

    # 4 refused -> halves of 2: the first refused -> halves of 1: the first refused alone.
    assert [(r.status, r.contact_count) for r in upserts(emulator)] == [
        (400, 4),
        (400, 2),
        (400, 1),
        (202, 1),
        (202, 2),
    ]
    assert [
        (r["row_number"], r["contact_key"], r["reason"], r["stage"]) for r in rejects_of(state_path)
    ] == [(0, "email:user0@example.com", message, "api")]
    assert _emails(emulator) == _expected(4, without=(0,))
    assert run_summary(state_path, info)["rejected_by_api"] == 1


def test_a_part_accepted_before_another_part_of_the_split_body_fails_is_recorded_not_resent(
    emulator, destination, run, state_path
) -> None:
    message = "something in this body is not valid"
    emulator.faults.add(PUT, status=400, body={"errors": [{"field": None, "message": message}]})
    emulator.faults.add(PUT, action="delay", delay=0.0, times=1)  # the first half: 202
    emulator.faults.add(PUT, status=500, times=2)  # the second half: the client gives up

    info = run(contacts_table(4), destination(max_attempts=2, max_in_flight=1))

    # dlt ran the file again: only the half that was never accepted went out again.
    assert [(r.status, r.contact_count) for r in upserts(emulator)] == [
        (400, 4),
        (202, 2),
        (500, 2),
        (500, 2),
        (202, 2),
    ]
    assert _emails(emulator) == _expected(4)
    summary = run_summary(state_path, info)
    assert (summary["contacts_sent"], summary["requests"]) == (4, 2)
    assert summary["refused_requests"] == 1


def test_a_400_naming_no_contact_whose_text_contains_list_is_still_split_not_fatal(
    emulator, destination, run
) -> None:
    # "list" is a request-level marker (for "invalid list ids"), but it also matches an
    # address such as alistair@...: such a 400 must be split like any other.
    message = "email 'alistair@example.com' is not valid"
    emulator.faults.add(PUT, status=400, body={"errors": [{"field": "", "message": message}]})

    run(contacts_table(4), destination())

    assert _emails(emulator) == _expected(4)


def test_a_400_naming_only_contacts_outside_the_body_neither_crashes_nor_loses_contacts(
    emulator, destination, run, state_path
) -> None:
    # The body holds contacts[0..4]; SendGrid names contacts[5]. Whatever the destination makes
    # of it, the load must finish and every contact must be delivered or rejected with the
    # message, not die inside pyarrow.
    message = "email is not valid"
    body = {"errors": [{"field": "contacts[5].identifier", "message": message}]}
    emulator.faults.add(PUT, status=400, body=body, times=20)

    run(contacts_table(5), destination())

    rejected = {r["contact_key"]: r["reason"] for r in rejects_of(state_path, stage="api")}
    delivered = {f"email:{e}" for e in _emails(emulator)}
    assert delivered | set(rejected) == {f"email:user{i}@example.com" for i in range(5)}
    assert set(rejected.values()) <= {message}


def test_a_400_naming_no_contact_that_every_part_gets_costs_a_bounded_number_of_requests(
    emulator, destination, run, state_path
) -> None:
    # Every request is refused without naming a contact: splitting down to single contacts
    # would cost about 2n requests; the budget stops it and rejects the rest with the reason.
    body = {"errors": [{"field": None, "message": "something about the batch"}]}
    emulator.faults.add(PUT, status=400, body=body, times=1_000)

    info = run(contacts_table(200), destination())

    assert len(upserts(emulator)) <= 2 * 8 + 2 + 1 + 2 * 8 + 2  # splits, then one try per part
    refused = rejects_of(state_path, stage="api")
    assert len(refused) == 200
    assert {r["reason"] for r in refused} == {"something about the batch"}
    assert run_summary(state_path, info)["rejected_by_api"] == 200


def test_a_400_about_the_request_as_a_whole_stops_the_load_instead_of_splitting(
    emulator, destination, run
) -> None:
    body = {"errors": [{"field": "", "message": "invalid custom field ids supplied - e9_T"}]}
    emulator.faults.add(PUT, status=400, body=body, times=5)

    with pytest.raises(PipelineStepFailed) as failed:
        run(contacts_table(4), destination())

    error = cause_of(failed.value, RequestRejectedError)
    assert "invalid custom field ids supplied - e9_T" in str(error)
    assert [r.contact_count for r in upserts(emulator)] == [4]


# -- 429, 5xx, drops, temporary block ------------------------------------------------------


def test_a_429_storm_is_survived_waiting_exactly_until_each_rate_limit_reset(
    emulator, destination, run, clock
) -> None:
    start = clock.now()
    resets = [start + 7, start + 20, start + 45]
    for reset in resets:
        emulator.faults.add(
            PUT,
            status=429,
            body={"errors": [{"field": None, "message": "too many requests"}]},
            headers={
                "X-RateLimit-Limit": "3",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(reset)),
            },
        )

    run(contacts_table(6), destination())

    assert _emails(emulator) == _expected(6)
    puts = upserts(emulator)
    assert [r.status for r in puts] == [429, 429, 429, 202]
    waits = clock.sleeps[:3]
    for reset, refused, wait in zip(resets, puts[:3], waits, strict=True):
        assert reset - refused.at <= wait <= reset - refused.at + RATE_LIMIT_JITTER_SECONDS
    # No other wait happened between the attempts: each retry went out right after its wait.
    for before, after, wait in zip(puts[:3], puts[1:], waits, strict=True):
        assert after.at - before.at == pytest.approx(wait)
    assert puts[-1].at >= resets[-1]


def test_a_hostile_rate_limit_reset_an_hour_away_is_capped_at_max_backoff_seconds(
    emulator, destination, run, clock
) -> None:
    emulator.faults.add(
        PUT,
        status=429,
        headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(clock.now()) + 3600)},
    )

    run(contacts_table(2), destination(max_backoff_seconds=30))

    assert _emails(emulator) == _expected(2)
    puts = upserts(emulator)
    assert [r.status for r in puts] == [429, 202]
    assert clock.sleeps[0] == 30
    assert puts[1].at - puts[0].at == 30


def test_5xx_bursts_and_dropped_connections_are_survived_with_every_contact_delivered_once(
    emulator, destination, run, state_path, clock
) -> None:
    emulator.faults.add(PUT, status=500, times=2)
    emulator.faults.add(PUT, status=503)
    emulator.faults.add(PUT, action="drop", times=2)
    emulator.faults.add(PUT, action="drop_after")  # accepted, but the answer is lost
    emulator.faults.add(PUT, action="hang")  # no answer: the read timeout gives up on it
    emulator.faults.add(IMPORTS, status=502)
    emulator.faults.add(IMPORTS, action="drop")

    dest = destination(
        max_contacts_per_request=3, max_in_flight=1, max_attempts=10, read_timeout=0.5
    )

    info = run(contacts_table(9), dest)

    assert _emails(emulator) == _expected(9)
    statuses = [r.status for r in upserts(emulator)]
    assert statuses[:7] == [500, 500, 503, 0, 0, 0, 0]
    assert statuses[7:] == [202, 202, 202]
    assert rejects_of(state_path) == []
    summary = run_summary(state_path, info)
    assert summary["contacts_sent"] == 9
    assert summary["requests"] == 3
    assert summary["jobs"].get("completed") == 3
    # Seven backoffs on the first body (full jitter within 2^(attempt-1) s), then polling.
    backoffs = clock.sleeps[:7]
    for attempt, wait in enumerate(backoffs, start=1):
        assert 0.0 <= wait <= min(60.0, 2.0 ** (attempt - 1))


def test_the_temporary_block_403_is_transient_and_survived(
    emulator, destination, run, state_path, clock
) -> None:
    block = {"errors": [{"field": None, "message": "Too many bad requests. Temporary block"}]}
    emulator.faults.add(PUT, status=403, body=block, times=2)

    run(contacts_table(4), destination())

    assert _emails(emulator) == _expected(4)
    assert [r.status for r in upserts(emulator)] == [403, 403, 202]
    assert rejects_of(state_path) == []
    assert len(clock.sleeps) >= 2
    assert 0.0 <= clock.sleeps[0] <= 1.0 and 0.0 <= clock.sleeps[1] <= 2.0


def test_a_tight_rate_limit_is_paced_by_waiting_up_to_each_window_reset(
    clock, state_path, run
) -> None:
    window = 60.0
    limits = {PUT: RateLimit(limit=2, window_seconds=window)}
    with Emulator(api_key=API_KEY, clock=clock, rate_limits=limits) as emu:
        start = clock.now()

        run(contacts_table(10), destination_for(emu, state_path, max_contacts_per_request=2))

        assert _emails(emu) == _expected(10)
        accepted = [r for r in upserts(emu) if r.status == 202]
        assert [r.contact_count for r in accepted] == [2, 2, 2, 2, 2]
        by_window: dict[int, list[float]] = {}
        for r in accepted:
            by_window.setdefault(math.floor(r.at / window), []).append(r.at)
        assert [len(v) for _, v in sorted(by_window.items())] == [2, 2, 1]
        first_reset = (math.floor(start / window) + 1) * window
        # Each later window is entered right at its reset (plus at most the 429 jitter).
        for index, (w, times) in enumerate(sorted(by_window.items())[1:]):
            assert w * window == first_reset + index * window
            assert 0.0 <= min(times) - w * window <= RATE_LIMIT_JITTER_SECONDS
        assert any(first_reset - start <= s <= first_reset - start + 1 for s in clock.sleeps)
        assert max(clock.sleeps) <= window + RATE_LIMIT_JITTER_SECONDS


@pytest.mark.parametrize("answer", [413, 400])
def test_a_body_refused_as_too_large_goes_again_in_halves_and_later_bodies_are_smaller(
    emulator, destination, run, state_path, answer
) -> None:
    if answer == 413:
        emulator.faults.add(PUT, status=413, times=1)
    else:  # a server-side cap below 6 MB, answered 400 with its own wording
        whole = len(json.dumps(contacts_table(300).to_pylist(), separators=(",", ":")))
        emulator.limit_upsert_body(whole * 3 // 4, answer=400)

    first = run(contacts_table(300), destination())

    sizes = [r.body_bytes for r in upserts(emulator)]
    assert [r.status for r in upserts(emulator)] == [answer, 202, 202]
    assert sizes[1] + sizes[2] < sizes[0] + 20 and max(sizes[1:]) < sizes[0]
    assert len(emulator.contacts()) == 300
    summary = run_summary(state_path, first)
    assert (summary["new"], summary["requests"], summary["rejected_by_api"]) == (300, 2, 0)
    learned = state_rows(state_path, "SELECT value FROM meta WHERE key LIKE 'learned.%'")
    assert learned == [(str(sizes[0] // 2),)]
    emulator.clear_requests()

    run(contacts_table(300, start=300), destination())  # a later run packs to what passed

    later = upserts(emulator)
    assert len(later) >= 2 and max(r.body_bytes for r in later) <= sizes[0] // 2
    assert {r.status for r in later} == {202}


def test_a_single_contact_refused_as_too_large_is_a_reject_not_a_failed_load(
    emulator, destination, run, state_path
) -> None:
    emulator.faults.add(PUT, status=413, times=3)

    run(contacts_table(2), destination())

    # 2 contacts -> 413; each alone -> 413, 413: both refused as rows, the load completes.
    assert [r.status for r in upserts(emulator)] == [413, 413, 413]
    refused = rejects_of(state_path, "api")
    assert sorted(r["row_number"] for r in refused) == [0, 1]
    assert all("too large even for this contact alone" in r["reason"] for r in refused)


def test_a_contact_larger_than_the_learned_body_size_goes_alone_and_the_size_grows_back(
    emulator, destination, run, state_path
) -> None:
    learned_sql = "SELECT value FROM meta WHERE key = 'learned.max_request_bytes'"
    emulator.limit_upsert_body(180)
    run(contacts_table(20), destination())
    learned = int(state_rows(state_path, learned_sql)[0][0])
    assert learned <= 180
    emulator.clear_upsert_body_limit()  # the smaller limit was temporary
    emulator.clear_requests()
    address = "a-rather-long-address-" + "x" * 40 + "@example.com"
    big = pa.table({"email": [address], "first_name": ["F" * 50], "last_name": ["L" * 50]})
    mapping = {"email": "email", "first_name": "first_name", "last_name": "last_name"}
    dest = destination(mapping=mapping)

    run(big, dest)

    (sent,) = upserts(emulator)
    assert sent.status == 202 and sent.body_bytes > learned  # alone, over the learned size
    assert address in {c["email"] for c in emulator.contacts()}
    assert rejects_of(state_path, "validation") == []
    assert state_rows(state_path, learned_sql) == [(str(sent.body_bytes),)]  # grown back


def test_an_unreachable_host_fails_the_load_once_terminally_not_six_times_over(
    emulator, destination, run, state_path, caplog
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    caplog.set_level(logging.WARNING, logger="sendgrid_destination")

    with pytest.raises(PipelineStepFailed) as failed:
        run(contacts_table(3), destination(base_url=closed, max_attempts=3, connect_timeout=1.0))

    assert isinstance(cause_of(failed.value, HostUnreachableError), HostUnreachableError)
    refused = [r for r in caplog.records if "could not connect" in r.getMessage()]
    assert len(refused) == 2  # the one call's retries: dlt did not run the job again
    assert not state_path.exists() or state_rows(state_path, "SELECT count(*) FROM requests") == [
        (0,)
    ]
