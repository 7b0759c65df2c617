"""The API pipeline: route, fault plan, auth, rate limit, body cap, handler, record.

Contract: ``ApiApp.handle(request)`` answers one request to an emulated SendGrid route, in
this order:

1. a request target over ``MAX_URL_BYTES`` (414), then match the route (unknown path ->
   404 ``not found``; known path, other method -> 405);
2. the fault plan for that route (a ``status`` fault answers here and counts against the
   rate limit; ``redirect`` answers here uncounted; ``delay`` sleeps and continues;
   ``drop``/``hang`` go back to the transport; ``drop_after``/``drip`` change how the
   final answer is delivered);
3. ``Authorization: Bearer <key>`` (401 missing or wrong, 403 for a key without scopes);
4. the route's rate-limit window (429 ``too many requests``);
5. the body cap: 6,000,000 bytes (413), or the lower ``body_limit`` a test set for
   ``PUT /v3/marketing/contacts`` (413 or 400); then due jobs are applied and the handler
   runs.

Every response except 404/405 carries ``X-RateLimit-*`` headers (404/405 carry the default
window's, uncounted). Every request is recorded (``RecordedRequest``) without its
Authorization header and without its body.

Each stage raises ``errors.ApiError`` to refuse; ``handle`` is the one place that turns a
refusal into its status, body and headers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from .backend import Backend
from .errors import (
    ApiError,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    TooManyRequests,
    Unauthorized,
    UriTooLong,
)
from .faults import BodyLimit, FaultPlan, FaultRule, deliver_as_the_fault_says
from .handlers import Call, Handlers
from .http_types import Request, Response, json_response
from .ratelimit import RateLimiter
from .routes import API_ROUTES, NotAllowed, Route, match
from .rules import MAX_REQUEST_BYTES, MAX_URL_BYTES

_UPSERT_ROUTE = "PUT /v3/marketing/contacts"
_UNMATCHED = "unmatched"
# The observed 401 for a wrong key (sendgrid-csharp#185) carries "help": null as well.
_BAD_GRANT = {
    "message": "The provided authorization grant is invalid, expired, or revoked",
    "field": None,
    "help": None,
}


@dataclass(frozen=True)
class RecordedRequest:
    """One API request as the emulator saw it (status 0: no response was sent)."""

    method: str
    route: str
    path: str
    status: int
    body_bytes: int
    contact_count: int | None
    headers: dict[str, str]
    at: float
    fault: str | None = None

    def header(self, name: str) -> str | None:
        """A recorded header by case-insensitive name."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Recorder:
    """The request log, in arrival order."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[RecordedRequest] = []

    def add(self, item: RecordedRequest) -> None:
        with self._lock:
            self._items.append(item)

    def all(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class Auth:
    """The bearer-key check: one valid key, plus keys that authenticate but lack scopes."""

    def __init__(self, api_key: str, forbidden_keys: Iterable[str] = ()) -> None:
        self.api_key = api_key
        self.forbidden_keys = frozenset(forbidden_keys)

    def check(self, header: str | None) -> None:
        """Raise ``Unauthorized`` or ``Forbidden`` unless the header carries the valid key."""
        scheme, _, token = (header or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("authorization required")
        if token in self.forbidden_keys:
            raise Forbidden("access forbidden")
        if token != self.api_key:
            raise Unauthorized([dict(_BAD_GRANT)])


@dataclass
class _Exchange:
    """What one request went through: its route key, fault and rate-limit headers."""

    key: str = _UNMATCHED
    fault: FaultRule | None = None
    rate_headers: dict[str, str] = field(default_factory=dict)


class ApiApp:
    """Answers requests to the emulated SendGrid routes."""

    def __init__(
        self,
        backend: Backend,
        faults: FaultPlan,
        limiter: RateLimiter,
        auth: Auth,
        recorder: Recorder,
        base_url: Callable[[], str],
        sleep: Callable[[float], None],
    ) -> None:
        self._backend = backend
        self._faults = faults
        self._limiter = limiter
        self._auth = auth
        self._recorder = recorder
        self._sleep = sleep
        self._handlers = Handlers(backend, base_url).table()
        self.body_limit = BodyLimit()

    def handle(self, request: Request) -> Response:
        call = Call(request)
        exchange = _Exchange()
        try:
            response = self._answer(call, exchange)
        except ApiError as refused:
            response = json_response(refused.status, refused.payload(), refused.headers)
        for name, value in exchange.rate_headers.items():
            response.headers.setdefault(name, value)
        deliver_as_the_fault_says(response, exchange.fault)
        self._record(call, response, exchange)
        return response

    def _answer(self, call: Call, exchange: _Exchange) -> Response:
        route = self._route(call, exchange)
        exchange.key, exchange.fault = route.key, self._faults.take(route.key)
        fault = exchange.fault
        if fault is None:
            return self._serve(route, call, exchange)
        if fault.action == "status":
            exchange.rate_headers = self._limiter.consume(route.key).headers
            return json_response(fault.status or 500, fault.response_body(), fault.headers)
        if fault.action == "redirect":
            return Response(fault.status or 307, headers={"Location": fault.location or ""})
        if fault.action in ("drop", "hang"):
            return Response(0, disposition="hang" if fault.action == "hang" else "drop")
        if fault.action == "delay":
            self._sleep(fault.delay)
        return self._serve(route, call, exchange)

    def _route(self, call: Call, exchange: _Exchange) -> Route:
        request = call.request
        found = match(API_ROUTES, request.method, request.path)
        if found is None or isinstance(found, NotAllowed):
            exchange.rate_headers = self._limiter.peek(_UNMATCHED)
        # A front end refuses an over-long request line before any routing (RudderStack saw
        # 414 on long DELETE ?ids= queries).
        if len(request.target) > MAX_URL_BYTES:
            exchange.rate_headers = self._limiter.peek(_UNMATCHED)
            raise UriTooLong("request URI too long")
        if found is None:
            raise NotFound("not found")
        if isinstance(found, NotAllowed):
            allow = {"Allow": ", ".join(found.allowed)}
            raise MethodNotAllowed("method not allowed", headers=allow)
        route, call.params = found
        return route

    def _serve(self, route: Route, call: Call, exchange: _Exchange) -> Response:
        exchange.rate_headers = self._limiter.peek(route.key)
        self._auth.check(call.request.header("Authorization"))
        decision = self._limiter.consume(route.key)
        exchange.rate_headers = decision.headers
        if not decision.allowed:
            raise TooManyRequests("too many requests")
        self._check_body_size(route, call)
        self._backend.process_due()
        return self._handlers[route.handler](call)

    def _check_body_size(self, route: Route, call: Call) -> None:
        size = len(call.request.body)
        if size > MAX_REQUEST_BYTES:
            raise PayloadTooLarge("request entity too large")
        limit = self.body_limit
        if route.key == _UPSERT_ROUTE and size > limit.max_bytes:
            raise limit.refusal()

    def _record(self, call: Call, response: Response, exchange: _Exchange) -> None:
        request, key, fault = call.request, exchange.key, exchange.fault
        route = key if key != _UNMATCHED else f"{request.method} {request.path}"
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        self._recorder.add(
            RecordedRequest(
                method=request.method,
                route=route,
                path=request.target,
                status=0 if response.disposition in ("drop", "hang") else response.status,
                body_bytes=len(request.body),
                contact_count=_contact_count(call) if key == _UPSERT_ROUTE else None,
                headers=headers,
                at=self._backend.clock.now(),
                fault=fault.action if fault else None,
            )
        )


def _contact_count(call: Call) -> int | None:
    try:
        doc = call.json()
    except ValueError:
        return None
    contacts = doc.get("contacts") if isinstance(doc, dict) else None
    return len(contacts) if isinstance(contacts, list) else None
