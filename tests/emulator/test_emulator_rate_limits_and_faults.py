"""X-RateLimit-* headers, 429s, and every action of the fault plan."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import pytest
import requests

from sendgrid_destination.clock import FakeClock
from sendgrid_destination.emulator import DEFAULT_RATE_LIMIT, Emulator, RateLimit

if TYPE_CHECKING:
    from .support import Api

UPSERT = "PUT /v3/marketing/contacts"
COUNT = "/v3/marketing/contacts/count"
RATE_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


# -- rate limits ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", COUNT, 200),
        ("GET", "/v3/marketing/field_definitions", 200),
        ("GET", "/v3/marketing/lists", 200),
        ("GET", "/v3/marketing/contacts/imports/unknown", 404),
        ("PUT", "/v3/marketing/contacts", 400),
        ("GET", "/v3/marketing/unknown", 404),
    ],
)
def test_every_api_response_carries_the_rate_limit_headers(
    api: Api, method: str, path: str, status: int
) -> None:
    response = api.request(method, path, json={})

    assert response.status_code == status
    assert all(name in response.headers for name in RATE_HEADERS)


def test_unauthorised_responses_carry_the_headers_too(emu: Emulator) -> None:
    response = requests.get(emu.base_url + COUNT, timeout=5)

    assert response.status_code == 401
    assert all(name in response.headers for name in RATE_HEADERS)


def test_the_default_limit_is_generous_and_reset_is_the_window_end_in_epoch_seconds(
    api: Api, clock: FakeClock
) -> None:
    response = api.get(COUNT)

    window = DEFAULT_RATE_LIMIT.window_seconds
    assert response.headers["X-RateLimit-Limit"] == "10000"
    assert response.headers["X-RateLimit-Remaining"] == "9999"
    reset = int(response.headers["X-RateLimit-Reset"])
    assert reset == (clock.now() // window + 1) * window
    assert clock.now() < reset <= clock.now() + window


def test_the_budget_is_per_route(clock: FakeClock, api_for: type[Api]) -> None:
    limits = {"GET /v3/marketing/contacts/count": RateLimit(2, 10)}
    with Emulator("SG.k", clock=clock, rate_limits=limits) as emu:
        api = api_for(emu)
        remaining = [api.get(COUNT).headers["X-RateLimit-Remaining"] for _ in range(2)]
        other = api.get("/v3/marketing/lists")

    assert remaining == ["1", "0"]
    assert other.status_code == 200


def test_a_spent_budget_answers_429_until_the_window_resets(
    clock: FakeClock, api_for: type[Api]
) -> None:
    clock.advance(-(clock.now() % 10))  # start at a window boundary
    with Emulator("SG.k", clock=clock, rate_limits={UPSERT: RateLimit(1, 10)}) as emu:
        api = api_for(emu)
        first = api.upsert([{"email": "a@example.com"}])
        limited = api.upsert([{"email": "b@example.com"}])
        clock.advance(10)
        after_reset = api.upsert([{"email": "c@example.com"}])
        jobs = emu.jobs()

    assert first.status_code == 202
    assert limited.status_code == 429
    assert limited.json() == {"errors": [{"field": None, "message": "too many requests"}]}
    assert limited.headers["X-RateLimit-Remaining"] == "0"
    assert limited.headers["X-RateLimit-Reset"] == str(int(clock.now()))
    assert after_reset.status_code == 202
    assert len(jobs) == 2


def test_a_rate_limit_for_an_unknown_route_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="unknown route"):
        Emulator("SG.k", rate_limits={"PUT /v3/marketing/contact": RateLimit(1, 1)})


# -- faults ------------------------------------------------------------------------------


def test_a_status_fault_answers_that_status_for_its_times_then_stops(
    api: Api, emu: Emulator
) -> None:
    emu.faults.add(UPSERT, status=503, times=2)

    statuses = [api.upsert([{"email": "a@example.com"}]).status_code for _ in range(3)]

    assert statuses == [503, 503, 202]
    assert [r.fault for r in emu.requests] == ["status", "status", None]
    assert len(emu.jobs()) == 1


def test_a_status_fault_has_the_error_envelope_and_the_rate_limit_headers(
    api: Api, emu: Emulator
) -> None:
    emu.faults.add(UPSERT, status=500)

    response = api.upsert([{"email": "a@example.com"}])

    assert response.json() == {"errors": [{"field": None, "message": "internal server error"}]}
    assert all(name in response.headers for name in RATE_HEADERS)


def test_a_status_fault_may_carry_its_own_body_and_headers(api: Api, emu: Emulator) -> None:
    emu.faults.add(UPSERT, status=429, body={"errors": []}, headers={"X-RateLimit-Reset": "1"})

    response = api.upsert([{"email": "a@example.com"}])

    assert (response.status_code, response.json()) == (429, {"errors": []})
    assert response.headers["X-RateLimit-Reset"] == "1"


def test_faults_are_fifo_per_route_and_leave_other_routes_alone(api: Api, emu: Emulator) -> None:
    emu.faults.add(UPSERT, status=500)
    emu.faults.add(UPSERT, status=502)

    count = api.get(COUNT)
    first, second = (api.upsert([{"email": "a@example.com"}]) for _ in range(2))

    assert count.status_code == 200
    assert (first.status_code, second.status_code) == (500, 502)


def test_clearing_the_faults_restores_normal_answers(api: Api, emu: Emulator) -> None:
    emu.faults.add(UPSERT, status=500, times=5)
    emu.faults.clear()

    assert api.upsert([{"email": "a@example.com"}]).status_code == 202


def test_a_fault_for_an_unknown_route_is_refused(emu: Emulator) -> None:
    with pytest.raises(ValueError, match="unknown route"):
        emu.faults.add("PUT /v3/marketing/contact", status=500)


def test_a_delay_fault_sleeps_then_answers_normally(api: Api, emu: Emulator) -> None:
    emu.faults.add(UPSERT, action="delay", delay=0.3)

    started = time.monotonic()
    response = api.upsert([{"email": "a@example.com"}])

    assert time.monotonic() - started >= 0.3
    assert response.status_code == 202
    assert len(emu.jobs()) == 1


def test_a_drop_fault_closes_the_socket_without_a_response_or_a_job(
    api: Api, emu: Emulator
) -> None:
    emu.faults.add(UPSERT, action="drop")

    with pytest.raises(requests.ConnectionError):
        api.upsert([{"email": "a@example.com"}])

    assert emu.jobs() == []
    assert emu.requests[-1].status == 0
    assert api.upsert([{"email": "a@example.com"}]).status_code == 202


def test_a_drop_after_fault_creates_the_job_but_loses_the_response(api: Api, emu: Emulator) -> None:
    emu.faults.add(UPSERT, action="drop_after")

    with pytest.raises(requests.ConnectionError):
        api.upsert([{"email": "a@example.com"}])

    assert len(emu.jobs()) == 1


def test_a_hang_fault_never_answers_so_the_client_times_out(api: Api, emu: Emulator) -> None:
    emu.faults.add(UPSERT, action="hang")

    with pytest.raises(requests.ReadTimeout):
        api.put(
            "/v3/marketing/contacts", json={"contacts": [{"email": "a@example.com"}]}, timeout=0.3
        )

    assert emu.jobs() == []
    assert api.upsert([{"email": "a@example.com"}]).status_code == 202


def test_stop_returns_promptly_while_a_request_hangs(api_for: type[Api]) -> None:
    emu = Emulator("SG.k").start()
    emu.faults.add(UPSERT, action="hang")
    api = api_for(emu)
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            api.put("/v3/marketing/contacts", json={"contacts": [{"x": 1}]}, timeout=30)
        except requests.RequestException as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    deadline = time.monotonic() + 5
    while not emu.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    emu.stop()
    stopped_in = time.monotonic() - started
    caller.join(timeout=5)

    assert stopped_in < 1.0
    assert not caller.is_alive()
    assert isinstance(outcome[0], requests.ConnectionError)
