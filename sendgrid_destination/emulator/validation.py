"""Synchronous validation of a ``PUT /v3/marketing/contacts`` body: the 400s.

Contract: ``validate_upsert(doc, ready_field_ids, list_ids)`` returns the contacts when the
body would be accepted (202), else raises ``errors.BadRequest`` with the items of a 400
that refuses the WHOLE request, as the real API does (Segment strips the contacts named in
``email '...' is not valid`` and re-sends the rest). Two stages, like a decoder followed
by a validator:

* a JSON type mismatch anywhere (a string field given a number, ``custom_fields`` not an
  object, ...) raises ``errors.InvalidInput``, one ``{"field": "", "message": "invalid
  input"}``;
* otherwise every bad contact contributes its first error, with ``field``
  ``contacts[<index>]...``.

``check_contact`` is the per-contact check on its own (``ContactInvalid`` carries the
message and the field suffix), which the CSV import applies to each row in its job.
Value checks that the real API only makes while processing the job (Number/Date custom
field values) live in ``import_jobs.py``. Kept to dictionary look-ups and compiled regexes
so a 30,000-contact body validates in tens of milliseconds.
"""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from .errors import BadRequest, ErrorItem, InvalidInput, error_item
from .rules import (
    ID_KEYS,
    IDENTIFIERS,
    MAX_ALTERNATE_EMAILS,
    MAX_CONTACTS_PER_REQUEST,
    MAX_CUSTOM_TEXT_LENGTH,
    MAX_LENGTHS,
    READ_ONLY_FIELDS,
    STRING_FIELDS,
    is_e164,
    is_email,
    type_of_field_id,
)

_EMAIL_MAX = MAX_LENGTHS["email"]


class ContactInvalid(Exception):
    """One contact's first problem: ``message``, and the ``suffix`` of its error field."""

    def __init__(self, message: str, suffix: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.suffix = suffix


def validate_upsert(doc: Any, ready_field_ids: Set[str], list_ids: Set[str]) -> list[Any]:
    """The contacts of an acceptable upsert body; ``BadRequest`` when it is refused."""
    contacts = _check_envelope_types(doc)
    if contacts is None:
        raise BadRequest("contacts is required", "contacts")
    if not contacts:
        raise BadRequest("contacts must contain at least 1 item", "contacts")
    if len(contacts) > MAX_CONTACTS_PER_REQUEST:
        raise BadRequest(
            f"contacts must contain at most {MAX_CONTACTS_PER_REQUEST} items", "contacts"
        )
    errors = _list_id_errors(doc.get("list_ids") or [], list_ids)
    for index, contact in enumerate(contacts):
        try:
            check_contact(contact, ready_field_ids)
        except ContactInvalid as invalid:
            errors.append(error_item(invalid.message, f"contacts[{index}]{invalid.suffix}"))
    if errors:
        raise BadRequest(errors)
    return contacts


def check_contact(contact: Any, ready_field_ids: Set[str]) -> None:
    """Raise ``ContactInvalid`` for this contact's first problem (``InvalidInput`` on types)."""
    _check_types(contact)
    for key, value in contact.items():
        _check_key(key, value, ready_field_ids)
    if not any(name in contact for name in IDENTIFIERS):
        raise ContactInvalid("contact must have at least one identifier: " + ", ".join(IDENTIFIERS))


def _check_envelope_types(doc: Any) -> list[Any] | None:
    if not isinstance(doc, dict):
        raise InvalidInput
    list_ids = doc.get("list_ids")
    if list_ids is not None and not _is_str_list(list_ids):
        raise InvalidInput
    contacts = doc.get("contacts")
    if contacts is not None and not isinstance(contacts, list):
        raise InvalidInput
    return contacts


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _list_id_errors(requested: list[str], known: Set[str]) -> list[ErrorItem]:
    unknown = [list_id for list_id in requested if list_id not in known]
    if not unknown:
        return []
    return [error_item(f"invalid list ids supplied - {','.join(unknown)}", "list_ids")]


def _check_types(contact: Any) -> None:
    if not isinstance(contact, dict):
        raise InvalidInput
    for key, value in contact.items():
        if key in STRING_FIELDS:
            ok = isinstance(value, str)
        elif key == "alternate_emails":
            ok = _is_str_list(value)
        elif key == "custom_fields":
            ok = isinstance(value, dict)
        else:
            ok = True
        if not ok:
            raise InvalidInput


def _check_key(key: str, value: Any, ready_field_ids: Set[str]) -> None:
    if key in STRING_FIELDS:
        _check_string_field(key, value)
    elif key == "alternate_emails":
        _check_alternate_emails(value)
    elif key == "custom_fields":
        _check_custom_fields(value, ready_field_ids)
    elif key in ID_KEYS:
        # "A contact's ID cannot be used to update the contact", yet sending one got a 202
        # (sendgrid-nodejs#1004): it passes here and fails that contact in the job.
        return
    elif key in READ_ONLY_FIELDS:
        raise ContactInvalid(f"{key} is a read-only field", f".{key}")
    else:
        raise ContactInvalid(f"unknown field {key!r}", f".{key}")


def _check_string_field(key: str, value: str) -> None:
    if key == "email" and not is_email(value):
        raise ContactInvalid(f"email '{value}' is not valid", ".identifier")
    if key == "phone_number_id" and not is_e164(value):
        raise ContactInvalid(f"phone_number_id '{value}' is not valid", ".identifier")
    # "Both [phone_number_id and phone_number] must use E.164" (managing-contacts docs).
    if key == "phone_number" and not is_e164(value):
        raise ContactInvalid(f"phone_number '{value}' is not valid", ".phone_number")
    if key in IDENTIFIERS and not value:
        raise ContactInvalid(f"{key} '' is not valid", ".identifier")
    limit = MAX_LENGTHS.get(key)
    if limit is not None and len(value) > limit:
        raise ContactInvalid(f"{key} must be at most {limit} characters", f".{key}")


def _check_alternate_emails(value: list[str]) -> None:
    if len(value) > MAX_ALTERNATE_EMAILS:
        raise ContactInvalid(
            f"alternate_emails must contain at most {MAX_ALTERNATE_EMAILS} items",
            ".alternate_emails",
        )
    for position, email in enumerate(value):
        if not is_email(email):
            raise ContactInvalid(f"email '{email}' is not valid", f".alternate_emails[{position}]")
        if len(email) > _EMAIL_MAX:
            raise ContactInvalid(
                f"alternate_emails must be at most {_EMAIL_MAX} characters",
                f".alternate_emails[{position}]",
            )


def _check_custom_fields(value: dict[str, Any], ready_field_ids: Set[str]) -> None:
    unknown = [field_id for field_id in value if field_id not in ready_field_ids]
    if unknown:
        raise ContactInvalid(
            f"invalid custom field ids supplied - {','.join(unknown)}", ".custom_fields"
        )
    for field_id, field_value in value.items():
        if field_value is None:
            raise ContactInvalid(
                f'custom field "{field_id}" cannot be null', f".custom_fields.{field_id}"
            )
        if (
            type_of_field_id(field_id) == "Text"
            and isinstance(field_value, str)
            and len(field_value) > MAX_CUSTOM_TEXT_LENGTH
        ):
            raise ContactInvalid(
                f'custom field "{field_id}" must be at most {MAX_CUSTOM_TEXT_LENGTH} characters',
                f".custom_fields.{field_id}",
            )
