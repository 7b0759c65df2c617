"""HTTP client for the SendGrid Marketing Contacts API: transport, typed calls, retries, pacing.

Contract:

* Every call goes through one loop: wait for the route's rate-limit budget, send once, let
  ``retry.retry_decision`` classify the outcome, then return, raise, or sleep and resend.
  All waiting goes through the injected ``Clock``; all randomness through the injected
  ``random.Random``.
* Retried: 429, 5xx, timeouts, refused or dropped connections, and SendGrid's 403 "temporary
  block". Out of attempts, these raise ``RateLimitedError`` / ``ServerError`` /
  ``TransportError`` (transient: dlt retries the job). 401 and other 403s raise
  ``AuthenticationError`` naming the settings to check; other 4xx raise
  ``RequestRejectedError`` (``ContactsRejectedError`` for a 400 on the upsert). All of these
  are terminal.
* Pacing: a response with ``X-RateLimit-Remaining: 0`` makes the next request to that route,
  from any thread, wait until ``X-RateLimit-Reset``.
* Secrets and PII: the API key is only ever put in the ``Authorization`` header of requests
  to ``base_url``'s host; it is masked in ``repr``. Log lines carry route, status, attempt and
  wait, never bodies, headers or URLs with query strings. Exception messages redact anything
  that looks like an email address; SendGrid's raw messages stay on ``ApiErrorDetail``.
* One ``requests.Session`` per thread, so a client may be shared by dlt's loader threads.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import logging
import random
import re
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, urljoin, urlsplit, urlunsplit

import requests
from requests.auth import AuthBase

from sendgrid_destination._version import __version__
from sendgrid_destination.clock import Clock, SystemClock
from sendgrid_destination.errors import (
    ApiErrorDetail,
    AuthenticationError,
    ConfigurationError,
    ContactsRejectedError,
    RateLimitedError,
    RequestRejectedError,
    SendGridError,
    SendGridTransientError,
    ServerError,
    TransportError,
)
from sendgrid_destination.retry import Decision, Kind, RetryPolicy, pacing_wait, retry_decision

__all__ = [
    "ApiErrorDetail",
    "ClientStats",
    "ContactList",
    "CustomField",
    "FieldDefinitions",
    "ImportJob",
    "ReservedFieldDefinition",
    "SendGridClient",
    "parse_error_body",
    "redact",
]

logger = logging.getLogger("sendgrid_destination.client")

DEFAULT_BASE_URL: Final = "https://api.sendgrid.com"
EU_BASE_URL: Final = "https://api.eu.sendgrid.com"
USER_AGENT: Final = f"sendgrid-destination/{__version__}"

# Route templates: the keys of stats, pacing and log lines. They never carry ids or queries.
ROUTE_UPSERT: Final = "PUT /v3/marketing/contacts"
ROUTE_IMPORT_STATUS: Final = "GET /v3/marketing/contacts/imports/{id}"
ROUTE_FIELDS: Final = "GET /v3/marketing/field_definitions"
ROUTE_CREATE_FIELD: Final = "POST /v3/marketing/field_definitions"
ROUTE_LISTS: Final = "GET /v3/marketing/lists"
ROUTE_CREATE_LIST: Final = "POST /v3/marketing/lists"
ROUTE_ERRORS_FILE: Final = "GET errors_url"

# GET /v3/marketing/lists takes page_size 1..1000; an account holds at most 1000 lists.
LISTS_PAGE_SIZE: Final = 1000
TERMINAL_JOB_STATUSES: Final = frozenset({"completed", "errored", "failed"})

_TRANSPORT_ERRORS: Final = (
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
    http.client.HTTPException,  # RemoteDisconnected, if it ever escapes requests' wrapping
    ConnectionResetError,
)
_EMAIL_LIKE: Final = re.compile(r"[^\s'\"<>()\[\]{},;:]+@[^\s'\"<>()\[\]{},;:]+")
_KEY_LIKE: Final = re.compile(r"SG\.[\w.\-]+")
_MAX_MESSAGE_CHARS: Final = 300
_MAX_NON_JSON_BODY_CHARS: Final = 200
_SETTINGS_HINT: Final = (
    "the api_key setting (env DESTINATION__SENDGRID__API_KEY or api_key under "
    "[destination.sendgrid] in .dlt/secrets.toml)"
)


# --- typed results ------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportJob:
    """``GET /v3/marketing/contacts/imports/{id}``, parsed leniently.

    Counts can rise while the job is still ``pending`` (seen live), so only ``status`` says
    whether the job finished.
    """

    id: str
    status: str
    job_type: str
    requested_count: int
    created_count: int
    updated_count: int
    deleted_count: int
    errored_count: int
    # Pre-signed: whoever holds it can read the rejected contacts, so it stays out of repr.
    errors_url: str | None = field(repr=False)
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_JOB_STATUSES

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], job_id: str = "") -> ImportJob:
        results = doc.get("results")
        counts: Mapping[str, Any] = results if isinstance(results, Mapping) else {}
        errors_url = counts.get("errors_url") or doc.get("errors_url")
        return cls(
            id=_text(doc.get("id")) or job_id,
            status=_text(doc.get("status")).lower(),
            job_type=_text(doc.get("job_type")),
            requested_count=_count(counts.get("requested_count")),
            created_count=_count(counts.get("created_count")),
            updated_count=_count(counts.get("updated_count")),
            deleted_count=_count(counts.get("deleted_count")),
            errored_count=_count(counts.get("errored_count")),
            errors_url=errors_url if isinstance(errors_url, str) and errors_url else None,
            raw=doc,
        )


@dataclass(frozen=True)
class CustomField:
    """A custom field definition; upserts address it by ``id`` (e.g. ``e1_T``), not name."""

    id: str
    name: str
    field_type: str

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> CustomField:
        return cls(_text(doc.get("id")), _text(doc.get("name")), _text(doc.get("field_type")))


@dataclass(frozen=True)
class ReservedFieldDefinition:
    """A reserved field as the account reports it; ``read_only`` ones cannot be set."""

    id: str
    name: str
    field_type: str
    read_only: bool = False

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ReservedFieldDefinition:
        return cls(
            # The spec's ReservedFieldDefinitionsResponse schema has no id; its example does.
            _text(doc.get("id")),
            _text(doc.get("name")),
            _text(doc.get("field_type")),
            doc.get("read_only") is True,
        )


@dataclass(frozen=True)
class FieldDefinitions:
    """``GET /v3/marketing/field_definitions``."""

    custom: tuple[CustomField, ...]
    reserved: tuple[ReservedFieldDefinition, ...]

    def custom_by_name(self) -> dict[str, CustomField]:
        """Custom fields keyed by lower-cased name: names are unique case-insensitively."""
        return {f.name.lower(): f for f in self.custom}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> FieldDefinitions:
        return cls(
            custom=tuple(CustomField.from_json(d) for d in _objects(doc.get("custom_fields"))),
            reserved=tuple(
                ReservedFieldDefinition.from_json(d) for d in _objects(doc.get("reserved_fields"))
            ),
        )


@dataclass(frozen=True)
class ContactList:
    """A marketing list."""

    id: str
    name: str
    contact_count: int = 0

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ContactList:
        return cls(_text(doc.get("id")), _text(doc.get("name")), _count(doc.get("contact_count")))


# --- stats --------------------------------------------------------------------------------


class ClientStats:
    """Counters shared by every thread using one client; read them via ``snapshot()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests_by_route: Counter[str] = Counter()
        self.responses_by_status: Counter[int] = Counter()
        self.transport_errors = 0
        self.bytes_sent = 0
        self.retries = 0
        self.rate_limit_wait_seconds = 0.0
        self.backoff_wait_seconds = 0.0

    def record_request(self, route: str, body_bytes: int) -> None:
        with self._lock:
            self.requests_by_route[route] += 1
            self.bytes_sent += body_bytes

    def record_response(self, status: int) -> None:
        with self._lock:
            self.responses_by_status[status] += 1

    def record_transport_error(self) -> None:
        with self._lock:
            self.transport_errors += 1

    def record_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def record_wait(self, reason: str, seconds: float) -> None:
        with self._lock:
            if reason == "rate_limit":
                self.rate_limit_wait_seconds += seconds
            else:
                self.backoff_wait_seconds += seconds

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests_by_route": dict(self.requests_by_route),
                "responses_by_status": dict(self.responses_by_status),
                "transport_errors": self.transport_errors,
                "bytes_sent": self.bytes_sent,
                "retries": self.retries,
                "rate_limit_wait_seconds": self.rate_limit_wait_seconds,
                "backoff_wait_seconds": self.backoff_wait_seconds,
            }


# --- error bodies -------------------------------------------------------------------------


def parse_error_body(body: bytes) -> list[ApiErrorDetail]:
    """SendGrid's error entries from any of the shapes seen in the wild.

    ``{"errors": [...]}``, ``{"errors": {...}}`` (import-status 400), ``{"error": "..."}``
    (StrongGrid saw it), a bare ``{"field", "message"}`` (search 400/404), or not JSON at all
    (a proxy's HTML page): the last becomes one detail holding the start of the text.
    """
    try:
        doc = json.loads(body)
    except ValueError:  # includes UnicodeDecodeError
        text = body.decode("utf-8", errors="replace").strip()
        return [ApiErrorDetail(None, text[:_MAX_NON_JSON_BODY_CHARS])] if text else []
    if isinstance(doc, Mapping):
        for key in ("errors", "error"):
            if key in doc:
                return _details(doc[key])
        if "message" in doc:
            return _details(doc)
        return []
    return _details(doc)


def _details(value: Any) -> list[ApiErrorDetail]:
    if isinstance(value, list):
        return [detail for item in value for detail in _details(item)]
    if isinstance(value, Mapping):
        field_name = value.get("field")
        message = value.get("message")
        return [
            ApiErrorDetail(
                field_name if isinstance(field_name, str) else None,
                message if isinstance(message, str) else json.dumps(value, default=str),
            )
        ]
    if value is None:
        return []
    return [ApiErrorDetail(None, str(value))]


def redact(text: str) -> str:
    """``text`` with email-like and API-key-like tokens replaced by ``<redacted>``."""
    return _KEY_LIKE.sub("<redacted>", _EMAIL_LIKE.sub("<redacted>", text))


def _summary(details: list[ApiErrorDetail]) -> str:
    if not details:
        return "no error message"
    shown = "; ".join(redact(d.message) for d in details[:3])
    if len(details) > 3:
        shown += f" (+{len(details) - 3} more)"
    return shown if len(shown) <= _MAX_MESSAGE_CHARS else shown[: _MAX_MESSAGE_CHARS - 3] + "..."


# --- transport pieces ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


class _BearerAuth(AuthBase):
    """Sets ``Authorization`` per request; being an auth object also stops ~/.netrc lookups."""

    def __init__(self, api_key: str) -> None:
        self._header = f"Bearer {api_key}"

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = self._header
        return request

    def __repr__(self) -> str:
        return "_BearerAuth(<masked>)"


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


# --- the client ---------------------------------------------------------------------------


class SendGridClient:
    """Typed calls to the Marketing Contacts API with retries, pacing and counters."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        on_behalf_of: str | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        max_attempts: int = 8,
        max_backoff_seconds: float = 60.0,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        _validate_settings(api_key, base_url, on_behalf_of, max_attempts)
        self._auth = _BearerAuth(api_key.strip())
        self._base_url = base_url.rstrip("/")
        self._on_behalf_of = on_behalf_of
        self._timeout = (connect_timeout, read_timeout)
        self._policy = RetryPolicy(
            max_attempts=max_attempts, max_backoff_seconds=max_backoff_seconds
        )
        self._clock: Clock = clock or SystemClock()
        self._rng = rng or random.Random()
        self._budget = _RouteBudget(self._clock, self._policy)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._sessions_lock = threading.Lock()
        self.stats = ClientStats()

    def __repr__(self) -> str:
        return (
            f"SendGridClient(base_url={self._base_url!r}, api_key='<masked>', "
            f"on_behalf_of={self._on_behalf_of!r})"
        )

    def __enter__(self) -> SendGridClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every thread's session."""
        with self._sessions_lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()
        self._local = threading.local()

    # --- typed calls ---

    def upsert_contacts(self, body: bytes) -> str:
        """``PUT /v3/marketing/contacts`` with an already encoded body; returns the job id.

        Raises:
            ContactsRejectedError: on 400; ``errors_by_contact()`` names the bad contacts.
        """
        response = self._call(ROUTE_UPSERT, self._url("/v3/marketing/contacts"), body=body)
        # The spec says 202, a proxied live capture says 200: any 2xx with a job_id counts.
        job_id = _json_object(response, ROUTE_UPSERT).get("job_id")
        if not isinstance(job_id, str | int) or isinstance(job_id, bool) or job_id == "":
            raise ServerError(
                f"{ROUTE_UPSERT} answered {response.status} without a job_id",
                status=response.status,
                route=ROUTE_UPSERT,
            )
        return str(job_id)

    def import_status(self, job_id: str) -> ImportJob:
        """``GET /v3/marketing/contacts/imports/{id}``."""
        url = self._url(f"/v3/marketing/contacts/imports/{quote(job_id, safe='')}")
        response = self._call(ROUTE_IMPORT_STATUS, url)
        return ImportJob.from_json(_json_object(response, ROUTE_IMPORT_STATUS), job_id)

    def download_errors(self, url: str) -> list[dict[str, str]]:
        """Rows of the CSV behind a job's pre-signed ``errors_url``, fetched without the key."""
        response = self._call(ROUTE_ERRORS_FILE, url, authenticated=False)
        text = response.body.decode("utf-8-sig", errors="replace")
        reader = csv.DictReader(io.StringIO(text), restval="")
        # Extra cells land under the key None; the column layout is undocumented anyway.
        return [{k: v for k, v in row.items() if isinstance(k, str)} for row in reader]

    def field_definitions(self) -> FieldDefinitions:
        """``GET /v3/marketing/field_definitions``: custom and reserved fields."""
        response = self._call(ROUTE_FIELDS, self._url("/v3/marketing/field_definitions"))
        return FieldDefinitions.from_json(_json_object(response, ROUTE_FIELDS))

    def create_custom_field(self, name: str, field_type: str) -> CustomField:
        """``POST /v3/marketing/field_definitions``; a new field may take seconds to be usable."""
        body = json.dumps({"name": name, "field_type": field_type}).encode()
        url = self._url("/v3/marketing/field_definitions")
        response = self._call(ROUTE_CREATE_FIELD, url, body=body)
        return CustomField.from_json(_json_object(response, ROUTE_CREATE_FIELD))

    def lists(self, *, page_size: int = LISTS_PAGE_SIZE) -> list[ContactList]:
        """Every marketing list, following ``_metadata.next`` (``page_size``: 1..1000)."""
        url: str | None = self._url(f"/v3/marketing/lists?page_size={page_size}")
        seen: set[str] = set()
        found: list[ContactList] = []
        while url and url not in seen:
            seen.add(url)
            doc = _json_object(self._call(ROUTE_LISTS, url), ROUTE_LISTS)
            found.extend(ContactList.from_json(d) for d in _objects(doc.get("result")))
            metadata = doc.get("_metadata")
            next_url = metadata.get("next") if isinstance(metadata, Mapping) else None
            url = self._same_host(next_url) if isinstance(next_url, str) and next_url else None
        return found

    def create_list(self, name: str) -> ContactList:
        """``POST /v3/marketing/lists`` (201 since the 2025-01 spec, 200 before)."""
        body = json.dumps({"name": name}).encode()
        response = self._call(ROUTE_CREATE_LIST, self._url("/v3/marketing/lists"), body=body)
        return ContactList.from_json(_json_object(response, ROUTE_CREATE_LIST))

    # --- the retry loop ---

    def _call(
        self, route: str, url: str, *, body: bytes | None = None, authenticated: bool = True
    ) -> _Response:
        attempt = 0
        while True:
            attempt += 1
            self._wait_for_budget(route)
            response, failure = self._send_once(route, url, body, authenticated)
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
            if decision.outcome == "ok" and response is not None:
                return response
            if decision.outcome == "terminal" and response is not None:
                raise self._terminal_error(route, response, details, decision.kind, authenticated)
            if attempt >= self._policy.max_attempts:
                status = response.status if response else None
                raise _exhausted_error(route, decision.kind, attempt, status) from failure
            self._back_off(route, attempt, decision, response)

    def _send_once(
        self, route: str, url: str, body: bytes | None, authenticated: bool
    ) -> tuple[_Response | None, Exception | None]:
        method = route.split(" ", 1)[0]
        self.stats.record_request(route, len(body) if body else 0)
        try:
            raw = self._session().request(
                method,
                url,
                data=body,
                headers=self._headers(authenticated),
                auth=self._auth if authenticated else _NoAuth(),
                timeout=self._timeout,
            )
        except _TRANSPORT_ERRORS as exc:
            self.stats.record_transport_error()
            logger.debug("%s -> %s", route, type(exc).__name__)
            return None, exc
        response = _Response(raw.status_code, raw.headers, raw.content)
        self.stats.record_response(response.status)
        self._budget.observe(route, response.headers)
        logger.debug("%s -> %d", route, response.status)
        return response, None

    def _back_off(
        self, route: str, attempt: int, decision: Decision, response: _Response | None
    ) -> None:
        outcome = str(response.status) if response else "no response"
        logger.info(
            "%s: %s (%s) on attempt %d/%d; retrying in %.2fs",
            route,
            outcome,
            decision.kind,
            attempt,
            self._policy.max_attempts,
            decision.wait_seconds,
        )
        self.stats.record_retry()
        self._sleep(decision.wait_seconds, decision.wait_reason or "backoff")

    def _wait_for_budget(self, route: str) -> None:
        wait = self._budget.wait_needed(route)
        if wait > 0:
            logger.info("%s: rate-limit budget spent; waiting %.2fs for the reset", route, wait)
            self._sleep(wait, "rate_limit")

    def _sleep(self, seconds: float, reason: str) -> None:
        self.stats.record_wait(reason, seconds)
        self._clock.sleep(seconds)

    # --- helpers ---

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

    def _url(self, path: str) -> str:
        return self._base_url + path

    def _same_host(self, url: str) -> str:
        """``url`` re-rooted on ``base_url``'s host: the key is never sent anywhere else."""
        absolute = urlsplit(urljoin(self._base_url + "/", url))
        base = urlsplit(self._base_url)
        return urlunsplit((base.scheme, base.netloc, absolute.path, absolute.query, ""))

    def _terminal_error(
        self,
        route: str,
        response: _Response,
        details: list[ApiErrorDetail],
        kind: Kind,
        authenticated: bool,
    ) -> SendGridError:
        status, summary = response.status, _summary(details)
        if not authenticated:
            return RequestRejectedError(
                f"{route} answered {status}: {summary}. The pre-signed errors file may have "
                "expired; its job's counts are still valid.",
                status=status,
                route=route,
            )
        if kind == "unauthorized":
            return AuthenticationError(
                self._unauthorized_message(route, summary), status=status, route=route
            )
        if kind == "forbidden":
            return AuthenticationError(
                _forbidden_message(route, summary), status=status, route=route
            )
        if route == ROUTE_UPSERT and status == 400:
            return _contacts_rejected(details, route)
        return RequestRejectedError(
            f"SendGrid rejected {route} with {status}: {summary}{_status_hint(status)}",
            status=status,
            route=route,
        )

    def _unauthorized_message(self, route: str, summary: str) -> str:
        subuser = repr(self._on_behalf_of) if self._on_behalf_of else "not set"
        return (
            f"SendGrid refused the API key (401 on {route}: {summary}). Check {_SETTINGS_HINT}; "
            f"that base_url ({self._base_url}) matches the key's region (EU subusers use "
            f"{EU_BASE_URL}); and the On-Behalf-Of subuser (on_behalf_of: {subuser})."
        )


def _forbidden_message(route: str, summary: str) -> str:
    return (
        f"SendGrid refused the API key's permissions (403 on {route}: {summary}). The key "
        "needs the Marketing (Full Access) scope; also check IP Access Management, the "
        "on_behalf_of subuser and that base_url matches the key's region. Key: "
        f"{_SETTINGS_HINT}."
    )


def _status_hint(status: int) -> str:
    hints = {
        413: " (the request body is over SendGrid's size limit; lower the batch size)",
        451: f" (data residency: EU subusers must use base_url {EU_BASE_URL})",
    }
    return hints.get(status, "")


def _contacts_rejected(details: list[ApiErrorDetail], route: str) -> ContactsRejectedError:
    indexes = sorted({d.contact_index for d in details if d.contact_index is not None})
    shown = ", ".join(str(i) for i in indexes[:10]) + (", ..." if len(indexes) > 10 else "")
    where = f"contacts at indexes [{shown}]" if indexes else "the request as a whole"
    message = f"SendGrid rejected {route} with 400 for {where}: {_summary(details)}"
    return ContactsRejectedError(message, errors=details, status=400, route=route)


def _exhausted_error(
    route: str, kind: Kind, attempts: int, status: int | None
) -> SendGridTransientError:
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
        f"{route}: no response (timeout or dropped connection) for {attempts} attempts",
        status=status,
        route=route,
    )


def _validate_settings(
    api_key: str, base_url: str, on_behalf_of: str | None, max_attempts: int
) -> None:
    key = api_key.strip() if isinstance(api_key, str) else ""
    # requests echoes an invalid header value in its exception text: refuse such keys first.
    if not key or not key.isprintable() or any(c.isspace() for c in key):
        raise ConfigurationError(
            f"The SendGrid API key is empty or malformed; set {_SETTINGS_HINT}."
        )
    if urlsplit(base_url).scheme not in ("http", "https") or not urlsplit(base_url).netloc:
        raise ConfigurationError(
            f"base_url must be an http(s) URL such as {DEFAULT_BASE_URL} or {EU_BASE_URL}."
        )
    if on_behalf_of is not None and not on_behalf_of.isprintable():
        raise ConfigurationError("on_behalf_of must be a subuser name without control characters.")
    if max_attempts < 1:
        raise ConfigurationError("max_attempts must be at least 1.")


def _json_object(response: _Response, route: str) -> Mapping[str, Any]:
    try:
        doc = json.loads(response.body)
    except ValueError as exc:
        raise ServerError(
            f"{route} answered {response.status} with a body that is not JSON",
            status=response.status,
            route=route,
        ) from exc
    if not isinstance(doc, Mapping):
        raise ServerError(
            f"{route} answered {response.status} with JSON that is not an object",
            status=response.status,
            route=route,
        )
    return doc


def _objects(value: Any) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _count(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
