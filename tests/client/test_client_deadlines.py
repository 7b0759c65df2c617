"""Each attempt's response body ends connect_timeout + read_timeout after the response started.

The bound starts with the response, not the request: sending a large body (a CSV import's
file, over a slow uplink) takes as long as it takes, bounded per socket write, and a file the
upload host took must not be reported as failed (and imported again) because its upload
outlasted the bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.clock import FakeClock
from sendgrid_destination.errors import TransportError

MakeClient = Callable[..., SendGridClient]


def test_a_response_dripping_a_byte_at_a_time_is_cut_off_and_retried_within_the_bound(
    drip_host: Any, make_client: MakeClient, clock: FakeClock
) -> None:
    # Each byte comes well within read_timeout, so only a bound on the whole attempt helps:
    # without one, each attempt would last len(body) x 0.1 s = 14.5 s.
    client = make_client(drip_host.url, connect_timeout=0.2, read_timeout=0.4, max_attempts=2)
    started = time.monotonic()

    with pytest.raises(TransportError, match=r"127\.0\.0\.1") as caught:
        client.field_definitions()

    elapsed = time.monotonic() - started
    assert elapsed < 2 * (0.2 + 0.4) + 0.5  # two attempts, a margin for the interpreter
    assert drip_host.requests == 2 == client.stats.transport_errors
    assert drip_host.bytes_sent < len(drip_host.body)
    assert len(clock.sleeps) == 1  # one backoff between the two attempts
    assert "AttemptDeadlineExceeded" in str(caught.value)


def test_a_slow_response_that_ends_within_the_bound_is_read_whole(
    drip_host: Any, make_client: MakeClient
) -> None:
    drip_host.body = b'{"custom_fields": [], "reserved_fields": []}'
    drip_host.interval = 0.005  # about 0.2 s in all
    client = make_client(drip_host.url, connect_timeout=0.5, read_timeout=2.0, max_attempts=1)

    definitions = client.field_definitions()

    assert definitions.custom == () and definitions.reserved == ()
    assert drip_host.requests == 1


def test_the_bound_starts_when_the_response_starts_so_a_long_request_is_not_cut_off(
    drip_host: Any, make_client: MakeClient
) -> None:
    # The answer starts 0.5 s after the request (as after a long upload), then takes 0.4 s:
    # 0.9 s in all, over connect + read (0.8 s), each part within its own bound.
    drip_host.body = b'{"custom_fields": [], "reserved_fields": []}'
    drip_host.header_delay, drip_host.interval = 0.5, 0.4 / len(drip_host.body)
    client = make_client(drip_host.url, connect_timeout=0.2, read_timeout=0.6, max_attempts=1)

    definitions = client.field_definitions()

    assert definitions.custom == () and drip_host.requests == 1
