"""CSV imports (``PUT /v3/marketing/contacts/imports``): the columns an import maps, and
the rows of its uploaded file read as contacts.

Contract: ``map_columns(field_mappings, custom_types)`` turns the request's list of field
definition IDs (``null`` skips a column) into ``Column``s, or raises ``BadRequest``.
``read_rows(data, columns)`` reads an uploaded file (gzip or not) and yields, per data row,
the contact an upsert would have carried, or a ``RowError``; a file that cannot be read as
a whole raises ``ImportFileError`` (the job fails). ``count_rows`` reads it without
building contacts. Pure; no store.

The spec's rules (OAI-C ImportContact): up to 1,000,000 contacts or 5 GB; the file may be
gzip-compressed; ``field_mappings`` holds the IDs that ``GET /v3/marketing/field_definitions``
lists, reserved (``_rf2_T`` is email) and custom. Where the spec is silent, the stricter
reading, documented in docs/emulator.md:

* the first row is a header and is skipped; it must have one column per mapping;
* only listed IDs map: the spec's example ``_rf1`` (without ``_T``) is refused, read-only
  reserved fields are refused, and a field mapped twice is refused. The identifiers other
  than email have no field definition, so an import identifies contacts by email only;
* an empty cell leaves the field as it was (like a field omitted from an upsert);
* ``alternate_emails`` is a comma-separated cell; Number cells must be numerals;
* a Date cell not in a M/D/YYYY form is dropped silently, the rest of the contact imported
  (``rules.is_csv_date``: SendGrid documents only those forms for CSV, and silent failure).
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import re
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sendgrid_destination.csv_fields import wide_fields

from .errors import BadRequest, InvalidInput
from .rules import (
    MAX_IMPORT_BYTES,
    MAX_IMPORT_ROWS,
    MAX_REQUEST_BYTES,
    RESERVED_BY_ID,
    FieldType,
    is_csv_date,
)

_GZIP_MAGIC = b"\x1f\x8b"
_INTEGER = re.compile(r"[+-]?\d+")
_READ_CHUNK = 1 << 20
# Python's csv refuses a cell over 131,072 characters by default: a limit of this reader, not
# one SendGrid documents, which failed a whole file over one value an upsert takes. A cell
# may be as long as a contact (an upsert body's size). The limit is process-wide: raised for
# each row read, and put back (``csv_fields``).


@dataclass(frozen=True)
class Column:
    """Where one CSV column goes: a reserved field by name, or a custom field by ID."""

    field: str
    custom_type: FieldType | None = None


@dataclass(frozen=True)
class RowError:
    """A data row that is not a valid contact: its identifiers and the reason."""

    identifiers: dict[str, str]
    reason: str


class ImportFileError(Exception):
    """The uploaded file cannot be read as a whole; the job fails with this reason."""


def map_columns(mappings: Any, custom_types: Mapping[str, FieldType]) -> list[Column | None]:
    """The columns ``field_mappings`` names; ``BadRequest`` naming what is wrong."""
    if not isinstance(mappings, list) or not all(m is None or isinstance(m, str) for m in mappings):
        if mappings is None:
            raise BadRequest("field_mappings is required", "field_mappings")
        raise InvalidInput
    if not mappings:
        raise BadRequest("field_mappings must contain at least 1 item", "field_mappings")
    columns = [None if m is None else _column(m, custom_types) for m in mappings]
    named = [c.field for c in columns if c is not None]
    twice = sorted({name for name in named if named.count(name) > 1})
    if twice:
        raise BadRequest(f"a field is mapped more than once: {', '.join(twice)}", "field_mappings")
    if "email" not in named:
        # "At least one identifier is required for a successful import", and email is the
        # only identifier with a field definition ID.
        raise BadRequest("field_mappings must map an identifier (email)", "field_mappings")
    return columns


def _column(field_id: str, custom_types: Mapping[str, FieldType]) -> Column:
    reserved = RESERVED_BY_ID.get(field_id)
    if reserved is not None and reserved.read_only:
        raise BadRequest(f"{reserved.name} is a read-only field", "field_mappings")
    if reserved is not None:
        return Column(reserved.name)
    if field_id in custom_types:
        return Column(field_id, custom_types[field_id])
    raise BadRequest(f"invalid field definition id supplied - {field_id}", "field_mappings")


def read_rows(data: bytes, columns: list[Column | None]) -> Iterator[dict[str, Any] | RowError]:
    """Each data row as a contact dict, or a ``RowError``; ``ImportFileError`` for the file."""
    for row in _csv_rows(data, len(columns)):
        yield _contact(row, columns)


def count_rows(data: bytes, columns: list[Column | None]) -> int:
    """The number of data rows, reading the whole file; ``ImportFileError`` if it cannot."""
    return sum(1 for _ in _csv_rows(data, len(columns)))


def _csv_rows(data: bytes, width: int) -> Iterator[list[str]]:
    text = io.TextIOWrapper(io.BufferedReader(_Decoded(data)), encoding="utf-8-sig", newline="")
    reader = csv.reader(text)
    try:
        header = _next_row(reader)
        if header is None or len(header) != width:
            found = 0 if header is None else len(header)
            raise ImportFileError(f"the header has {found} columns; field_mappings has {width}")
        for count, row in enumerate(iter(lambda: _next_row(reader), None), start=1):
            if count > MAX_IMPORT_ROWS:
                raise ImportFileError(f"the file has more than {MAX_IMPORT_ROWS} contacts")
            yield row
    except (csv.Error, UnicodeDecodeError, OSError, EOFError, zlib.error) as exc:
        raise ImportFileError(f"the file cannot be read as CSV: {type(exc).__name__}") from None


def _next_row(reader: Iterator[list[str]]) -> list[str] | None:
    with wide_fields(MAX_REQUEST_BYTES):
        return next(reader, None)


def _contact(row: list[str], columns: list[Column | None]) -> dict[str, Any] | RowError:
    if len(row) != len(columns):
        return RowError(
            _email_of(row, columns), f"the row has {len(row)} columns, not {len(columns)}"
        )
    contact: dict[str, Any] = {}
    custom: dict[str, Any] = {}
    for value, column in zip(row, columns, strict=True):
        if column is None or value == "":
            continue
        if column.custom_type == "Date" and not is_csv_date(value):
            continue  # dropped without a word, as SendGrid documents (rules.is_csv_date)
        if column.custom_type is not None:
            custom[column.field] = _typed(value, column.custom_type)
        elif column.field == "alternate_emails":
            contact[column.field] = [email.strip() for email in value.split(",")]
        else:
            contact[column.field] = value
    if custom:
        contact["custom_fields"] = custom
    return contact


def _email_of(row: list[str], columns: list[Column | None]) -> dict[str, str]:
    at = next(i for i, c in enumerate(columns) if c is not None and c.field == "email")
    return {"email": row[at].lower()} if at < len(row) and row[at] else {}


def _typed(value: str, field_type: FieldType) -> Any:
    # A CSV cell is text: Number cells become numbers when they are numerals, and are left
    # as text otherwise so the job reports them like a non-number in an upsert.
    if field_type != "Number":
        return value
    if _INTEGER.fullmatch(value):
        return int(value)
    try:
        number = float(value)
    except ValueError:
        return value
    return number if math.isfinite(number) else value


class _Decoded(io.RawIOBase):
    """The upload's bytes, gunzipped when they are gzip, refused past 5 GB of CSV."""

    def __init__(self, data: bytes) -> None:
        self._source: io.BufferedIOBase = (
            gzip.GzipFile(fileobj=io.BytesIO(data))
            if data.startswith(_GZIP_MAGIC)
            else io.BytesIO(data)
        )
        self._read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._source.read(min(len(buffer), _READ_CHUNK))
        self._read += len(chunk)
        if self._read > MAX_IMPORT_BYTES:
            raise ImportFileError(f"the file is larger than {MAX_IMPORT_BYTES} bytes")
        buffer[: len(chunk)] = chunk
        return len(chunk)
