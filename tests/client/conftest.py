"""Fixtures for the client tests: one FakeClock shared by the client and the emulator.

Sharing the clock makes every wait exact (the emulator's X-RateLimit-Reset is stamped from
the same clock the client sleeps on) and keeps the suite from really sleeping.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.clock import FakeClock

API_KEY = "SG.test-key"
SEED = 7


# The emulator aligns rate-limit windows to multiples of their length; starting on a multiple
# of 60 makes a 60 s window begin with the test, so its first reset is exactly START + 60.
START = 1_700_000_040.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=START)


@pytest.fixture
def start_emulator(clock: FakeClock) -> Iterator[Callable[..., Any]]:
    """Start an emulator on the shared clock; every one started is stopped at teardown."""
    from sendgrid_destination.emulator import Emulator

    started: list[Any] = []

    def start(**kwargs: Any) -> Any:
        kwargs.setdefault("api_key", API_KEY)
        kwargs.setdefault("clock", clock)
        emulator = Emulator(**kwargs)
        emulator.__enter__()
        started.append(emulator)
        return emulator

    yield start
    for emulator in reversed(started):
        emulator.__exit__(None, None, None)


@pytest.fixture
def emu(start_emulator: Callable[..., Any]) -> Any:
    return start_emulator(job_polls_until_done=1)


@pytest.fixture
def make_client(clock: FakeClock) -> Iterator[Callable[..., SendGridClient]]:
    """Build clients on the shared clock with a seeded Random; all are closed at teardown."""
    clients: list[SendGridClient] = []

    def make(base_url: str, **kwargs: Any) -> SendGridClient:
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("rng", random.Random(SEED))
        client = SendGridClient(kwargs.pop("api_key", API_KEY), base_url=base_url, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(emu: Any, make_client: Callable[..., SendGridClient]) -> SendGridClient:
    return make_client(emu.base_url)


@pytest.fixture
def api_key() -> str:
    return API_KEY


@pytest.fixture
def replica() -> Callable[[], random.Random]:
    """Makes a Random drawing the same sequence as each client ``make_client`` builds."""
    return lambda: random.Random(SEED)


class _LoopbackHost:
    """A threaded HTTP server on loopback for one handler class; ``close`` stops it."""

    url: str

    def _serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class PresignedHost(_LoopbackHost):
    """A loopback file host standing in for the storage behind a job's ``errors_url``."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b""
        self.headers: dict[str, str] = {}
        self.requests: list[dict[str, str]] = []  # lower-cased headers of each request
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.requests.append({k.lower(): v for k, v in self.headers.items()})
                self.answer()

            def do_PUT(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                host.requests.append({k.lower(): v for k, v in self.headers.items()})
                self.answer()

            def answer(self) -> None:
                self.send_response(host.status)
                self.send_header("Content-Type", "text/csv")
                self.send_header("Content-Length", str(len(host.body)))
                for name, value in host.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(host.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep the test output quiet

        self._serve(Handler)


@pytest.fixture
def presigned_host() -> Iterator[PresignedHost]:
    host = PresignedHost()
    yield host
    host.close()


class DripHost(_LoopbackHost):
    """A loopback server whose JSON answer arrives one byte every ``interval`` seconds."""

    def __init__(self) -> None:
        self.body = b'{"custom_fields": [], "reserved_fields": []}' + b" " * 100
        self.interval = 0.1
        self.header_delay = 0.0  # seconds before the status line (a slow upload's answer)
        self.requests = 0
        self.bytes_sent = 0
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.requests += 1
                time.sleep(host.header_delay)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(host.body)))
                self.end_headers()
                try:
                    for index in range(len(host.body)):  # bounded by the body's length
                        self.wfile.write(host.body[index : index + 1])
                        self.wfile.flush()
                        host.bytes_sent += 1
                        time.sleep(host.interval)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up: that is what the tests want to see

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._serve(Handler)


@pytest.fixture
def drip_host() -> Iterator[DripHost]:
    host = DripHost()
    yield host
    host.close()
