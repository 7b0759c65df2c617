"""Time as a dependency: the real clock, and a fake one that tests advance instead of sleeping.

Everything that waits (rate-limit pacing, retry backoff, job polling) and everything that
stamps time (the emulator's rate-limit windows) takes a ``Clock``, so a test can share one
``FakeClock`` between the client and the emulator and assert the exact waits.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch."""

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (never negative)."""


class SystemClock:
    """The wall clock and a real sleep."""

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock:
    """A clock that only moves when someone sleeps on it; it records every sleep."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.sleeps.append(seconds)
            self._now += max(0.0, seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds
