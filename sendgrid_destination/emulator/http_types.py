"""HTTP requests and responses as plain values, and SendGrid's error envelopes.

Contract: ``Request`` is what the transport hands to the app; ``Response`` is what it writes
back (``disposition`` tells it to reply, drop the socket or hang). Error bodies use the
envelope SendGrid answers with on the contacts routes, ``{"errors": [{"field", "message"}]}``;
``field`` is ``null`` when no field is at fault, as in the observed 401/403/429 bodies.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs

Disposition = Literal["reply", "drop", "hang"]
ErrorItem = dict[str, Any]


@dataclass(frozen=True)
class Request:
    """One HTTP request as received: ``path`` has no query; ``target`` is the raw request target."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes = b""

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]

    @property
    def query(self) -> dict[str, list[str]]:
        _, _, query = self.target.partition("?")
        return parse_qs(query, keep_blank_values=True)

    def header(self, name: str) -> str | None:
        """A header by case-insensitive name."""
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


@dataclass
class Response:
    """An HTTP response; ``disposition`` other than ``reply`` is a transport-level fault."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    disposition: Disposition = "reply"


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status, body, dict(headers or {}))


def error_item(message: str, field: str | None = None) -> ErrorItem:
    return {"field": field, "message": message}


def errors_response(status: int, errors: list[ErrorItem]) -> Response:
    return json_response(status, {"errors": errors})


def error_response(status: int, message: str, field: str | None = None) -> Response:
    return errors_response(status, [error_item(message, field)])


def invalid_json() -> Response:
    # Observed wording for a malformed body (sendgrid-nodejs#957); field is "" there, not null.
    return error_response(400, "invalid JSON", "")


def invalid_input() -> Response:
    # Observed when custom_fields was an array (sendgrid-csharp#1021): a decode-level type
    # error rejects the whole body with field "", so we answer every type mismatch this way.
    return error_response(400, "invalid input", "")
