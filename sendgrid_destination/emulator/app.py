"""The API pipeline: route, fault plan, auth, rate limit, body cap, handler, record.

Contract: ``ApiApp.handle(request)`` answers one request to an emulated SendGrid route, in
this order:

1. match the route (unknown path -> 404 ``not found``; known path, other method -> 405);
2. the fault plan for that route (a ``status`` fault answers here and counts against the
   rate limit; ``delay`` sleeps and continues; ``drop``/``hang`` go back to the transport);
3. ``Authorization: Bearer <key>`` (401 missing or wrong, 403 for a key without scopes);
4. the route's rate-limit window (429 ``too many requests``);
5. the 6,000,000-byte body cap (413), then due jobs are applied and the handler runs.

Every response except 404/405 carries ``X-RateLimit-*`` headers (404/405 carry the default
window's, uncounted). Every request is recorded (``RecordedRequest``) without its
Authorization header and without its body.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from .backend import Backend
from .faults import FaultPlan, FaultRule
from .handlers import Call, Handlers
from .http_types import Request, Response, error_response, json_response
from .ratelimit import RateLimiter
from .routes import API_ROUTES, NotAllowed, Route, match
from .rules import MAX_REQUEST_BYTES

_UPSERT_ROUTE = "PUT /v3/marketing/contacts"
_UNMATCHED = "unmatched"
# The observed 401 for a wrong key (sendgrid-csharp#185) carries "help": null as well.
_BAD_GRANT = {
    "errors": [
        {
            "message": "The provided authorization grant is invalid, expired, or revoked",
            "field": None,
            "help": None,
        }
    ]
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

    def refusal(self, header: str | None) -> Response | None:
        scheme, _, token = (header or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return error_response(401, "authorization required")
        if token in self.forbidden_keys:
            return error_response(403, "access forbidden")
        if token != self.api_key:
            return json_response(401, _BAD_GRANT)
        return None


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

    def handle(self, request: Request) -> Response:
        found = match(API_ROUTES, request.method, request.path)
        call = Call(request)
        if found is None:
            key, fault = _UNMATCHED, None
            response = error_response(404, "not found")
        elif isinstance(found, NotAllowed):
            key, fault = _UNMATCHED, None
            response = error_response(405, "method not allowed")
            response.headers["Allow"] = ", ".join(found.allowed)
        else:
            route, call.params = found
            key, fault = route.key, self._faults.take(route.key)
            response = self._with_fault(route, call, fault)
        if found is None or isinstance(found, NotAllowed):
            response.headers.update(self._limiter.peek(_UNMATCHED))
        self._record(request, key, call, response, fault)
        return response

    def _with_fault(self, route: Route, call: Call, fault: FaultRule | None) -> Response:
        if fault is None:
            return self._serve(route, call)
        if fault.action == "status":
            counted = self._limiter.consume(route.key).headers
            status = fault.status or 500
            return json_response(status, fault.response_body(), counted | fault.headers)
        if fault.action in ("drop", "hang"):
            return Response(0, disposition="hang" if fault.action == "hang" else "drop")
        if fault.action == "delay":
            self._sleep(fault.delay)
        response = self._serve(route, call)
        if fault.action == "drop_after":
            response.disposition = "drop"
        return response

    def _serve(self, route: Route, call: Call) -> Response:
        refused = self._auth.refusal(call.request.header("Authorization"))
        if refused is not None:
            refused.headers.update(self._limiter.peek(route.key))
            return refused
        decision = self._limiter.consume(route.key)
        if not decision.allowed:
            response = error_response(429, "too many requests")
        elif len(call.request.body) > MAX_REQUEST_BYTES:
            response = error_response(413, "request entity too large")
        else:
            self._backend.process_due()
            response = self._handlers[route.handler](call)
        response.headers.update(decision.headers)
        return response

    def _record(
        self, request: Request, key: str, call: Call, response: Response, fault: FaultRule | None
    ) -> None:
        route = key if key != _UNMATCHED else f"{request.method} {request.path}"
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        self._recorder.add(
            RecordedRequest(
                method=request.method,
                route=route,
                path=request.target,
                status=response.status if response.disposition == "reply" else 0,
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
