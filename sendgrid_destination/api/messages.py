"""SendGrid's error bodies, parsed leniently, and the one classifier of its message texts.

Contract:

* ``parse_error_body(body)`` returns the error entries of any body shape seen in the wild
  (``ApiErrorDetail``: the field it names, SendGrid's raw message).
* ``classify(message)`` is the one place that reads meaning into SendGrid's text. It returns
  the ``MessageKind`` (temporary block, invalid custom field ids, body too large, missing
  existing identifiers, request-level, other), the names the message lists (custom field
  ids, identifier fields) and a ``reason`` safe for summaries, log lines and exception
  messages. Meaning is read with the values SendGrid echoes (quoted values, addresses)
  blanked out, so a contact's own data cannot trigger a classification.
* ``reason`` never carries a value SendGrid echoed: known messages become a fixed wording;
  others lose quoted values, addresses, keys, URLs' secrets, digit runs of 5 or more (phone
  numbers, postal codes, dates), and capitalised or all-capital words that do not start a
  sentence (names), except common acronyms (JSON, ID...) and field-like words (``e1_T``,
  ``contacts[3].first_name``). What it cannot tell from a word is a lower-case name, or a name
  as the message's first word. SendGrid's raw text is kept only where rows are recorded for
  the user (the rejects table), by the callers, from ``ApiErrorDetail.message``.
* The helpers ``is_temporary_block``, ``refused_custom_field_ids``, ``is_request_level``,
  ``says_body_too_large`` and ``missing_identifiers`` answer one question each through
  ``classify``; ``describe(details)`` is the text exception messages carry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from sendgrid_destination.errors import ApiErrorDetail
from sendgrid_destination.redaction import REDACTED, redact


class MessageKind(StrEnum):
    TEMPORARY_BLOCK = "temporary_block"
    INVALID_CUSTOM_FIELD_IDS = "invalid_custom_field_ids"
    BODY_TOO_LARGE = "body_too_large"
    MISSING_IDENTIFIERS = "missing_identifiers"
    REQUEST_LEVEL = "request_level"
    VALUE_REFUSED = "value_refused"  # a contact's value SendGrid will refuse until it changes
    OTHER = "other"


@dataclass(frozen=True)
class Classified:
    """What one SendGrid message means, and how to name it without its values."""

    kind: MessageKind
    reason: str
    names: tuple[str, ...] = ()  # custom field ids, or identifier fields, the message lists


# SendGrid's errors page: 403 "Too many bad requests. Temporary block".
TEMPORARY_BLOCK_MARKERS: Final = ("too many bad requests", "temporary block")
_CUSTOM_IDS: Final = re.compile(r"invalid custom field ids supplied\s*-\s*(.+)", re.IGNORECASE)
# "contact is missing existing identifier(s): external_id, phone_number_id" (an upsert that
# omits an identifier the matched contact already has).
_MISSING_IDS: Final = re.compile(
    r"missing existing identifiers?(\(s\))?\s*:?\s*(.*)", re.IGNORECASE | re.DOTALL
)
# Messages that describe the request, not a contact: splitting cannot help. Matched whole
# ("invalid json", "invalid input"), or naming the list ids ("invalid list ids supplied").
_REQUEST_LEVEL: Final = re.compile(r"^(invalid json|invalid input)$|\blist[ _]ids?\b")
# SendGrid documents 6 MB per upsert; one production integration met a stricter limit near
# 4 MB whose wording is not recorded, so the request (body, message, payload, content,
# entity) being "too large/big" or "exceeding" a size or limit counts. A field's length
# ("first_name exceeds max length") names none of those nouns and does not.
_TOO_LARGE: Final = re.compile(
    r"\b(request|body|message|payload|content|entity)\b[\w\s]{0,30}?"
    r"\b(too (large|big)|exceed(s|ed)?\b[\w\s]{0,30}?\b(size|limit))\b"
    r"|\bmax(imum)? (request|body|message|payload|content) size\b"
    # "message size exceeded", "body size limit reached", "received message larger than max
    # (4194305 vs. 4194304)" (gRPC's wording for a 4 MB cap).
    r"|\b(request|body|message|payload|content|entity) size\b[\w\s]{0,20}?\b(exceeded|reached)\b"
    r"|\b(request|body|message|payload|content|entity)\b[\w\s]{0,20}?\blarger than (the )?max"
)
# A job's refusal of a value it will refuse again ("email '<v>' is not valid", "... not in any
# of the following date formats", "... exceeds max length", "identifiers match more than one
# existing contact"): resending the same row can only fail the same way.
_VALUE_REFUSED: Final = re.compile(
    r"\bis not (a )?valid\b|\bnot in any of the following date formats\b|\bexceeds? max"
    r"|\bmust be (a|an|one of)\b|\bmatch(es)? more than one existing contact\b"
    r"|\binvalid (email|phone|date|number|value)\b|\bcannot be null\b"
)
_NAME_TOKEN: Final = re.compile(r"[A-Za-z0-9_]{1,64}")
_DIGIT_RUN: Final = re.compile(r"\+?\(?\d(?:[\d\s().\-/]*\d){4,}")
_WORD: Final = re.compile(r"[^\s,;:()\[\]{}]+")
_FIELD_LIKE: Final = re.compile(r"\w*_\w*|[a-z_]\w*\[\d+\][\w.\[\]]*|[a-z_]\w*(\.\w+)+")
_ACRONYMS: Final = frozenset(
    {"JSON", "ID", "IDS", "IDs", "URL", "API", "CSV", "UTF-8", "HTTP", "HTTPS", "UUID", "MB"}
)
_MAX_REASON_CHARS: Final = 200
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


def classify(message: str) -> Classified:
    """The kind of one SendGrid message, the names it lists and a reason without values."""
    blanked = redact(message).strip().lower()
    if any(marker in blanked for marker in TEMPORARY_BLOCK_MARKERS):
        return Classified(MessageKind.TEMPORARY_BLOCK, "too many bad requests (temporary block)")
    if _CUSTOM_IDS.search(blanked) and (found := _CUSTOM_IDS.search(message)):
        ids = tuple(i.strip() for i in found.group(1).split(",") if i.strip())
        reason = "invalid custom field ids supplied - " + _listed(ids)
        return Classified(MessageKind.INVALID_CUSTOM_FIELD_IDS, reason, ids)
    if _TOO_LARGE.search(blanked):
        return Classified(MessageKind.BODY_TOO_LARGE, "request body too large")
    if _MISSING_IDS.search(blanked) and (found := _MISSING_IDS.search(message)):
        listed = found.group(2).split(".", 1)[0]  # the list ends with its sentence
        names = tuple(n for n in re.split(r"[,\s]+", listed) if n)
        reason = "contact is missing existing identifier(s): " + _listed(names)
        return Classified(MessageKind.MISSING_IDENTIFIERS, reason, names)
    if _REQUEST_LEVEL.search(blanked):
        return Classified(MessageKind.REQUEST_LEVEL, _sanitized(message))
    if _VALUE_REFUSED.search(blanked):
        return Classified(MessageKind.VALUE_REFUSED, _with_date_formats(message))
    return Classified(MessageKind.OTHER, _sanitized(message))


# SendGrid's list of the date formats it takes (fixed text, no value): kept in the reason,
# since it says what to set date_format to; the digits and capitals would be scrubbed.
_FORMAT = r"(?:RFC ?3339|[MDY]{1,2}/[MDY]{1,2}/Y{2,4})"
_DATE_FORMATS = re.compile(
    rf"(not in any of the following date formats:?\s*)({_FORMAT}(?:\s*,\s*(?:or\s+)?{_FORMAT}"
    rf"|\s+or\s+{_FORMAT})*)",
    re.IGNORECASE,
)


def _with_date_formats(message: str) -> str:
    found = _DATE_FORMATS.search(message)
    if found is None:
        return _sanitized(message)
    head = _sanitized(message[: found.start()] + found.group(1)).rstrip()
    return f"{head} {found.group(2)}{_sanitized(message[found.end() :])}"


def is_permanent(message: str) -> bool:
    """Whether a contact failed for something only a change of its data can fix (a missing
    identifier, a value refused): then resending the same row fails the same way. Anything
    else, and anything unknown, may pass next time."""
    return classify(message).kind in (MessageKind.MISSING_IDENTIFIERS, MessageKind.VALUE_REFUSED)


def reason(message: str) -> str:
    """``classify(message).reason``: SendGrid's message without the values it echoed."""
    return classify(message).reason


def is_temporary_block(messages: Iterable[str]) -> bool:
    """Whether a 403's messages describe SendGrid's temporary block, not a missing scope."""
    return any(classify(m).kind == MessageKind.TEMPORARY_BLOCK for m in messages)


def refused_custom_field_ids(messages: Iterable[str]) -> set[str]:
    """The IDs of ``invalid custom field ids supplied - <ids>`` messages, if every message is
    of that kind (SendGrid may name the contact or not); else an empty set."""
    refused: set[str] = set()
    for message in messages:
        found = classify(message)
        if found.kind != MessageKind.INVALID_CUSTOM_FIELD_IDS:
            return set()
        refused |= set(found.names)
    return refused


def is_request_level(message: str) -> bool:
    """Whether a message describes the request as a whole (invalid JSON, unknown lists)."""
    return classify(message).kind == MessageKind.REQUEST_LEVEL


def says_body_too_large(messages: Iterable[str]) -> bool:
    """Whether the messages say the request body (the message) is too large."""
    return any(classify(m).kind == MessageKind.BODY_TOO_LARGE for m in messages)


def missing_identifiers(message: str) -> tuple[str, ...]:
    """The identifier fields of "contact is missing existing identifier(s): ..." (else none)."""
    found = classify(message)
    return found.names if found.kind == MessageKind.MISSING_IDENTIFIERS else ()


def describe(details: list[ApiErrorDetail]) -> str:
    """The first messages of a refusal, without values and bounded, for an exception message."""
    if not details:
        return "no error message"
    shown = "; ".join(reason(d.message) for d in details[:3])
    if len(details) > 3:
        shown += f" (+{len(details) - 3} more)"
    return shown if len(shown) <= _MAX_MESSAGE_CHARS else shown[: _MAX_MESSAGE_CHARS - 3] + "..."


def _listed(names: tuple[str, ...]) -> str:
    """Names a message lists (field ids, identifier fields), each shown only if name-shaped."""
    return ",".join(n if _NAME_TOKEN.fullmatch(n) else REDACTED for n in names[:20])


def _sanitized(message: str) -> str:
    text = _DIGIT_RUN.sub(REDACTED, redact(message.strip()))
    out, sentence_start, last = [], True, 0
    for match in _WORD.finditer(text):
        word = match.group(0)
        out.append(text[last : match.start()])
        out.append(word if sentence_start or _harmless(word) else REDACTED)
        sentence_start = word.endswith((".", "!", "?"))
        last = match.end()
    out.append(text[last:])
    shown = "".join(out)
    return shown if len(shown) <= _MAX_REASON_CHARS else shown[: _MAX_REASON_CHARS - 3] + "..."


def _harmless(word: str) -> bool:
    """A word that cannot be a name: lower-case, an acronym, field-like, or a redaction."""
    core = word.strip(".!?'\"`")
    return (
        core == core.lower()
        or core in _ACRONYMS
        or REDACTED in core
        or _FIELD_LIKE.fullmatch(core) is not None
    )
