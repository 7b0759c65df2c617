"""The errors file of an import job: a CSV behind a pre-signed ``errors_url``, matched to the
contact keys the state uses.

Contract:

* ``read_rows(body, content_type)`` returns the data rows as dicts keyed by normalized
  column names (trimmed, lower-cased, non-alphanumerics as ``_``: ``Primary Email`` is
  ``primary_email``). It raises ``ErrorsFileUnreadableError``, naming the problem, for a body
  that is not a CSV (an HTML or XML page, JSON, binary), for a CSV the parser refuses, and for
  data rows under a header without any identifier column (``Contact,Problem``).
* ``match_rows(rows)`` returns an ``ErrorsFile``: ``failed`` maps each contact key a row names
  (``email:<address>``, ``external_id:<id>``, one per identifier cell) to SendGrid's reason;
  ``unmatched_rows`` counts the rows that name no usable identifier. A caller must treat a
  file with unmatched rows, or with fewer rows than the job's ``errored_count``, as
  incomplete: the job's other contacts are then unconfirmed, never accepted.
* ``parse(body, content_type)`` is both.

The CSV layout is undocumented; the identifier and reason columns below are the ones seen
(Castled's connector reads ``primary_email`` and ``errors_occurred``) plus the plain names.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from sendgrid_destination.contact_model import BLANKS
from sendgrid_destination.csv_fields import wide_fields
from sendgrid_destination.errors import ErrorsFileUnreadableError

# Column of the errors CSV -> the identifier it holds (the prefix of the contact key).
IDENTIFIER_COLUMNS: Final = {
    "primary_email": "email",
    "email": "email",
    "email_address": "email",
    "phone_number_id": "phone_number_id",
    "external_id": "external_id",
    "anonymous_id": "anonymous_id",
}
REASON_COLUMNS: Final = ("errors_occurred", "error", "errors", "reason", "error_message")
DEFAULT_REASON: Final = "failed in import job"
# Reasons are kept in the rejects table; a runaway cell must not bloat the state file.
MAX_REASON_CHARS: Final = 1_000
_NOT_CSV_TYPES: Final = ("text/html", "application/xhtml", "application/json", "xml")
_NOT_CSV_STARTS: Final = ("<", "{", "[")
_COLUMN_CHARS: Final = re.compile(r"[^0-9a-z]+")


@dataclass(frozen=True)
class ErrorsFile:
    """What an errors file says: failed contacts by key, and how much of it could be matched."""

    failed: Mapping[str, str] = field(default_factory=dict)  # contact key -> SendGrid's reason
    rows: int = 0
    unmatched_rows: int = 0


def parse(body: bytes, content_type: str | None = None) -> ErrorsFile:
    """``match_rows(read_rows(body, content_type))``."""
    return match_rows(read_rows(body, content_type))


def read_rows(body: bytes, content_type: str | None = None) -> list[dict[str, str]]:
    """The data rows under normalized column names; see the module doc for what raises."""
    text = body.decode("utf-8-sig", errors="replace")
    _refuse_what_is_not_csv(text, content_type)
    # Every field is shorter than the whole text; the csv default (131,072) raised on long
    # cells and left the job pending forever.
    with wide_fields(len(text) + 1):
        try:
            parsed = list(csv.reader(io.StringIO(text)))
        except csv.Error as exc:
            raise _unreadable(f"the CSV parser refused it ({exc})") from None
    if not parsed:
        return []
    header = [_column(name) for name in parsed[0]]
    rows = [
        {name: cell for name, cell in zip(header, cells, strict=False) if name}
        for cells in parsed[1:]
        if any(cell.strip(BLANKS) for cell in cells)
    ]
    if rows and not set(header) & IDENTIFIER_COLUMNS.keys():
        known = ", ".join(sorted(set(IDENTIFIER_COLUMNS)))
        raise _unreadable(
            f"its header has no identifier column ({len(header)} columns, none of {known})"
        )
    return rows


def match_rows(rows: list[dict[str, str]]) -> ErrorsFile:
    """Every contact key each row names, with the row's reason; a key once (last row wins)."""
    failed: dict[str, str] = {}
    unmatched = 0
    for row in rows:
        keys = _keys(row)
        if not keys:
            unmatched += 1
        reason = _reason(row)
        for key in keys:
            failed[key] = reason
    return ErrorsFile(failed=failed, rows=len(rows), unmatched_rows=unmatched)


def _keys(row: Mapping[str, str]) -> list[str]:
    keys = []
    for column, identifier in IDENTIFIER_COLUMNS.items():
        # Trimmed as the sent key was, of the project's blanks only: str.strip() also takes
        # other Unicode spaces, and "E1\u3000" would name the key of another contact, "E1".
        value = (row.get(column) or "").strip(BLANKS)
        if not value:
            continue
        if identifier == "email":
            # Only ASCII addresses are ever sent; lower-casing a look-alike (the Kelvin sign
            # K, a dotted capital I) would turn it into someone else's key.
            if not value.isascii():
                continue
            value = value.lower()
        keys.append(f"{identifier}:{value}")
    return list(dict.fromkeys(keys))


def _reason(row: Mapping[str, str]) -> str:
    reason = next((row[c].strip() for c in REASON_COLUMNS if (row.get(c) or "").strip()), "")
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[: MAX_REASON_CHARS - 3] + "..."
    return reason or DEFAULT_REASON


def _refuse_what_is_not_csv(text: str, content_type: str | None) -> None:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if any(kind in media for kind in _NOT_CSV_TYPES):
        raise _unreadable(f"it was served as {media}, not CSV")
    if text.lstrip().startswith(_NOT_CSV_STARTS):
        raise _unreadable("it is an HTML, XML or JSON document, not CSV")
    if "\x00" in text:
        raise _unreadable("it holds binary data, not CSV")


def _column(name: str) -> str:
    return _COLUMN_CHARS.sub("_", name.strip().lower()).strip("_")


def _unreadable(problem: str) -> ErrorsFileUnreadableError:
    return ErrorsFileUnreadableError(
        f"The errors file of an import job could not be used: {problem}. The job's contacts "
        "cannot be told apart, so they are unconfirmed and sent again by the next run.",
        route="GET errors_url",
    )
