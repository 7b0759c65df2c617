"""Typed results of the API calls, parsed leniently, and the counters of one client.

Contract: every ``from_json`` accepts any JSON object: missing or mistyped counts are 0,
missing texts are empty, unknown keys are ignored (SendGrid's real responses differ from the
spec: ``job_type`` ``upsert_contacts``, counts that appear while a job is still pending).
``ClientStats`` is shared by every thread using one client.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

TERMINAL_JOB_STATUSES: Final = frozenset({"completed", "errored", "failed"})


@dataclass(frozen=True)
class ImportJob:
    """``GET /v3/marketing/contacts/imports/{id}``, parsed leniently.

    Counts can rise while the job is still ``pending`` (seen live), so only ``status`` says
    whether the job finished.
    """

    id: str
    status: str
    job_type: str
    requested_count: int
    created_count: int
    updated_count: int
    deleted_count: int
    errored_count: int
    # Pre-signed: whoever holds it can read the rejected contacts, so it stays out of repr.
    errors_url: str | None = field(repr=False)
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_JOB_STATUSES

    @classmethod
    def from_json(cls, doc: Mapping[str, Any], job_id: str = "") -> ImportJob:
        results = doc.get("results")
        counts: Mapping[str, Any] = results if isinstance(results, Mapping) else {}
        errors_url = counts.get("errors_url") or doc.get("errors_url")
        return cls(
            id=_text(doc.get("id")) or job_id,
            status=_text(doc.get("status")).lower(),
            job_type=_text(doc.get("job_type")),
            requested_count=_count(counts.get("requested_count")),
            created_count=_count(counts.get("created_count")),
            updated_count=_count(counts.get("updated_count")),
            deleted_count=_count(counts.get("deleted_count")),
            errored_count=_count(counts.get("errored_count")),
            errors_url=errors_url if isinstance(errors_url, str) and errors_url else None,
            raw=doc,
        )


@dataclass(frozen=True)
class CsvImport:
    """``PUT /v3/marketing/contacts/imports``: the job, and where its file goes.

    ``upload_uri`` is pre-signed (whoever holds it can write the file), so it stays out of
    ``repr`` like ``errors_url``; ``upload_headers`` must travel with the upload, as given.
    """

    job_id: str
    upload_uri: str = field(repr=False)
    upload_headers: tuple[tuple[str, str], ...] = field(repr=False)

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> CsvImport:
        """Leniently; an answer without a job id or an upload URI has ``""`` there."""
        job_id = doc.get("job_id")
        headers = tuple(
            (_text(h.get("header")), _text(h.get("value")))
            for h in objects(doc.get("upload_headers"))
            if _text(h.get("header"))
        )
        return cls(
            job_id=str(job_id) if isinstance(job_id, str | int) and job_id != "" else "",
            upload_uri=_text(doc.get("upload_uri")),
            upload_headers=headers,
        )


@dataclass(frozen=True)
class CustomField:
    """A custom field definition; upserts address it by ``id`` (e.g. ``e1_T``), not name."""

    id: str
    name: str
    field_type: str

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> CustomField:
        return cls(_text(doc.get("id")), _text(doc.get("name")), _text(doc.get("field_type")))


@dataclass(frozen=True)
class ReservedFieldDefinition:
    """A reserved field as the account reports it; ``read_only`` ones cannot be set."""

    id: str
    name: str
    field_type: str
    read_only: bool = False

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ReservedFieldDefinition:
        return cls(
            # The spec's ReservedFieldDefinitionsResponse schema has no id; its example does.
            _text(doc.get("id")),
            _text(doc.get("name")),
            _text(doc.get("field_type")),
            doc.get("read_only") is True,
        )


@dataclass(frozen=True)
class FieldDefinitions:
    """``GET /v3/marketing/field_definitions``."""

    custom: tuple[CustomField, ...]
    reserved: tuple[ReservedFieldDefinition, ...]

    def custom_by_name(self) -> dict[str, CustomField]:
        """Custom fields keyed by lower-cased name: names are unique case-insensitively."""
        return {f.name.lower(): f for f in self.custom}

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> FieldDefinitions:
        return cls(
            custom=tuple(CustomField.from_json(d) for d in objects(doc.get("custom_fields"))),
            reserved=tuple(
                ReservedFieldDefinition.from_json(d) for d in objects(doc.get("reserved_fields"))
            ),
        )


@dataclass(frozen=True)
class ContactList:
    """A marketing list."""

    id: str
    name: str
    contact_count: int = 0

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ContactList:
        return cls(_text(doc.get("id")), _text(doc.get("name")), _count(doc.get("contact_count")))


@dataclass(frozen=True)
class FoundContact:
    """A contact a search found (``ContactDetails3``): its ID and identifiers, which is all
    removals need (a contact's ID is never sent back in an upsert)."""

    id: str
    identifiers: Mapping[str, str]  # identifier type -> value, as SendGrid holds it
    list_ids: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> FoundContact:
        names = ("email", "phone_number_id", "external_id", "anonymous_id")
        found = {name: doc[name] for name in names if isinstance(doc.get(name), str)}
        lists = doc.get("list_ids")
        ids = tuple(i for i in lists if isinstance(i, str)) if isinstance(lists, list) else ()
        return cls(_text(doc.get("id")), found, ids)


class ClientStats:
    """Counters shared by every thread using one client; read them via ``snapshot()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests_by_route: Counter[str] = Counter()
        self.responses_by_status: Counter[int] = Counter()
        self.transport_errors = 0
        self.bytes_sent = 0
        self.retries = 0
        self.rate_limit_wait_seconds = 0.0
        self.backoff_wait_seconds = 0.0

    def record_request(self, route: str, body_bytes: int) -> None:
        with self._lock:
            self.requests_by_route[route] += 1
            self.bytes_sent += body_bytes

    def record_response(self, status: int) -> None:
        with self._lock:
            self.responses_by_status[status] += 1

    def record_transport_error(self) -> None:
        with self._lock:
            self.transport_errors += 1

    def record_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def record_wait(self, reason: str, seconds: float) -> None:
        with self._lock:
            if reason == "rate_limit":
                self.rate_limit_wait_seconds += seconds
            else:
                self.backoff_wait_seconds += seconds

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests_by_route": dict(self.requests_by_route),
                "responses_by_status": dict(self.responses_by_status),
                "transport_errors": self.transport_errors,
                "bytes_sent": self.bytes_sent,
                "retries": self.retries,
                "rate_limit_wait_seconds": self.rate_limit_wait_seconds,
                "backoff_wait_seconds": self.backoff_wait_seconds,
            }


def objects(value: Any) -> list[Mapping[str, Any]]:
    """The JSON objects of a JSON array (anything else: none)."""
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _count(value: Any) -> int:
    """A count as a number, or as text (``"3"``, ``"3.0"``); 0 when it is neither."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):  # JSON's Infinity is a float
        pass
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0
    return int(number) if number.is_integer() else 0
