"""The emulator's time source: anything with ``now()``.

Contract: ``Clock`` is structural, so the destination's ``FakeClock`` (or any object with a
``now() -> float`` in Unix epoch seconds) can be shared between a test, the client and the
emulator without the emulator importing the destination. ``SystemClock`` is the wall clock.
The emulator never sleeps on this clock: its real waits (``delay``, ``drip`` faults) are
real time, interruptible by ``stop()``.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch."""


class SystemClock:
    """The wall clock."""

    def now(self) -> float:
        return time.time()
