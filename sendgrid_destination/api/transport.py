"""Sending requests: one session per thread, one send, the retry loop and rate-limit pacing.

Contract:

* ``Transport.call(route, url, body=...)`` waits for the route's rate-limit budget, sends
  once, lets ``retry_policy.retry_decision`` classify the outcome, then returns, or sleeps and
  sends again. It returns the ``Response`` of a success or of a refusal that retrying cannot
  fix (``kind`` says which; the caller turns a refusal into its typed error). When attempts
  run out it raises ``RateLimitedError`` / ``ServerError`` / ``TransportError`` (transient),
  or ``HostUnreachableError`` (terminal) when no attempt could connect.
  All waiting goes through the injected ``Clock``; all randomness through the injected
  ``random.Random``.
* Pacing: a response with ``X-RateLimit-Remaining: 0`` makes the next request to that route,
  from any thread, wait until ``X-RateLimit-Reset``.
* An unreachable host (refused connection, unresolvable name, connect timeout) fails within
  ``connect_timeout × max_attempts`` in total, attempts and waits included: while no attempt of
  a call has connected, waits are shortened and attempts stopped to keep within that bound.
  Its error is terminal, so that dlt does not retry the job five times over (the run would
  take six times the bound); the package stays pending for the next run.
  Each retry after no response logs a WARNING naming the host (never the URL's path or query).
* The API key is only sent on ``authenticated`` calls, in the ``Authorization`` header set by
  the auth object the client gives; pre-signed URLs get no credentials and no
  ``On-Behalf-Of``. Log lines and exception messages carry route, host, status, attempt and
  wait, never bodies, headers or URLs with query strings; the exceptions of requests (whose
  text holds the URL) are never chained. urllib3's own DEBUG records (its request lines hold
  the pre-signed ``errors_url`` query) pass through a filter that redacts query strings and
  credentials, installed on every urllib3 logger when a transport is built.
* Redirects are never followed: a 3xx is returned as a refusal (``kind == "redirect"``).
* Each attempt is bounded: connecting takes at most ``connect_timeout`` (name resolution is
  the system's), each socket write of the body at most ``connect_timeout`` (urllib3's send
  timeout), each read of the response's status and headers at most ``read_timeout``, and the
  response body is cut off ``connect_timeout + read_timeout`` after the response started (not
  the attempt: a large body, a CSV import's file, may take long to send): it is read in
  single socket reads whose timeout is the time left, so a response dripping a byte a
  second ends (and is retried like a timeout) instead of holding the load.
* One ``requests.Session`` per thread, so a transport may be shared by dlt's loader threads.
"""

from __future__ import annotations

import http.client
import io
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import BinaryIO, Final
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from requests.auth import AuthBase

from sendgrid_destination._version import __version__
from sendgrid_destination.api.messages import parse_error_body
from sendgrid_destination.api.models import ClientStats
from sendgrid_destination.api.retry_policy import (
    Decision,
    Kind,
    RetryPolicy,
    backoff_seconds,
    pacing_wait,
    retry_decision,
)
from sendgrid_destination.clock import Clock
from sendgrid_destination.errors import (
    ApiErrorDetail,
    HostUnreachableError,
    OutcomeUnknownError,
    RateLimitedError,
    SendGridError,
    ServerError,
    StoppedError,
    TransportError,
)
from sendgrid_destination.redaction import redact_url_secrets

logger = logging.getLogger("sendgrid_destination.api.transport")

USER_AGENT: Final = f"sendgrid-destination/{__version__}"

_TRANSPORT_ERRORS: Final = (
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    http.client.HTTPException,  # RemoteDisconnected, if it ever escapes requests' wrapping
    urllib3.exceptions.HTTPError,  # the body is read from urllib3 directly: its own errors
    TimeoutError,  # AttemptDeadlineExceeded
    ConnectionError,  # the builtin one: resets and broken pipes that escape urllib3's wrapping
)
_READ_CHUNK: Final = 64 * 1024


class AttemptDeadlineExceeded(TimeoutError):
    """The attempt's total time (``connect_timeout + read_timeout``) ran out mid-body."""


@dataclass(frozen=True)
class Response:
    """One answer: a success (``kind == "ok"``) or a refusal retrying cannot fix."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    kind: Kind = "ok"
    details: list[ApiErrorDetail] = field(default_factory=list)


class BearerAuth(AuthBase):
    """Sets ``Authorization`` per request; being an auth object also stops ~/.netrc lookups."""

    def __init__(self, api_key: str) -> None:
        self._header = f"Bearer {api_key}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._header
        return request

    def __repr__(self) -> str:
        return "BearerAuth(<masked>)"


class _NoAuth(AuthBase):
    """For pre-signed URLs: no credentials at all (a truthy auth keeps netrc out too)."""

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        return request


class _RouteBudget:
    """Per-route "not before" instants learned from ``X-RateLimit-Remaining: 0``."""

    def __init__(self, clock: Clock, policy: RetryPolicy) -> None:
        self._clock = clock
        self._policy = policy
        self._lock = threading.Lock()
        self._not_before: dict[str, float] = {}

    def observe(self, route: str, headers: Mapping[str, str]) -> None:
        now = self._clock.now()
        wait = pacing_wait(headers, now, self._policy)
        if wait:
            with self._lock:
                self._not_before[route] = now + wait

    def wait_needed(self, route: str) -> float:
        # Computed under the lock, slept outside it: other routes must not queue behind us.
        with self._lock:
            not_before = self._not_before.get(route, 0.0)
        return max(0.0, not_before - self._clock.now())


class Transport:
    """Sends requests with retries and pacing; shared by every thread of one client."""

    def __init__(
        self,
        auth: AuthBase,
        *,
        on_behalf_of: str | None,
        connect_timeout: float,
        read_timeout: float,
        policy: RetryPolicy,
        clock: Clock,
        rng: random.Random,
        stats: ClientStats,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        self._auth = auth
        # Asked between attempts: once it says stop, no request is retried or started again
        # (a signal to the load; what is on the wire still finishes its attempt).
        self._stop = stop or (lambda: False)
        self._on_behalf_of = on_behalf_of
        self._timeout = (connect_timeout, read_timeout)
        self._policy = policy
        self._clock = clock
        self._rng = rng
        self._budget = _RouteBudget(clock, policy)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self.stats = stats
        install_urllib3_log_redaction()

    def close(self) -> None:
        """Close every thread's session."""
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()

    def call(
        self,
        route: str,
        url: str,
        *,
        body: bytes | BinaryIO | None = None,
        authenticated: bool = True,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
    ) -> Response:
        """Send until a success or a refusal that retrying cannot fix; see the module doc.

        ``idempotent=False`` (a create): an attempt that may have taken effect (no answer once
        connected, or a 5xx) is not sent again: ``OutcomeUnknownError``, for the caller to
        look first. A refused connection or a 429 is retried as usual (nothing was done).

        ``headers`` are added to the request's own (a pre-signed upload's ``upload_headers``).
        ``body`` may be a seekable binary file (a CSV import's gzip file, not held in memory):
        each attempt sends it from its start.
        """
        host = _host_of(url)
        budget = _ConnectBudget(self._timeout[0], self._policy.max_attempts)
        attempt = 0
        while True:
            attempt += 1
            self._raise_if_stopped(route)
            self._wait_for_budget(route)
            started = time.monotonic()
            response, failure = self._send_once(route, url, body, authenticated, headers)
            details = parse_error_body(response.body) if response and response.status >= 400 else []
            decision = retry_decision(
                response.status if response else None,
                response.headers if response else {},
                [d.message for d in details],
                attempt=attempt,
                now=self._clock.now(),
                rng=self._rng,
                policy=self._policy,
            )
            if decision.outcome != "retry" and response is not None:
                return Response(
                    response.status, response.headers, response.body, decision.kind, details
                )
            unreachable = _connect_failure(failure)
            if not idempotent and _may_have_taken_effect(response, unreachable):
                raise _outcome_unknown(route, host, response, failure)
            wait = budget.after_attempt(time.monotonic() - started, unreachable, decision)
            if attempt >= self._policy.max_attempts or wait is None:
                status = response.status if response else None
                raise _exhausted_error(route, host, decision.kind, attempt, status, budget, failure)
            self._back_off(route, host, attempt, decision, wait, response, failure)

    def _send_once(
        self,
        route: str,
        url: str,
        body: bytes | BinaryIO | None,
        authenticated: bool,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[Response | None, Exception | None]:
        method = route.split(" ", 1)[0]
        self.stats.record_request(route, _rewound_size(body))
        try:
            raw = self._session().request(
                method,
                url,
                data=body,
                headers={**self._headers(authenticated), **(headers or {})},
                auth=self._auth if authenticated else _NoAuth(),
                timeout=self._timeout,
                allow_redirects=False,
                stream=True,
            )
            # The body's bound starts with the response: the request's own body (a CSV
            # import's file over a slow uplink) may take long, each write bounded, and a
            # file the host took must not count as failed and be imported again.
            content = _read_body(raw, time.monotonic() + sum(self._timeout))
        except _TRANSPORT_ERRORS as exc:
            self.stats.record_transport_error()
            logger.debug("%s -> %s", route, type(exc).__name__)
            return None, exc
        response = Response(raw.status_code, raw.headers, content)
        self.stats.record_response(response.status)
        self._budget.observe(route, response.headers)
        logger.debug("%s -> %d", route, response.status)
        return response, None

    def back_off_unknown(self, route: str, attempt: int) -> None:
        """Before looking for what the ``attempt``-th attempt of a create whose outcome is
        unknown made (``idempotent=False``): the retry loop's backoff, logged and counted as
        a retry, which also leaves SendGrid time to finish that attempt."""
        wait = backoff_seconds(attempt, self._rng, self._policy)
        logger.warning(
            "%s: attempt %d may have made it already; looking in %.2fs before sending again",
            *(route, attempt, wait),
        )
        self.stats.record_retry()
        self._sleep(wait, "backoff")

    def _raise_if_stopped(self, route: str) -> None:
        if self._stop():
            raise StoppedError(
                f"{route} not sent: the load was asked to stop (a signal); every request "
                "SendGrid accepted is recorded, and the next run goes on from there",
                route=route,
            )

    def _back_off(
        self,
        route: str,
        host: str,
        attempt: int,
        decision: Decision,
        wait: float,
        response: Response | None,
        failure: Exception | None,
    ) -> None:
        of = f"{attempt}/{self._policy.max_attempts}"
        unreachable = _connect_failure(failure)
        if response is not None:
            logger.info(
                "%s: %d (%s) on attempt %s; retrying in %.2fs",
                *(route, response.status, decision.kind, of, wait),
            )
        elif unreachable:
            logger.warning(
                "%s: could not connect to %s (%s) on attempt %s; retrying in %.2fs",
                *(route, host, unreachable, of, wait),
            )
        else:
            logger.warning(
                "%s: no response from %s (%s) on attempt %s; retrying in %.2fs",
                *(route, host, type(failure).__name__, of, wait),
            )
        self.stats.record_retry()
        self._sleep(wait, decision.wait_reason or "backoff")

    def _wait_for_budget(self, route: str) -> None:
        wait = self._budget.wait_needed(route)
        if wait > 0:
            logger.info("%s: rate-limit budget spent; waiting %.2fs for the reset", route, wait)
            self._sleep(wait, "rate_limit")

    def _sleep(self, seconds: float, reason: str) -> None:
        self.stats.record_wait(reason, seconds)
        self._clock.sleep(seconds)

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = USER_AGENT
            self._local.session = session
            with self._sessions_lock:
                self._sessions.append(session)
        return session

    def _headers(self, authenticated: bool) -> dict[str, str]:
        if not authenticated:
            return {"Accept": "text/csv, */*"}
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if self._on_behalf_of:
            headers["On-Behalf-Of"] = self._on_behalf_of
        return headers


def _rewound_size(body: bytes | BinaryIO | None) -> int:
    """The body's size; a file is rewound first (an earlier attempt may have read it)."""
    if body is None or isinstance(body, bytes):
        return len(body or b"")
    body.seek(0, io.SEEK_END)
    size = body.tell()
    body.seek(0)
    return size


def _read_body(response: requests.Response, deadline: float) -> bytes:
    """The whole body, or ``AttemptDeadlineExceeded`` once ``deadline`` (monotonic) passes.

    ``read1`` makes one socket read per call, and the socket's timeout is set to the time
    left before each one, so no read can outlast the deadline (a plain ``read`` loops over
    reads, each allowed the full ``read_timeout``).
    """
    stream = response.raw
    sock = getattr(stream.connection, "sock", None)
    chunks: list[bytes] = []
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AttemptDeadlineExceeded("the response did not arrive in time")
            if sock is not None:
                sock.settimeout(left)
            chunk = stream.read1(_READ_CHUNK, decode_content=True)
            if not chunk:
                break
            chunks.append(chunk)
    except BaseException:
        response.close()  # the connection is mid-response: it must not be reused
        raise
    stream.release_conn()
    return b"".join(chunks)


class _RedactUrlSecrets(logging.Filter):
    """Rewrites a record whose text holds a query string or credentials, before any handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        cleaned = redact_url_secrets(text)
        if cleaned != text:
            record.msg, record.args = cleaned, ()
        return True


def install_urllib3_log_redaction() -> None:
    """Put the filter on urllib3's loggers (idempotent). A logger's filters see only its own
    records, not its children's, so every urllib3 logger gets one."""
    names = {"urllib3", "urllib3.connectionpool", "urllib3.connection", "urllib3.poolmanager"}
    names |= {n for n in logging.Logger.manager.loggerDict if n.startswith("urllib3.")}
    for name in sorted(names):
        log = logging.getLogger(name)
        if not any(isinstance(f, _RedactUrlSecrets) for f in log.filters):
            log.addFilter(_RedactUrlSecrets())


class _ConnectBudget:
    """``connect_timeout × max_attempts`` for a call none of whose attempts has connected.

    Time spent is counted as attempt durations (measured) plus waits (as asked of the clock),
    so the bound holds in real time with the system clock and stays exact with a fake one.
    """

    def __init__(self, connect_timeout: float, max_attempts: int) -> None:
        self.connect_timeout = connect_timeout
        self.total = connect_timeout * max_attempts
        self.spent = 0.0
        self.unreachable = True  # until an attempt connects
        self.reason = ""

    def after_attempt(
        self, elapsed: float, unreachable: str | None, decision: Decision
    ) -> float | None:
        """The wait before the next attempt, or ``None`` when the bound leaves no room for
        one (a next attempt may itself take ``connect_timeout``)."""
        self.unreachable = self.unreachable and unreachable is not None
        if not self.unreachable:
            return decision.wait_seconds
        self.reason = unreachable or ""
        self.spent += elapsed
        room = self.total - self.spent - self.connect_timeout
        if room < 0:
            return None
        wait = min(decision.wait_seconds, room)
        self.spent += wait
        return wait


def _connect_failure(failure: Exception | None) -> str | None:
    """What kept a connection from being made, or ``None`` if one was (or no failure)."""
    if isinstance(failure, requests.exceptions.ConnectTimeout):
        return "connect timeout"
    if not isinstance(failure, requests.exceptions.ConnectionError) or not failure.args:
        return None
    reason = getattr(failure.args[0], "reason", failure.args[0])
    if isinstance(reason, urllib3.exceptions.NameResolutionError):
        return "name not resolved"
    if isinstance(reason, urllib3.exceptions.NewConnectionError):
        return "connection refused"
    return None


def _may_have_taken_effect(response: Response | None, unreachable: str | None) -> bool:
    """Of an attempt to retry: whether the host may have acted on it (it connected and gave
    no answer, or answered 5xx); a 429 and a refused connection did nothing."""
    if response is not None:
        return response.status >= 500
    return unreachable is None


def _outcome_unknown(
    route: str, host: str, response: Response | None, failure: Exception | None
) -> OutcomeUnknownError:
    what = f"answered {response.status}" if response is not None else type(failure).__name__
    return OutcomeUnknownError(
        f"{route} to {host}: {what} after the request was sent; it may have taken effect, so "
        "it is not sent again before looking",
        status=response.status if response is not None else None,
        route=route,
    )


def _host_of(url: str) -> str:
    """``host[:port]`` of a URL: what log lines and messages may name of where we sent."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname or "?", parts.port
    except ValueError:
        return "?"
    return f"{host}:{port}" if port is not None else host


def _exhausted_error(
    route: str,
    host: str,
    kind: Kind,
    attempts: int,
    status: int | None,
    budget: _ConnectBudget,
    failure: Exception | None,
) -> SendGridError:
    if kind == "transport" and budget.unreachable:
        return HostUnreachableError(
            f"Could not connect to {host} ({budget.reason}) for {route}: {attempts} attempts "
            f"in {budget.spent:.1f} s (at most connect_timeout × max_attempts = "
            f"{budget.total:.0f} s). Check base_url and that this machine can reach the host "
            "(DNS, proxy, firewall); the next run resumes the load.",
            status=status,
            route=route,
        )
    if kind == "rate_limited":
        return RateLimitedError(
            f"{route} was still rate limited (429) after {attempts} attempts; "
            "lower the load's parallelism if this keeps happening",
            status=status,
            route=route,
        )
    if kind == "temporary_block":
        return RateLimitedError(
            f"SendGrid still answered 403 'temporary block' on {route} after {attempts} "
            "attempts: too many bad requests were sent; fix the rejected requests first",
            status=status,
            route=route,
        )
    if kind == "server_error":
        return ServerError(
            f"SendGrid kept answering {status} on {route} for {attempts} attempts",
            status=status,
            route=route,
        )
    return TransportError(
        f"{route}: no response from {host} ({type(failure).__name__}: timeout or dropped "
        f"connection) for {attempts} attempts",
        status=status,
        route=route,
    )
