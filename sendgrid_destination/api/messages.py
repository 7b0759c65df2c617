"""SendGrid's error bodies, parsed leniently, and the one classifier of its message texts.

Contract:

* ``parse_error_body(body)`` returns the error entries of any body shape seen in the wild
  (``ApiErrorDetail``: the field it names, SendGrid's raw message).
* Every place that reads meaning into SendGrid's text asks this module:
  ``is_temporary_block``, ``refused_custom_field_ids``, ``is_request_level``,
  ``says_body_too_large``. Meaning is read from the text with the values SendGrid echoes
  (quoted values, addresses) blanked out, so a contact's own data cannot trigger it.
* ``describe(details)`` is the text exception messages carry: redacted and bounded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from sendgrid_destination.errors import ApiErrorDetail
from sendgrid_destination.redaction import redact

# SendGrid's errors page: 403 "Too many bad requests. Temporary block".
TEMPORARY_BLOCK_MARKERS: Final = ("too many bad requests", "temporary block")
_CUSTOM_IDS: Final = re.compile(r"invalid custom field ids supplied\s*-\s*(.+)", re.IGNORECASE)
# Messages that describe the request, not a contact: splitting cannot help. Matched whole,
# since a contact's own text (an address like alistair@...) may contain any word.
_REQUEST_LEVEL: Final = re.compile(
    r"^(invalid json$|invalid input$|.*\blist_ids?\b)", re.IGNORECASE
)
# SendGrid documents 6 MB per upsert; one production integration met a stricter limit near
# 4 MB whose wording is not recorded, so the request (body, message, payload, content,
# entity) being "too large/big" or "exceeding" a size or limit counts. A field's length
# ("first_name exceeds max length") names none of those nouns and does not.
_TOO_LARGE: Final = re.compile(
    r"\b(request|body|message|payload|content|entity)\b[\w\s]{0,30}?"
    r"\b(too (large|big)|exceed(s|ed)?\b[\w\s]{0,30}?\b(size|limit))\b"
    r"|\bmax(imum)? (request|body|message|payload|content) size\b"
)
_MAX_MESSAGE_CHARS: Final = 300
_MAX_NON_JSON_BODY_CHARS: Final = 200


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


def is_temporary_block(messages: Iterable[str]) -> bool:
    """Whether a 403's messages describe SendGrid's temporary block, not a missing scope."""
    lowered = " ".join(messages).lower()
    return any(marker in lowered for marker in TEMPORARY_BLOCK_MARKERS)


def refused_custom_field_ids(messages: Iterable[str]) -> set[str]:
    """The IDs of ``invalid custom field ids supplied - <ids>`` messages, if every message is
    of that kind (SendGrid may name the contact or not); else an empty set."""
    refused: set[str] = set()
    for message in messages:
        match = _CUSTOM_IDS.search(message)
        if not match:
            return set()
        refused |= {i.strip() for i in match.group(1).split(",") if i.strip()}
    return refused


def is_request_level(message: str) -> bool:
    """Whether a message describes the request as a whole (invalid JSON, unknown lists)."""
    return _REQUEST_LEVEL.match(message.strip()) is not None


def says_body_too_large(messages: Iterable[str]) -> bool:
    """Whether the messages say the request body (the message) is too large."""
    return any(_TOO_LARGE.search(_blanked(m)) for m in messages)


def _blanked(message: str) -> str:
    """The message with echoed values blanked, lower-cased: what meaning is read from."""
    return redact(message).lower()


def describe(details: list[ApiErrorDetail]) -> str:
    """The first messages of a refusal, redacted and bounded, for an exception message."""
    if not details:
        return "no error message"
    shown = "; ".join(redact(d.message) for d in details[:3])
    if len(details) > 3:
        shown += f" (+{len(details) - 3} more)"
    return shown if len(shown) <= _MAX_MESSAGE_CHARS else shown[: _MAX_MESSAGE_CHARS - 3] + "..."
