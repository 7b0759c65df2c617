"""Custom field definitions and marketing lists: the account's schema, not its contacts.

Contract: ``FieldCatalog.create`` and ``ListCatalog.create`` apply SendGrid's rules (name
syntax, case-insensitive uniqueness also against reserved names, the 500-field and
1,000-list caps) and return the new entry, or raise ``errors.BadRequest`` for a 400.
Custom field IDs encode the type in their suffix (``e1_T``, ``e2_N``, ``e3_D``) as real
IDs do. A field is "ready" for upserts only ``ready_seconds`` after creation, because real
fields take a few seconds to propagate (StrongGrid waits 5 s; Jitsu retries). Not
thread-safe on its own: the backend holds the lock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from .errors import BadRequest, ErrorItem, error_item
from .rules import (
    FIELD_TYPES,
    MAX_CUSTOM_FIELDS,
    MAX_FIELD_NAME_LENGTH,
    MAX_LIST_NAME_LENGTH,
    MAX_LISTS,
    RESERVED_FIELDS,
    RESERVED_NAMES,
    TYPE_SUFFIX,
    FieldType,
    is_field_name,
)

# Twilio error 19045, verbatim.
INVALID_FIELD_TYPE = (
    "Field definition type is invalid; data types that are supported are text, date, and number"
)


@dataclass(frozen=True)
class CustomField:
    id: str
    name: str
    field_type: FieldType
    created_at: float

    def definition(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "field_type": self.field_type}


@dataclass(frozen=True)
class MarketingList:
    id: str
    name: str


def reserved_definitions() -> list[dict[str, Any]]:
    """``reserved_fields`` of GET field_definitions, with ``read_only`` only where true."""
    out: list[dict[str, Any]] = []
    for f in RESERVED_FIELDS:
        item: dict[str, Any] = {"id": f.id, "name": f.name, "field_type": f.field_type}
        if f.read_only:
            item["read_only"] = True
        out.append(item)
    return out


def _name_errors(name: Any, max_length: int, pattern_check: bool) -> list[ErrorItem]:
    if not isinstance(name, str) or not name:
        return [error_item("name is required", "name")]
    if len(name) > max_length:
        return [error_item(f"name must be at most {max_length} characters", "name")]
    if pattern_check and not is_field_name(name):
        return [
            error_item(
                "name may contain only letters, digits and underscores "
                "and must begin with a letter or an underscore",
                "name",
            )
        ]
    return []


def _check_name(name: Any, max_length: int, pattern_check: bool) -> str:
    errors = _name_errors(name, max_length, pattern_check)
    if errors:
        raise BadRequest(errors)
    return str(name)


class FieldCatalog:
    """Custom field definitions, in creation order."""

    def __init__(self, ready_seconds: float) -> None:
        self.ready_seconds = ready_seconds
        self._fields: dict[str, CustomField] = {}
        self._counter = 0

    def all(self) -> list[CustomField]:
        return list(self._fields.values())

    def get(self, field_id: str) -> CustomField | None:
        return self._fields.get(field_id)

    def ready_ids(self, now: float) -> frozenset[str]:
        return frozenset(
            f.id for f in self._fields.values() if now - f.created_at >= self.ready_seconds
        )

    def create(self, name: Any, field_type: Any, now: float) -> CustomField:
        errors = _name_errors(name, MAX_FIELD_NAME_LENGTH, pattern_check=True)
        if field_type not in FIELD_TYPES:
            errors.append(error_item(INVALID_FIELD_TYPE, "field_type"))
        if errors:
            raise BadRequest(errors)
        if self._name_taken(name):
            raise BadRequest("Name already exists", "name")
        if len(self._fields) >= MAX_CUSTOM_FIELDS:
            raise BadRequest(f"cannot create more than {MAX_CUSTOM_FIELDS} custom fields")
        self._counter += 1
        new_id = f"e{self._counter}_{TYPE_SUFFIX[field_type]}"
        created = CustomField(new_id, name, field_type, now)
        self._fields[new_id] = created
        return created

    def _name_taken(self, name: str) -> bool:
        # Names are stored as given but must be unique case-insensitively, reserved included.
        folded = name.casefold()
        reserved = any(r.casefold() == folded for r in RESERVED_NAMES)
        return reserved or any(f.name.casefold() == folded for f in self._fields.values())


class ListCatalog:
    """Marketing lists, in creation order.

    The specs say nothing about duplicate list names; one integration saw a 400 when it
    created a second list with an existing name (podkrepi-bg/api#634, 2024), so duplicates
    are refused unless ``unique_names`` is off. ``allow_duplicate_name`` lets a test seed
    two lists of one name anyway (made in the UI, or renamed), as an account may have.
    """

    def __init__(self, unique_names: bool = True) -> None:
        self.unique_names = unique_names
        self._lists: dict[str, MarketingList] = {}

    def all(self) -> list[MarketingList]:
        return list(self._lists.values())

    def get(self, list_id: str) -> MarketingList | None:
        return self._lists.get(list_id)

    def create(self, name: Any, allow_duplicate_name: bool = False) -> MarketingList:
        name = _check_name(name, MAX_LIST_NAME_LENGTH, pattern_check=False)
        unique = self.unique_names and not allow_duplicate_name
        if unique and any(existing.name == name for existing in self._lists.values()):
            raise BadRequest("Name already exists", "name")
        if len(self._lists) >= MAX_LISTS:
            raise BadRequest(f"cannot create more than {MAX_LISTS} lists")
        created = MarketingList(str(uuid.uuid4()), name)
        self._lists[created.id] = created
        return created

    def remove(self, list_id: str) -> bool:
        """Forget the list; whether it existed."""
        return self._lists.pop(list_id, None) is not None
