"""base_url: normalized or refused before any request, and an unreachable host fails fast,
naming the host, within connect_timeout × max_attempts."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.api.endpoint import normalize_base_url
from sendgrid_destination.clock import FakeClock, SystemClock
from sendgrid_destination.errors import ConfigurationError, HostUnreachableError

MakeClient = Callable[..., SendGridClient]
KEY = "SG.test-key"
PASSWORD = "hunter2-secret"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://api.sendgrid.com", "https://api.sendgrid.com"),
        ("https://api.sendgrid.com/", "https://api.sendgrid.com"),
        ("https://api.sendgrid.com/v3", "https://api.sendgrid.com"),
        ("https://api.sendgrid.com/v3/", "https://api.sendgrid.com"),
        ("  HTTPS://API.EU.SendGrid.com  ", "https://api.eu.sendgrid.com"),
        ("https://gateway.example:8443", "https://gateway.example:8443"),
        ("http://127.0.0.1:3030", "http://127.0.0.1:3030"),
        ("http://127.9.9.9:3030/v3", "http://127.9.9.9:3030"),
        ("http://localhost:3030", "http://localhost:3030"),
        ("http://[::1]:3030", "http://[::1]:3030"),
    ],
    ids=[
        "host",
        "trailing-slash",
        "trailing-v3",
        "trailing-v3-slash",
        "case-and-blanks",
        "https-with-port",
        "loopback-http",
        "loopback-range-with-v3",
        "localhost-http",
        "ipv6-loopback-http",
    ],
)
def test_a_base_url_is_normalized_to_scheme_host_and_port(given: str, expected: str) -> None:
    assert normalize_base_url(given) == expected


@pytest.mark.parametrize(
    ("given", "expected_in_message"),
    [
        ("api.sendgrid.com", "https://api.sendgrid.com"),
        ("ftp://api.sendgrid.com", "http(s)"),
        ("https://", "http(s)"),
        ("https://api.sendgrid.com:notaport", "http(s)"),
        ("https://api.sendgrid.com/v3/marketing/contacts", "'/v3/marketing/contacts'"),
        ("https://api.sendgrid.com/sendgrid", "without a path"),
        ("https://api.sendgrid.com/?region=eu", "query or fragment"),
        ("https://api.sendgrid.com/#top", "query or fragment"),
        ("http://api.sendgrid.com", "unencrypted"),
        ("http://10.0.0.8:3030", "unencrypted"),
        ("http://[2001:db8::1]", "unencrypted"),
        ("http://localhost.example.com", "unencrypted"),
    ],
    ids=[
        "no-scheme",
        "ftp",
        "no-host",
        "bad-port",
        "route-path",
        "other-path",
        "query",
        "fragment",
        "plain-http-to-sendgrid",
        "plain-http-to-a-private-address",
        "plain-http-to-ipv6",
        "plain-http-to-a-look-alike-of-localhost",
    ],
)
def test_a_base_url_that_cannot_work_is_refused_with_a_message_naming_the_fix(
    given: str, expected_in_message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        SendGridClient(KEY, base_url=given)
    assert expected_in_message in str(caught.value)


@pytest.mark.parametrize(
    "given",
    [
        f"https://user:{PASSWORD}@api.sendgrid.com",
        f"https://{PASSWORD}@api.sendgrid.com/v3",
        f"http://user:{PASSWORD}@example.com/path?x=1",
    ],
    ids=["user-and-password", "token-as-user", "with-path-and-query"],
)
def test_a_password_in_base_url_is_refused_and_never_echoed(
    given: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConfigurationError) as caught:
        SendGridClient(KEY, base_url=given)
    texts = [str(caught.value), repr(caught.value), *(r.getMessage() for r in caplog.records)]
    assert "user name or password" in str(caught.value)
    assert all(PASSWORD not in text and "x=1" not in text for text in texts)


def test_a_base_url_ending_in_v3_reaches_the_routes_without_a_doubled_v3(
    emu: Any, make_client: MakeClient
) -> None:
    client = make_client(emu.base_url + "/v3/")

    assert client.upsert_contacts(b'{"contacts":[{"email":"a@x.com"}]}')
    assert [r.path for r in emu.requests] == ["/v3/marketing/contacts"]
    assert repr(client) == (
        f"SendGridClient(base_url={emu.base_url!r}, api_key='<masked>', on_behalf_of=None)"
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("base_url", "reason"),
    [
        (f"http://127.0.0.1:{closed_port()}", "connection refused"),
        ("https://sendgrid-destination-test.invalid", "name not resolved"),
    ],
    ids=["closed-port", "unresolvable-name"],
)
def test_an_unreachable_host_fails_within_connect_timeout_times_attempts_naming_the_host(
    base_url: str,
    reason: str,
    make_client: MakeClient,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="sendgrid_destination")
    host = base_url.split("://", 1)[1]
    client = make_client(base_url, connect_timeout=2.0, max_attempts=6, max_backoff_seconds=60)
    started = time.monotonic()

    with pytest.raises(HostUnreachableError) as caught:
        client.lists()  # its URL carries a query string: ?page_size=1000

    elapsed = time.monotonic() - started
    # Waits are virtual (FakeClock), attempts real: together within 2 s x 6.
    assert elapsed + sum(clock.sleeps) <= 12.0
    message = str(caught.value)
    assert host in message and reason in message and "base_url" in message
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == client.stats.retries == len(clock.sleeps) >= 1
    for record in warnings:
        text = record.getMessage()
        assert host in text and reason in text
        assert KEY not in text and "page_size" not in text and "?" not in text


def test_an_unreachable_host_gives_up_in_real_time_within_the_bound() -> None:
    client = SendGridClient(
        KEY,
        base_url=f"http://127.0.0.1:{closed_port()}",
        connect_timeout=0.2,
        max_attempts=5,
        clock=SystemClock(),
    )
    started = time.monotonic()

    with pytest.raises(HostUnreachableError, match="connection refused"):
        client.field_definitions()

    # connect_timeout x max_attempts = 1.0 s; the margin is for the interpreter, not waits.
    assert time.monotonic() - started <= 1.0 + 0.25
    assert client.stats.transport_errors >= 2
    client.close()
