"""Fixtures for the emulator's contract tests: a fresh emulator on a loopback port per test,
a ``FakeClock`` it shares with the test, an authenticated ``requests`` client, and the
official OpenAPI specs (skipped with a reason when absent, unless
``SENDGRID_DESTINATION_REQUIRE_OPENAPI=1``)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from sendgrid_destination.clock import FakeClock
from sendgrid_destination.emulator import Emulator

from .support import API_KEY, SPEC_FILES, Api, OpenApi, spec_dir


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def emu(clock: FakeClock) -> Iterator[Emulator]:
    with Emulator(API_KEY, clock=clock, forbidden_keys={"SG.test-noscope"}) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def api_for() -> type[Api]:
    """The client class, for tests that start their own emulator: ``api_for(emu)``."""
    return Api


@pytest.fixture
def api(emu: Emulator) -> Iterator[Api]:
    client = Api(emu)
    yield client
    client.session.close()


@pytest.fixture(scope="session")
def openapi() -> OpenApi:
    folder = spec_dir()
    if not all((folder / name).is_file() for name in SPEC_FILES):
        reason = f"the SendGrid OpenAPI specs are not in {folder} (set SENDGRID_OPENAPI_DIR)"
        if os.environ.get("SENDGRID_DESTINATION_REQUIRE_OPENAPI") == "1":
            pytest.fail(reason + " and SENDGRID_DESTINATION_REQUIRE_OPENAPI=1")
        pytest.skip(reason)
    return OpenApi(folder)
