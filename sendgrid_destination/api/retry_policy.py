"""Retry policy for SendGrid API calls: pure functions of a response, no I/O.

Contract:

* ``retry_decision(status, headers, messages, ...)`` classifies one attempt's outcome as
  ``ok``, ``retry`` (with how long to wait, and whether that wait is for the rate limit or a
  backoff) or ``terminal``. ``status=None`` means no response arrived (timeout, refused or
  dropped connection).
* Retried: 429, every 5xx, transport failures, and the 403 "Too many bad requests. Temporary
  block" that SendGrid's errors page lists (it is not an auth problem, so it must not be
  reported as one; ``messages`` recognises it). Terminal: 401, any other 403, every other
  4xx (400, 404, 405...) and every 3xx: API calls never follow redirects (a 307 on PUT
  once forwarded contact bodies to another host, whose 202 was taken as success). A 413, or a
  4xx whose message says the body is too large, is ``too_large``: not retried as is (the
  same body would be refused), the caller sends smaller bodies.
* A 429 waits until ``X-RateLimit-Reset`` (never less) plus a small jitter; without a usable
  header it falls back to exponential backoff with full jitter. Every wait is clamped to
  ``max_backoff_seconds`` so a hostile header cannot park a load for hours.
* ``pacing_wait(headers, now)`` says how long the *next* request to a route must wait when
  ``X-RateLimit-Remaining`` reached 0.

Randomness comes from an injected ``random.Random`` and time from an explicit ``now``, so a
test can assert exact sleep sequences. Whether attempts are left is the caller's business.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from sendgrid_destination.api.messages import is_temporary_block, says_body_too_large

Outcome = Literal["ok", "retry", "terminal"]
Kind = Literal[
    "ok",
    "redirect",
    "rate_limited",
    "temporary_block",
    "server_error",
    "transport",
    "unauthorized",
    "forbidden",
    "too_large",
    "rejected",
]
WaitReason = Literal["rate_limit", "backoff"]

# The docs show X-RateLimit-Reset as a Unix epoch (1392815263), but the recipients data
# erasure spec calls it "the amount of time (in seconds) until the current window is over".
# No real epoch is below 10^9 (September 2001), so smaller values must be deltas.
RESET_DELTA_THRESHOLD: Final = 1e9
# A small spread on rate-limit waits so that threads released by one reset do not all hit
# the new window in the same instant; small because the reset itself is the real floor.
RATE_LIMIT_JITTER_SECONDS: Final = 1.0
BASE_BACKOFF_SECONDS: Final = 1.0

_TERMINAL_KINDS: Final[frozenset[Kind]] = frozenset(
    {"redirect", "unauthorized", "forbidden", "too_large", "rejected"}
)


@dataclass(frozen=True)
class RetryPolicy:
    """How many attempts, and the bounds of every wait."""

    max_attempts: int = 8
    max_backoff_seconds: float = 60.0
    base_backoff_seconds: float = BASE_BACKOFF_SECONDS
    rate_limit_jitter_seconds: float = RATE_LIMIT_JITTER_SECONDS


@dataclass(frozen=True)
class Decision:
    """What to do after one attempt."""

    outcome: Outcome
    kind: Kind
    wait_seconds: float = 0.0
    wait_reason: WaitReason | None = None

    @property
    def should_retry(self) -> bool:
        return self.outcome == "retry"


def parse_reset(value: str | None, now: float) -> float | None:
    """Seconds until the window resets, from an ``X-RateLimit-Reset`` value.

    Epoch (>= 10^9) or delta (< 10^9) seconds; a reset in the past is 0. Missing, garbage,
    NaN or infinite values give ``None``. The result is not clamped: that is policy.
    """
    if value is None:
        return None
    try:
        reset = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(reset):
        return None
    wait = reset if reset < RESET_DELTA_THRESHOLD else reset - now
    return max(0.0, wait)


def parse_remaining(value: str | None) -> int | None:
    """The ``X-RateLimit-Remaining`` count, or ``None`` when missing or not an integer."""
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def backoff_seconds(attempt: int, rng: random.Random, policy: RetryPolicy) -> float:
    """Full-jitter exponential backoff after the ``attempt``-th (1-based) failed attempt."""
    exponent = min(max(attempt - 1, 0), 62)  # keeps 2**exponent a finite float
    ceiling = min(policy.max_backoff_seconds, policy.base_backoff_seconds * 2.0**exponent)
    return rng.uniform(0.0, ceiling)


def rate_limit_seconds(reset_wait: float, rng: random.Random, policy: RetryPolicy) -> float:
    """The reset wait plus a small jitter, clamped to the maximum wait."""
    jitter = rng.uniform(0.0, policy.rate_limit_jitter_seconds)
    return min(policy.max_backoff_seconds, reset_wait + jitter)


def pacing_wait(headers: Mapping[str, str], now: float, policy: RetryPolicy) -> float | None:
    """How long the next request to this route must wait, or ``None`` if it need not.

    Only a spent budget (``X-RateLimit-Remaining: 0``) with a usable reset asks for a wait.
    """
    remaining = parse_remaining(_header(headers, "X-RateLimit-Remaining"))
    if remaining is None or remaining > 0:
        return None
    reset_wait = parse_reset(_header(headers, "X-RateLimit-Reset"), now)
    if reset_wait is None:
        return None
    return min(policy.max_backoff_seconds, reset_wait)


def classify(status: int | None, messages: Sequence[str] = ()) -> Kind:
    """The kind of outcome a status (``None``: no response) and its error messages are."""
    if status is None:
        return "transport"
    if 200 <= status < 300:
        return "ok"
    if 300 <= status < 400:
        return "redirect"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    if status == 401:
        return "unauthorized"
    if status == 403:
        return "temporary_block" if is_temporary_block(messages) else "forbidden"
    if status == 413 or says_body_too_large(messages):
        return "too_large"
    return "rejected"


def retry_decision(
    status: int | None,
    headers: Mapping[str, str],
    messages: Sequence[str],
    *,
    attempt: int,
    now: float,
    rng: random.Random,
    policy: RetryPolicy,
) -> Decision:
    """Classify one attempt and, when it is worth retrying, say how long to wait first."""
    kind = classify(status, messages)
    if kind == "ok":
        return Decision("ok", kind)
    if kind in _TERMINAL_KINDS:
        return Decision("terminal", kind)
    if kind == "rate_limited":
        reset_wait = parse_reset(_header(headers, "X-RateLimit-Reset"), now)
        # A 429 whose reset is already past contradicts itself (often clock skew between us
        # and SendGrid); waiting "0 s" would hammer the API, so treat it as no header.
        if reset_wait is not None and reset_wait > 0:
            return Decision(
                "retry", kind, rate_limit_seconds(reset_wait, rng, policy), "rate_limit"
            )
    return Decision("retry", kind, backoff_seconds(attempt, rng, policy), "backoff")


def _header(headers: Mapping[str, str], name: str) -> str | None:
    # requests' headers are case-insensitive but a plain dict is not; proxies re-case them.
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)
