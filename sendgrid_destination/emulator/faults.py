"""A deterministic fault plan: "the next N requests to <route> misbehave like this".

Contract: rules are kept FIFO per route key; ``take(route)`` hands out the head rule and
consumes one of its ``times``. Actions:

* ``status``: answer ``status`` with ``body`` (default: SendGrid's error envelope) and
  ``headers``, without touching state;
* ``delay``: sleep ``delay`` real seconds, then answer normally;
* ``drop``: close the socket without a response, without touching state;
* ``drop_after``: process the request normally, then close the socket without sending the
  response (the "accepted but the client never heard" case);
* ``hang``: never answer, until the client gives up or the emulator stops.

Thread-safe; one plan per emulator instance.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal, get_args

from .routes import check_route_key

FaultAction = Literal["status", "delay", "drop", "drop_after", "hang"]
_ACTIONS: tuple[str, ...] = get_args(FaultAction)


@dataclass
class FaultRule:
    route: str
    action: FaultAction = "status"
    status: int | None = None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    times: int = 1

    def __post_init__(self) -> None:
        check_route_key(self.route)
        if self.action not in _ACTIONS:
            raise ValueError(f"action must be one of {_ACTIONS}, not {self.action!r}")
        if self.action == "status" and (self.status is None or not 100 <= self.status <= 599):
            raise ValueError("a 'status' fault needs status=<100..599>")
        if self.times < 1 or self.delay < 0:
            raise ValueError("a fault needs times >= 1 and delay >= 0")

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
        }


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
    ) -> FaultRule:
        """Queue a rule; ``action`` defaults to ``status`` when a status is given."""
        chosen: FaultAction = action or "status"
        rule = FaultRule(route, chosen, status, body, dict(headers or {}), delay, times)
        with self._lock:
            self._rules.setdefault(route, deque()).append(rule)
        return rule

    def add_rule(self, spec: dict[str, Any]) -> FaultRule:
        """Queue a rule given as JSON (the control route's body)."""
        unknown = set(spec) - {"route", "action", "status", "body", "headers", "delay", "times"}
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
