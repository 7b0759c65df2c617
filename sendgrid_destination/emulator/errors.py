"""The emulator's API errors: raised where a rule fails, answered in one place.

Contract: validation, the catalogs, the backend and the route handlers raise an
``ApiError`` carrying the HTTP status and SendGrid's error items; ``app.ApiApp.handle`` is
the only place that turns one into a response (``{"errors": [...]}`` with the status and
any headers). The tree is small on purpose:

* ``ApiError(status, errors, headers)``: any refusal;
  * ``BadRequest`` (400), with ``InvalidJson`` and ``InvalidInput``, the two observed
    request-level bodies (field ``""``);
  * ``NotFound`` (404), ``MethodNotAllowed`` (405, with an ``Allow`` header);
  * ``Unauthorized`` (401) and ``Forbidden`` (403);
  * ``TooManyRequests`` (429), ``PayloadTooLarge`` (413), ``UriTooLong`` (414).

Error items use ``"field": null`` when no field is at fault, as in the observed
401/403/429 bodies.
"""

from __future__ import annotations

from typing import Any

ErrorItem = dict[str, Any]


def error_item(message: str, field: str | None = None) -> ErrorItem:
    return {"field": field, "message": message}


class ApiError(Exception):
    """A refusal: ``status`` and SendGrid's ``errors`` items, plus response ``headers``."""

    status = 500

    def __init__(
        self,
        errors: list[ErrorItem] | str,
        field: str | None = None,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        items = [error_item(errors, field)] if isinstance(errors, str) else list(errors)
        super().__init__(items[0]["message"] if items else "")
        self.errors = items
        self.headers = dict(headers or {})
        if status is not None:
            self.status = status

    @property
    def message(self) -> str:
        """The first error's message (what the Python API raises as ``ValueError``)."""
        return str(self.errors[0]["message"]) if self.errors else ""

    def payload(self) -> dict[str, Any]:
        return {"errors": self.errors}


class BadRequest(ApiError):
    status = 400


class InvalidJson(BadRequest):
    # Observed wording for a malformed body (sendgrid-nodejs#957); field is "" there.
    def __init__(self) -> None:
        super().__init__("invalid JSON", "")


class InvalidInput(BadRequest):
    # Observed when custom_fields was an array (sendgrid-csharp#1021): a decode-level type
    # error rejects the whole body with field "", so every type mismatch answers this way.
    def __init__(self) -> None:
        super().__init__("invalid input", "")


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class MethodNotAllowed(ApiError):
    status = 405


class PayloadTooLarge(ApiError):
    status = 413


class UriTooLong(ApiError):
    status = 414


class TooManyRequests(ApiError):
    status = 429
