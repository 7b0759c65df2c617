"""Fixed-window rate limits per route, with SendGrid's ``X-RateLimit-*`` headers.

Contract: each route key has a ``RateLimit(limit, window_seconds)``; windows are aligned
to multiples of ``window_seconds`` on the injected clock. ``consume`` counts one request
and says whether it is within the budget; ``peek`` gives the headers without counting.
``X-RateLimit-Reset`` is the end of the current window as integer Unix epoch seconds, as
in the docs' example (``1392815263``). SendGrid publishes no numbers for the contacts
routes, so the default (10,000 per 60 s) is deliberately generous: tests that want a 429
set a tight limit for one route.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from .clock import Clock
from .routes import check_route_key


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` requests per fixed window of ``window_seconds``."""

    limit: int
    window_seconds: float

    def __post_init__(self) -> None:
        if self.limit < 0 or self.window_seconds <= 0:
            raise ValueError("RateLimit needs limit >= 0 and window_seconds > 0")


DEFAULT_RATE_LIMIT = RateLimit(10_000, 60.0)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    headers: dict[str, str]


class RateLimiter:
    """Per-route request counters over fixed windows."""

    def __init__(
        self,
        clock: Clock,
        limits: Mapping[str, RateLimit] | None = None,
        default: RateLimit = DEFAULT_RATE_LIMIT,
    ) -> None:
        self._clock = clock
        self._limits = {check_route_key(key): value for key, value in (limits or {}).items()}
        self._default = default
        self._lock = threading.Lock()
        self._used: dict[str, tuple[int, int]] = {}  # route key -> (window index, count)

    def consume(self, key: str) -> Decision:
        """Count one request on ``key``; ``allowed`` is false once the window's budget is spent."""
        with self._lock:
            limit, window, used = self._state(key)
            allowed = used < limit.limit
            if allowed:
                used += 1
                self._used[key] = (window, used)
            return Decision(allowed, self._headers(limit, window, used))

    def peek(self, key: str) -> dict[str, str]:
        with self._lock:
            limit, window, used = self._state(key)
            return self._headers(limit, window, used)

    def _state(self, key: str) -> tuple[RateLimit, int, int]:
        limit = self._limits.get(key, self._default)
        window = math.floor(self._clock.now() / limit.window_seconds)
        stored_window, used = self._used.get(key, (window, 0))
        return limit, window, used if stored_window == window else 0

    @staticmethod
    def _headers(limit: RateLimit, window: int, used: int) -> dict[str, str]:
        reset = math.ceil((window + 1) * limit.window_seconds)
        return {
            "X-RateLimit-Limit": str(limit.limit),
            "X-RateLimit-Remaining": str(max(0, limit.limit - used)),
            "X-RateLimit-Reset": str(reset),
        }
