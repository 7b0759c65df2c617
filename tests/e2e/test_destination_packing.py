"""Packing over a real pipeline: every upsert body the emulator receives respects both the
byte and the contact limit, bodies are filled before the next starts, and every contact is
delivered exactly once."""

from __future__ import annotations

import json
import math

import pytest

from tests.e2e.conftest import contacts_table, rejects_of, run_summary, upserts

PREFIX = b'{"contacts":['
SUFFIX = b"]}"
NAMES = ["Ann", "Zoë", "李小龙", "Bartholomew", "Ëmïlÿ-Jõhänsson", "O'Brien", 'Quote"d', "X" * 40]


def _table(n: int):
    return contacts_table(n, first_name=[f"{NAMES[i % len(NAMES)]} {i}" for i in range(n)])


def _contact_bytes(n: int) -> list[int]:
    """The UTF-8 size of each contact object in a body, without its separating comma."""
    table = _table(n)
    return [
        len(
            json.dumps(
                {"email": e, "first_name": f}, separators=(",", ":"), ensure_ascii=False
            ).encode()
        )
        for e, f in zip(table["email"].to_pylist(), table["first_name"].to_pylist(), strict=True)
    ]


def _greedy_bodies(sizes: list[int], max_bytes: int, max_contacts: int) -> list[tuple[int, int]]:
    """(contacts, bytes) of each body when every body is filled before the next starts."""
    bodies: list[tuple[int, int]] = []
    count, nbytes = 0, 0
    for size in sizes:
        grown = nbytes + size + (1 if count else 0)
        if count and (count == max_contacts or len(PREFIX) + grown + len(SUFFIX) > max_bytes):
            bodies.append((count, len(PREFIX) + nbytes + len(SUFFIX)))
            count, nbytes, grown = 0, 0, size
        count, nbytes = count + 1, grown
    bodies.append((count, len(PREFIX) + nbytes + len(SUFFIX)))
    return bodies


@pytest.mark.parametrize(
    ("max_bytes", "max_contacts"),
    [
        pytest.param(900, 30_000, id="bytes-bound"),
        pytest.param(6_000_000, 4, id="count-bound"),
        pytest.param(700, 7, id="both-limits"),
    ],
)
def test_every_upsert_body_respects_both_limits_and_each_contact_arrives_once(
    emulator, destination, run, state_path, max_bytes: int, max_contacts: int
) -> None:
    n = 45
    info = run(
        _table(n),
        destination(max_request_bytes=max_bytes, max_contacts_per_request=max_contacts),
    )

    puts = upserts(emulator)
    assert all(r.status == 202 for r in puts)
    for r in puts:
        assert r.body_bytes <= max_bytes
        assert r.contact_count is not None and 1 <= r.contact_count <= max_contacts
    assert sum(r.contact_count or 0 for r in puts) == n
    contacts = emulator.contacts()
    assert len(contacts) == n
    assert sorted(c["email"] for c in contacts) == sorted(f"user{i}@example.com" for i in range(n))
    assert emulator.contact("user2@example.com")["first_name"] == "李小龙 2"
    total = sum(r.body_bytes for r in puts)
    lower_bound = max(math.ceil(total / max_bytes), math.ceil(n / max_contacts))
    assert lower_bound <= len(puts) <= lower_bound + 1
    summary = run_summary(state_path, info)
    assert summary["requests"] == len(puts)
    assert summary["bytes_sent"] == total


def test_bodies_are_filled_to_the_limit_before_the_next_one_starts(
    emulator, destination, run
) -> None:
    n, max_bytes, max_contacts = 45, 700, 7

    # One body in flight at a time, so the emulator records the bodies in packing order.
    dest = destination(
        max_request_bytes=max_bytes, max_contacts_per_request=max_contacts, max_in_flight=1
    )

    run(_table(n), dest)

    got = [(r.contact_count, r.body_bytes) for r in upserts(emulator)]
    assert got == _greedy_bodies(_contact_bytes(n), max_bytes, max_contacts)


def test_a_contact_larger_than_one_request_is_refused_as_a_row_and_the_others_are_sent(
    emulator, destination, run, state_path
) -> None:
    data = contacts_table(3, first_name=["A", "B" * 50, "C"])

    info = run(data, destination(max_request_bytes=80))

    assert sorted(c["email"] for c in emulator.contacts()) == [
        "user0@example.com",
        "user2@example.com",
    ]
    (refused,) = rejects_of(state_path)
    assert refused["row_number"] == 1 and refused["contact_key"] == "email:user1@example.com"
    assert "more than one request may carry" in refused["reason"]
    summary = run_summary(state_path, info)
    assert (summary["rejected"], summary["new"]) == (1, 2)
    emulator.clear_requests()

    run(data, destination(max_request_bytes=80))  # and it never blocks later runs

    assert upserts(emulator) == []
