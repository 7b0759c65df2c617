"""api/retry_policy.py: status classification, hostile reset headers and exact sleep sequences."""

from __future__ import annotations

import random

import pytest

from sendgrid_destination.api.retry_policy import (
    Decision,
    RetryPolicy,
    backoff_seconds,
    classify,
    pacing_wait,
    parse_remaining,
    parse_reset,
    retry_decision,
)

NOW = 1_700_000_000.0
POLICY = RetryPolicy(max_attempts=8, max_backoff_seconds=60.0)
TEMPORARY_BLOCK = "Too many bad requests. Temporary block"


def decide(
    status: int | None,
    headers: dict[str, str] | None = None,
    *messages: str,
    attempt: int = 1,
    seed: int = 0,
    policy: RetryPolicy = POLICY,
) -> Decision:
    return retry_decision(
        status,
        headers or {},
        list(messages),
        attempt=attempt,
        now=NOW,
        rng=random.Random(seed),
        policy=policy,
    )


@pytest.mark.parametrize(
    ("status", "messages", "kind", "outcome"),
    [
        (200, (), "ok", "ok"),
        (201, (), "ok", "ok"),
        (202, (), "ok", "ok"),
        (429, ("too many requests",), "rate_limited", "retry"),
        (500, (), "server_error", "retry"),
        (502, (), "server_error", "retry"),
        (503, (), "server_error", "retry"),
        (504, (), "server_error", "retry"),
        (None, (), "transport", "retry"),
        (403, (TEMPORARY_BLOCK,), "temporary_block", "retry"),
        (403, ("temporary block",), "temporary_block", "retry"),
        (403, ("TOO MANY BAD REQUESTS",), "temporary_block", "retry"),
        (401, ("The provided authorization grant is invalid",), "unauthorized", "terminal"),
        (403, ("access forbidden",), "forbidden", "terminal"),
        (403, (), "forbidden", "terminal"),
        (400, ("email 'x@y' is not valid",), "rejected", "terminal"),
        (404, (), "rejected", "terminal"),
        (405, (), "rejected", "terminal"),
        (413, (), "too_large", "terminal"),
        (400, ("request entity too large",), "too_large", "terminal"),
        (400, ("Message size exceeds the 4MB limit",), "too_large", "terminal"),
        (400, ("email 'message.too.large@x.com' is not valid",), "rejected", "terminal"),
        (400, ("first_name exceeds max length of 50",), "rejected", "terminal"),
        (406, (), "rejected", "terminal"),
        (301, (), "redirect", "terminal"),
        (307, (), "redirect", "terminal"),
        (308, (), "redirect", "terminal"),
    ],
    ids=[
        "200-ok",
        "201-ok",
        "202-ok",
        "429-retries",
        "500-retries",
        "502-retries",
        "503-retries",
        "504-retries",
        "no-response-retries",
        "403-temporary-block-retries",
        "403-temporary-block-lowercase-retries",
        "403-too-many-bad-requests-retries",
        "401-is-terminal",
        "403-access-forbidden-is-terminal",
        "403-without-message-is-terminal",
        "400-is-terminal",
        "404-is-terminal",
        "405-is-terminal",
        "413-is-too-large",
        "400-saying-too-large-is-too-large",
        "400-saying-size-exceeds-the-limit-is-too-large",
        "400-echoing-an-address-that-says-too-large-is-rejected",
        "400-about-a-fields-length-is-rejected",
        "406-is-terminal",
        "301-is-terminal-redirects-are-never-followed",
        "307-is-terminal-redirects-are-never-followed",
        "308-is-terminal-redirects-are-never-followed",
    ],
)
def test_each_status_is_classified_as_retry_terminal_or_ok(
    status: int | None, messages: tuple[str, ...], kind: str, outcome: str
) -> None:
    assert classify(status, messages) == kind
    decision = decide(status, {}, *messages)
    assert (decision.kind, decision.outcome) == (kind, outcome)
    assert decision.should_retry is (outcome == "retry")
    if outcome != "retry":
        assert decision.wait_seconds == 0.0


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("soon", None),
        ("0x10", None),
        ("nan", None),
        ("inf", None),
        ("-inf", None),
        ("1700000030", 30.0),
        (" 1700000030 ", 30.0),
        ("1700000030.5", 30.5),
        ("1699999990", 0.0),
        ("1000000000", 0.0),
        ("15", 15.0),
        ("0", 0.0),
        ("-5", 0.0),
        ("2.5", 2.5),
        ("99999999999", 99999999999.0 - NOW),
        ("1e308", 1e308 - NOW),
    ],
    ids=[
        "missing",
        "empty",
        "blank",
        "garbage-word",
        "hex",
        "nan",
        "inf",
        "minus-inf",
        "future-epoch",
        "padded-epoch",
        "fractional-epoch",
        "past-epoch-is-zero",
        "ancient-epoch-is-zero",
        "delta-seconds",
        "zero-delta",
        "negative-delta-is-zero",
        "fractional-delta",
        "far-future-epoch-is-not-clamped-here",
        "absurd-epoch",
    ],
)
def test_parse_reset_reads_epochs_and_deltas_and_rejects_garbage(
    value: str | None, expected: float | None
) -> None:
    assert parse_reset(value, NOW) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("0", 0), (" 7 ", 7), ("-1", -1), ("many", None), ("1.5", None)],
    ids=["missing", "zero", "padded", "negative", "garbage", "fraction"],
)
def test_parse_remaining_accepts_only_integers(value: str | None, expected: int | None) -> None:
    assert parse_remaining(value) == expected


def test_a_429_waits_until_the_reset_plus_a_jitter_below_one_second() -> None:
    decision = decide(429, {"X-RateLimit-Reset": str(int(NOW) + 20)}, seed=5)
    jitter = random.Random(5).uniform(0.0, 1.0)
    assert decision.wait_reason == "rate_limit"
    assert decision.wait_seconds == pytest.approx(20.0 + jitter)


def test_a_429_never_waits_less_than_the_reset() -> None:
    for seed in range(200):
        decision = decide(429, {"x-ratelimit-reset": "12"}, seed=seed, attempt=seed % 8 + 1)
        assert 12.0 <= decision.wait_seconds <= 13.0


def test_a_429_with_a_huge_epoch_is_clamped_to_the_maximum_wait() -> None:
    decision = decide(429, {"X-RateLimit-Reset": "99999999999"})
    assert decision.wait_seconds == POLICY.max_backoff_seconds
    assert decision.wait_reason == "rate_limit"


@pytest.mark.parametrize(
    "headers",
    [{}, {"X-RateLimit-Reset": "garbage"}, {"X-RateLimit-Reset": str(int(NOW) - 30)}],
    ids=["no-header", "garbage-header", "past-epoch"],
)
def test_a_429_without_a_usable_future_reset_falls_back_to_exponential_backoff(
    headers: dict[str, str],
) -> None:
    for attempt in range(1, 8):
        decision = decide(429, headers, attempt=attempt, seed=attempt)
        expected = random.Random(attempt).uniform(0.0, min(60.0, 2.0 ** (attempt - 1)))
        assert decision.wait_reason == "backoff"
        assert decision.wait_seconds == pytest.approx(expected)


def test_backoff_sleeps_follow_full_jitter_under_a_doubling_ceiling() -> None:
    rng, replica = random.Random(42), random.Random(42)
    sleeps = [backoff_seconds(attempt, rng, POLICY) for attempt in range(1, 9)]
    ceilings = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert sleeps == [replica.uniform(0.0, ceiling) for ceiling in ceilings]
    assert all(0.0 <= s <= c for s, c in zip(sleeps, ceilings, strict=True))


def test_backoff_never_exceeds_the_maximum_even_after_many_attempts() -> None:
    policy = RetryPolicy(max_backoff_seconds=5.0)
    rng = random.Random(1)
    assert max(backoff_seconds(attempt, rng, policy) for attempt in range(1, 2000)) <= 5.0


def test_server_errors_and_transport_failures_back_off_with_the_same_sequence() -> None:
    for status in (500, 503, None):
        sleeps = [decide(status, attempt=a, seed=9).wait_seconds for a in range(1, 5)]
        replica = [random.Random(9).uniform(0.0, 2.0 ** (a - 1)) for a in range(1, 5)]
        assert sleeps == replica


def test_a_temporary_block_backs_off_instead_of_honouring_reset_headers() -> None:
    decision = decide(403, {"X-RateLimit-Reset": "30"}, TEMPORARY_BLOCK, attempt=3, seed=2)
    assert decision.wait_reason == "backoff"
    assert decision.wait_seconds == random.Random(2).uniform(0.0, 4.0)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) + 42)}, 42.0),
        ({"x-ratelimit-remaining": "0", "x-ratelimit-reset": "7"}, 7.0),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "99999999999"}, 60.0),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) - 5)}, 0.0),
        ({"X-RateLimit-Remaining": "0"}, None),
        ({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "later"}, None),
        ({"X-RateLimit-Remaining": "1", "X-RateLimit-Reset": "30"}, None),
        ({"X-RateLimit-Remaining": "lots", "X-RateLimit-Reset": "30"}, None),
        ({}, None),
    ],
    ids=[
        "spent-waits-until-epoch",
        "lowercase-headers-and-delta",
        "huge-epoch-clamped",
        "past-reset-waits-nothing",
        "spent-without-reset",
        "spent-with-garbage-reset",
        "budget-left",
        "garbage-remaining",
        "no-headers",
    ],
)
def test_pacing_waits_only_when_the_budget_is_spent_and_the_reset_is_known(
    headers: dict[str, str], expected: float | None
) -> None:
    assert pacing_wait(headers, NOW, POLICY) == expected
