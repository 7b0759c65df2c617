"""Asynchronous contact jobs: what an accepted upsert or delete does when it is processed.

Contract: a ``Job`` is created ``pending`` when a PUT/DELETE is accepted and is applied
later, in one go, by ``apply`` (the backend decides when). Applying an upsert merges each
contact into the store or records a per-contact error (raised inside as ``ContactFailed``,
kept as a row of the errors file); the job then ends ``completed`` (no errors), ``errored``
(some) or ``failed`` (all, or forced). Per-contact rules, from the
spec and observed behaviour:

* omitted fields keep their values; ``custom_fields`` merge by ID; ``list_ids`` are added;
* "to update a contact, all of its existing identifiers must be present": a contact that
  omits one, or gives another value for one, fails with ``contact is missing existing
  identifier(s): <types>``; identifiers pointing at two contacts fail too; an update may
  add an identifier the contact lacked (see docs/emulator.md for where the docs are
  silent);
* Number custom fields need a JSON number, Date ones RFC3339 or M/D/YYYY (castled's
  ``SendgridErrorParser`` quotes the real message).

``view`` renders the job as ``GET /v3/marketing/contacts/imports/{id}`` shows it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .csv_import import Column, ImportFileError, RowError, count_rows, read_rows
from .definitions import CustomField
from .errors import ApiError
from .faults import JobFault
from .rules import DATE_FORMATS_MESSAGE, ID_KEYS, IDENTIFIERS, WRITABLE_FIELDS, is_valid_date
from .store import ContactStore, StoredContact, iso
from .validation import ContactInvalid, check_contact

# ``upsert`` is the spec's value, kept for CSV imports (StrongGrid's ImportType has it
# beside the observed ``upsert_contacts``).
JobType = Literal["upsert_contacts", "delete_contacts", "upsert"]
JobStatus = Literal["pending", "completed", "errored", "failed"]


@dataclass
class ContactError:
    """One errored contact, as a row of the errors CSV."""

    identifiers: dict[str, str]
    reason: str


@dataclass
class Job:
    id: str
    job_type: JobType
    created_at: float
    requested_count: int
    contacts: list[dict[str, Any]] = field(default_factory=list)
    list_ids: list[str] = field(default_factory=list)
    contact_ids: list[str] | None = None  # delete: None means delete_all_contacts
    remove_from_list: str | None = None  # DELETE /lists/{id}/contacts
    remove_identifier: tuple[str, str] | None = None  # DELETE /contacts/{id}/identifiers
    columns: list[Column | None] | None = None  # a CSV import: its field_mappings
    # A CSV import's upload credentials: the upload_uri's signature, the header's value.
    upload_signature: str = ""
    upload_header: str = ""
    upload: bytes | None = None  # a CSV import: the file, until the job is applied
    forced_failure: str | None = None
    fault: JobFault | None = None
    polls: int = 0
    status: JobStatus = "pending"
    finished_at: float | None = None
    created_count: int = 0
    updated_count: int = 0
    deleted_count: int = 0
    errors: list[ContactError] = field(default_factory=list)

    @classmethod
    def new(cls, job_type: JobType, now: float, requested_count: int, **kwargs: Any) -> Job:
        return cls(str(uuid.uuid4()), job_type, now, requested_count, **kwargs)

    @property
    def stuck(self) -> bool:
        """A job its fault keeps pending forever, or an import still without its file."""
        forever = self.fault is not None and self.fault.import_status == "pending_forever"
        return forever or (self.columns is not None and self.upload is None)

    def apparent_status(self) -> Literal["actual", "pending", "missing"]:
        """What the imports route shows, after this job's fault: itself, pending, or 404."""
        fault = self.fault
        if fault is None or fault.import_status in (
            "normal",
            "pending_forever",
            "completed_with_errors",
        ):
            return "actual"
        if fault.import_status == "pending_then_not_found" and self.polls <= fault.pending_polls:
            return "pending"
        return "missing"


@dataclass(frozen=True)
class JobContext:
    """What processing needs besides the store: field types, forced errors, the time."""

    fields: Mapping[str, CustomField]
    forced_errors: Mapping[str, str]
    now: float
    retain: bool = True

    def forced_reason(self, identifiers: Mapping[str, str]) -> str | None:
        """The forced error for any of these identifiers; emails compare lower-cased."""
        for kind, value in identifiers.items():
            for key, reason in self.forced_errors.items():
                if value == (key.lower() if kind == "email" else key):
                    return reason
        return None


def view(job: Job, errors_url: str, *, as_pending: bool = False) -> dict[str, Any]:
    """The job as the imports route shows it; pending jobs show only requested_count."""
    status = "pending" if as_pending else job.status
    results: dict[str, Any] = {"requested_count": job.requested_count}
    out: dict[str, Any] = {"id": job.id, "status": status, "job_type": job.job_type}
    if status != "pending":
        results.update(
            created_count=job.created_count,
            updated_count=job.updated_count,
            deleted_count=job.deleted_count,
            errored_count=len(job.errors),
        )
        if job.errors:
            results["errors_url"] = errors_url
    out["results"] = results
    out["started_at"] = iso(job.created_at)
    if job.finished_at is not None and status != "pending":
        out["finished_at"] = iso(job.finished_at)
    return out


def apply(job: Job, store: ContactStore, ctx: JobContext) -> None:
    """Process a pending job against ``store`` and set its final status and counts."""
    if job.forced_failure is not None:
        job.errors = [ContactError(_identifiers(c), job.forced_failure) for c in _as_contacts(job)]
    elif job.remove_from_list is not None:
        _apply_list_removal(job, store)
    elif job.remove_identifier is not None:
        _apply_identifier_removal(job, job.remove_identifier, store)
    elif job.columns is not None:
        _apply_csv_import(job, job.columns, store, ctx)
    elif job.job_type == "delete_contacts":
        ids = store.ids() if job.contact_ids is None else job.contact_ids
        job.deleted_count = store.delete(ids)
    else:
        for contact in job.contacts:
            _upsert_one(job, contact, store, ctx)
    job.finished_at = ctx.now
    job.status = _final_status(job)
    # What was applied lives in the store now; the request's contacts are not kept (a
    # million contacts through jobs once cost the CLI emulator gigabytes).
    job.contacts, job.upload = [], b""


def _as_contacts(job: Job) -> list[dict[str, Any]]:
    if job.job_type == "upsert_contacts":
        return job.contacts
    if job.columns is not None:
        try:
            rows = list(read_rows(job.upload or b"", job.columns))
        except ImportFileError:
            rows = []
        job.requested_count = len(rows)
        return [row if isinstance(row, dict) else row.identifiers for row in rows]
    return [{} for _ in range(job.requested_count)]


def _final_status(job: Job) -> JobStatus:
    if job.fault is not None and job.fault.import_status == "completed_with_errors":
        return "completed"
    if job.forced_failure is not None or (job.errors and len(job.errors) >= job.requested_count):
        return "failed"
    return "errored" if job.errors else "completed"


def _apply_list_removal(job: Job, store: ContactStore) -> None:
    for contact_id in job.contact_ids or []:
        contact = store.get(contact_id)
        if contact is not None and job.remove_from_list in contact.list_ids:
            updated = contact.copy()
            updated.list_ids.remove(job.remove_from_list)
            store.save(updated)
            job.deleted_count += 1


def _apply_csv_import(
    job: Job, columns: list[Column | None], store: ContactStore, ctx: JobContext
) -> None:
    data = job.upload or b""
    try:
        # A first pass over the file, so an unreadable one fails before any row applies.
        job.requested_count = count_rows(data, columns)
    except ImportFileError as unreadable:
        job.forced_failure = str(unreadable)
        job.errors = [ContactError({}, str(unreadable))]
        return
    for row in read_rows(data, columns):
        if isinstance(row, RowError):
            job.errors.append(ContactError(row.identifiers, row.reason))
        else:
            _import_one(job, row, store, ctx)


def _import_one(job: Job, contact: dict[str, Any], store: ContactStore, ctx: JobContext) -> None:
    # A row is checked as an upserted contact would be, but fails alone, in the job.
    try:
        check_contact(contact, ctx.fields.keys())
    except (ContactInvalid, ApiError) as invalid:
        reason = invalid.message if isinstance(invalid, ContactInvalid) else "invalid input"
        job.errors.append(ContactError(_identifiers(contact), reason))
        return
    if ctx.retain:
        _upsert_one(job, contact, store, ctx)
    else:
        job.created_count += 1


def _apply_identifier_removal(job: Job, identifier: tuple[str, str], store: ContactStore) -> None:
    kind, value = identifier
    try:
        contact = _holding(store.get((job.contact_ids or [""])[0]), kind, value)
    except ContactFailed as failed:
        job.errors.append(ContactError({kind: value}, str(failed)))
        return
    updated = contact.copy()
    del updated.fields[kind]
    store.save(updated)
    job.deleted_count = 1


def _holding(contact: StoredContact | None, kind: str, value: str) -> StoredContact:
    """``contact`` if it holds this identifier and another one; else ``ContactFailed``."""
    if contact is None:
        raise ContactFailed("contact not found")
    stored = contact.identifiers()
    if stored.get(kind) != (value.lower() if kind == "email" else value):
        raise ContactFailed(f"contact has no such {kind}")
    # "If the contact has only one identifier, the asynchronous request will fail."
    if len(stored) == 1:
        raise ContactFailed("a contact must keep at least one identifier")
    return contact


def _identifiers(contact: Mapping[str, Any]) -> dict[str, str]:
    found = {name: contact[name] for name in IDENTIFIERS if isinstance(contact.get(name), str)}
    if "email" in found:
        found["email"] = found["email"].lower()
    return found


class ContactFailed(Exception):
    """A contact this job cannot apply; the message is its reason in the errors file."""


def _upsert_one(job: Job, contact: dict[str, Any], store: ContactStore, ctx: JobContext) -> None:
    identifiers = _identifiers(contact)
    try:
        _check_applicable(contact, identifiers, ctx)
        target = _match(identifiers, store)
    except ContactFailed as failed:
        job.errors.append(ContactError(identifiers, str(failed)))
        return
    created = target is None
    if target is None:
        target = store.new(ctx.now)
    store.save(_merged(target, contact, job.list_ids, ctx.now))
    if created:
        job.created_count += 1
    else:
        job.updated_count += 1


def _check_applicable(
    contact: Mapping[str, Any], identifiers: Mapping[str, str], ctx: JobContext
) -> None:
    forced = ctx.forced_reason(identifiers)
    if forced is not None:
        raise ContactFailed(forced)
    # A stray "id" got a 202 and the contact "never shows up" (sendgrid-nodejs#1004).
    sent = [key for key in ID_KEYS if key in contact]
    if sent:
        raise ContactFailed(
            "a contact's ID cannot be used to update the contact: " + ", ".join(sent)
        )
    _check_custom_values(contact.get("custom_fields") or {}, ctx)


def _match(identifiers: Mapping[str, str], store: ContactStore) -> StoredContact | None:
    """The stored contact this one updates, ``None`` for a new one; else ``ContactFailed``."""
    matches = store.matching(identifiers)
    if not matches:
        return None
    if len(matches) > 1:
        raise ContactFailed("identifiers match more than one existing contact")
    existing = matches[0]
    stored = existing.identifiers()
    # "In order to update a contact, all of its existing identifiers must be present": an
    # identifier given with another value (a new email beside the contact's external_id)
    # leaves the existing one absent too. The reason names identifier types, never values.
    missing = [name for name in stored if identifiers.get(name) != stored[name]]
    if missing:
        raise ContactFailed("contact is missing existing identifier(s): " + ", ".join(missing))
    return existing


def _merged(
    target: StoredContact, contact: Mapping[str, Any], list_ids: list[str], now: float
) -> StoredContact:
    # A fresh object, so the store can un-index the previous version.
    merged = target.copy()
    for key, value in contact.items():
        if key in WRITABLE_FIELDS:
            merged.fields[key] = _normalised(key, value)
    merged.custom_fields.update(contact.get("custom_fields") or {})
    merged.list_ids.extend(lid for lid in dict.fromkeys(list_ids) if lid not in merged.list_ids)
    merged.updated_at = now
    return merged


def _normalised(key: str, value: Any) -> Any:
    # "The email field will be changed to all lower-case" (spec, UpdateContact).
    if key == "email":
        return value.lower()
    if key == "alternate_emails":
        return [email.lower() for email in value]
    return value


def _check_custom_values(custom_fields: Mapping[str, Any], ctx: JobContext) -> None:
    for field_id, value in custom_fields.items():
        definition = ctx.fields.get(field_id)
        if definition is None:
            raise ContactFailed(f"invalid custom field ids supplied - {field_id}")
        problem = _value_problem(definition.field_type, value)
        if problem is not None:
            raise ContactFailed(
                f"error storing custom field name={definition.name} "
                f"type={definition.field_type}: {problem}"
            )


def _value_problem(field_type: str, value: Any) -> str | None:
    if field_type == "Number":
        # JSON numbers only; numeric strings are refused (conservative, undocumented).
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return None if ok else "value is not a number"
    if field_type == "Date":
        ok = isinstance(value, str) and is_valid_date(value)
        return (
            None
            if ok
            else f"value not in any of the following date formats: {DATE_FORMATS_MESSAGE}"
        )
    return None if isinstance(value, str) else "value is not text"
