"""A deterministic fault plan: "the next N requests to <route> misbehave like this".

Contract: rules are kept FIFO per route key; ``take(route)`` hands out the head rule and
consumes one of its ``times``. Actions:

* ``status``: answer ``status`` with ``body`` (default: SendGrid's error envelope) and
  ``headers``, without touching state;
* ``delay``: sleep ``delay`` real seconds, then answer normally;
* ``drop``: close the socket without a response, without touching state;
* ``drop_after``: process the request normally, then close the socket without sending the
  response (the "accepted but the client never heard" case);
* ``hang``: never answer, until the client gives up or the emulator stops;
* ``redirect``: answer ``status`` (default 307) with ``Location: <location>`` and an empty
  body, without touching state (a proxy or a misconfigured host; a client must not follow
  it with the API key and the contacts);
* ``drip``: process the request normally, then write the whole response (status line,
  headers and body) one byte every ``delay`` seconds, so only a client that bounds a
  request's total time gives up (a per-read timeout never fires).

``JobFault`` is the other kind: how the next jobs created misbehave (see ``JobFaults``).

Thread-safe; one plan per emulator instance.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal, get_args

from .errors import ApiError, BadRequest, PayloadTooLarge
from .http_types import Response
from .routes import check_route_key
from .rules import MAX_REQUEST_BYTES

FaultAction = Literal["status", "delay", "drop", "drop_after", "hang", "redirect", "drip"]
_ACTIONS: tuple[str, ...] = get_args(FaultAction)
_RULE_KEYS = frozenset(
    ("route", "action", "status", "body", "headers", "delay", "times", "location")
)


@dataclass
class FaultRule:
    route: str
    action: FaultAction = "status"
    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    times: int = 1
    location: str | None = None

    def __post_init__(self) -> None:
        check_route_key(self.route)
        if self.action not in _ACTIONS:
            raise ValueError(f"action must be one of {_ACTIONS}, not {self.action!r}")
        if self.action == "status" and (self.status is None or not 100 <= self.status <= 599):
            raise ValueError("a 'status' fault needs status=<100..599>")
        if self.action == "redirect":
            self._check_redirect()
        if self.action == "drip" and self.delay <= 0:
            raise ValueError("a 'drip' fault needs delay > 0 (seconds per byte)")
        if self.times < 1 or self.delay < 0:
            raise ValueError("a fault needs times >= 1 and delay >= 0")

    def _check_redirect(self) -> None:
        if not self.location:
            raise ValueError("a 'redirect' fault needs location=<URL>")
        self.status = self.status or 307
        if not 300 <= self.status <= 399:
            raise ValueError("a 'redirect' fault needs a 3xx status (default 307)")

    def response_body(self) -> Any:
        if self.body is not None:
            return self.body
        phrase = HTTPStatus(self.status).phrase.lower() if self.status else "error"
        return {"errors": [{"field": None, "message": phrase}]}

    def as_dict(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "action": self.action,
            "status": self.status,
            "body": self.body,
            "headers": dict(self.headers),
            "delay": self.delay,
            "times": self.times,
            "location": self.location,
        }


def deliver_as_the_fault_says(response: Response, fault: FaultRule | None) -> None:
    """``drop_after`` loses the answer it computed; ``drip`` sends it a byte at a time."""
    if fault is None:
        return
    if fault.action == "drop_after":
        response.disposition = "drop"
    elif fault.action == "drip":
        response.disposition = "drip"
        response.drip_interval = fault.delay


class FaultPlan:
    """Pending fault rules, FIFO per route."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: dict[str, deque[FaultRule]] = {}

    def add(
        self,
        route: str,
        *,
        status: int | None = None,
        action: FaultAction | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        times: int = 1,
        location: str | None = None,
    ) -> FaultRule:
        """Queue a rule; ``action`` defaults to ``status`` when a status is given."""
        chosen: FaultAction = action or "status"
        rule = FaultRule(route, chosen, status, body, dict(headers or {}), delay, times, location)
        with self._lock:
            self._rules.setdefault(route, deque()).append(rule)
        return rule

    def add_rule(self, spec: dict[str, Any]) -> FaultRule:
        """Queue a rule given as JSON (the control route's body)."""
        unknown = set(spec) - _RULE_KEYS
        if unknown or not isinstance(spec.get("route"), str):
            raise ValueError(f"a fault needs a 'route' and only known keys; got {sorted(spec)}")
        return self.add(
            spec["route"],
            status=spec.get("status"),
            action=spec.get("action"),
            body=spec.get("body"),
            headers=spec.get("headers"),
            delay=float(spec.get("delay", 0.0)),
            times=int(spec.get("times", 1)),
            location=spec.get("location"),
        )

    def take(self, route: str) -> FaultRule | None:
        """The rule answering this request to ``route``, if any (consumes one use)."""
        with self._lock:
            queue = self._rules.get(route)
            if not queue:
                return None
            rule = queue[0]
            rule.times -= 1
            if rule.times == 0:
                queue.popleft()
            return rule

    def pending(self) -> list[FaultRule]:
        with self._lock:
            return [rule for queue in self._rules.values() for rule in queue]

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()


ImportStatusFault = Literal[
    "normal", "not_found", "pending_then_not_found", "pending_forever", "completed_with_errors"
]
ErrorsFileFault = Literal["normal", "other_header", "html", "long_field", "not_found"]
_IMPORT_STATUS_FAULTS: tuple[str, ...] = get_args(ImportStatusFault)
_ERRORS_FILE_FAULTS: tuple[str, ...] = get_args(ErrorsFileFault)
_JOB_FAULT_KEYS = frozenset(
    ("count", "import_status", "pending_polls", "errors_file", "fail_reason")
)
# Python's csv module refuses a field longer than this by default (csv.field_size_limit()).
CSV_FIELD_LIMIT = 131_072


@dataclass(frozen=True)
class JobFault:
    """How one job misbehaves after it was accepted.

    * ``import_status``: ``not_found`` (the imports route answers 404 at once; the job is
      still processed), ``pending_then_not_found`` (``pending`` for ``pending_polls`` polls,
      then 404), ``pending_forever`` (never processed, not even by ``process_jobs``),
      ``completed_with_errors`` (its status says ``completed`` even when contacts errored:
      only ``errored_count`` and ``errors_url`` tell; the API's status alone is not proof);
    * ``errors_file``: ``other_header`` (``Email,Errors`` columns), ``html`` (an HTML page
      with status 200), ``long_field`` (a field longer than 131,072 characters),
      ``not_found`` (the ``errors_url`` answers 404);
    * ``fail_reason``: the job ends ``failed``, every contact errored with this reason.
    """

    import_status: ImportStatusFault = "normal"
    pending_polls: int = 1
    errors_file: ErrorsFileFault = "normal"
    fail_reason: str | None = None

    def __post_init__(self) -> None:
        if self.import_status not in _IMPORT_STATUS_FAULTS:
            raise ValueError(f"import_status must be one of {_IMPORT_STATUS_FAULTS}")
        if self.errors_file not in _ERRORS_FILE_FAULTS:
            raise ValueError(f"errors_file must be one of {_ERRORS_FILE_FAULTS}")
        if self.pending_polls < 0:
            raise ValueError("pending_polls must be >= 0")

    def as_dict(self) -> dict[str, Any]:
        return {
            "import_status": self.import_status,
            "pending_polls": self.pending_polls,
            "errors_file": self.errors_file,
            "fail_reason": self.fail_reason,
        }


class JobFaults:
    """Faults for the next jobs created, one entry per job, FIFO (deterministic)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[JobFault] = deque()

    def add(self, fault: JobFault, count: int = 1) -> JobFault:
        if count < 1:
            raise ValueError("count must be >= 1")
        with self._lock:
            self._queue.extend([fault] * count)
        return fault

    def add_spec(self, spec: dict[str, Any]) -> JobFault:
        """Queue faults given as JSON (the control route's body)."""
        unknown = set(spec) - _JOB_FAULT_KEYS
        if unknown:
            raise ValueError(
                f"unknown job fault keys {sorted(unknown)}; known {sorted(_JOB_FAULT_KEYS)}"
            )
        reason = spec.get("fail_reason")
        fault = JobFault(
            import_status=spec.get("import_status", "normal"),
            pending_polls=int(spec.get("pending_polls", 1)),
            errors_file=spec.get("errors_file", "normal"),
            fail_reason=None if reason is None else str(reason),
        )
        return self.add(fault, int(spec.get("count", 1)))

    def take(self) -> JobFault | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def pending(self) -> list[JobFault]:
        with self._lock:
            return list(self._queue)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()


@dataclass(frozen=True)
class BodyLimit:
    """The byte limit on ``PUT /v3/marketing/contacts`` bodies, and how it is refused.

    The documented limit is 6,000,000 bytes with a 413. One production integration saw a
    stricter server-side limit near 4 MB answered with an error message rather than a
    413, so a test can lower the limit and pick the answer: ``413`` (``request entity too
    large``) or ``400`` with ``message``.
    """

    max_bytes: int = MAX_REQUEST_BYTES
    answer: int = 413
    message: str = "message size exceeded"

    def __post_init__(self) -> None:
        if not 1 <= self.max_bytes <= MAX_REQUEST_BYTES:
            raise ValueError(f"max_bytes must be 1..{MAX_REQUEST_BYTES}")
        if self.answer not in (400, 413):
            raise ValueError("answer must be 413 or 400")

    def refusal(self) -> ApiError:
        if self.answer == 400:
            return BadRequest(self.message)
        return PayloadTooLarge("request entity too large")

    def as_dict(self) -> dict[str, Any]:
        return {"max_bytes": self.max_bytes, "answer": self.answer, "message": self.message}
