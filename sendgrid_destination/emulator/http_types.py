"""HTTP requests and responses as plain values.

Contract: ``Request`` is what the transport hands to the app; ``Response`` is what it writes
back (``disposition`` tells it to reply, drop the socket, hang or drip). ``json_response``
serialises compactly; ``error_response`` builds SendGrid's error envelope for the answers
made outside the API pipeline (the transport's own 400/413, the control plane). Inside the
pipeline, refusals are raised as ``errors.ApiError`` instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs

Disposition = Literal["reply", "drop", "hang", "drip"]


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
    # For ``drip``: seconds between two bytes of the whole response.
    drip_interval: float = 0.0


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Response(status, body, dict(headers or {}))


def error_response(status: int, message: str, field: str | None = None) -> Response:
    return json_response(status, {"errors": [{"field": field, "message": message}]})
