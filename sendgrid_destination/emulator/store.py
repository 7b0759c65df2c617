"""Stored contacts and their identifier indexes.

Contract: a ``StoredContact`` holds the reserved fields that were set (emails lower-cased),
custom field values keyed by custom field ID, list membership and timestamps. The store
keeps one index per identifier (email, phone_number_id, external_id, anonymous_id) so a
job can find every contact an incoming contact's identifiers point at. ``details`` renders
a contact as the API's ``ContactDetails3``. Not thread-safe on its own: the backend holds
the lock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .rules import IDENTIFIERS

# ContactDetails3 lists reserved fields in this order; we render set fields in it too.
_DETAIL_ORDER = (
    "first_name",
    "last_name",
    "unique_name",
    "email",
    "phone_number_id",
    "external_id",
    "anonymous_id",
    "alternate_emails",
    "address_line_1",
    "address_line_2",
    "city",
    "state_province_region",
    "country",
    "postal_code",
    "phone_number",
    "whatsapp",
    "line",
    "facebook",
)


def iso(timestamp: float) -> str:
    """SendGrid's timestamp format: UTC, seconds precision, ``Z``."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class StoredContact:
    id: str
    created_at: float
    updated_at: float
    fields: dict[str, Any] = field(default_factory=dict)
    custom_fields: dict[str, Any] = field(default_factory=dict)
    list_ids: list[str] = field(default_factory=list)

    def copy(self) -> StoredContact:
        """A copy whose containers can change without touching this one."""
        return StoredContact(
            self.id,
            self.created_at,
            self.updated_at,
            dict(self.fields),
            dict(self.custom_fields),
            list(self.list_ids),
        )

    def identifiers(self) -> dict[str, str]:
        return {name: self.fields[name] for name in IDENTIFIERS if name in self.fields}

    def details(self) -> dict[str, Any]:
        """This contact as ``ContactDetails3``."""
        out: dict[str, Any] = {"id": self.id}
        out.update((name, self.fields[name]) for name in _DETAIL_ORDER if name in self.fields)
        out["list_ids"] = list(self.list_ids)
        out["segment_ids"] = []
        out["custom_fields"] = dict(self.custom_fields)
        out["created_at"] = iso(self.created_at)
        out["updated_at"] = iso(self.updated_at)
        return out


class ContactStore:
    """Contacts by ID, plus an index from each identifier value to its contact's ID."""

    def __init__(self) -> None:
        self._by_id: dict[str, StoredContact] = {}
        self._index: dict[str, dict[str, str]] = {name: {} for name in IDENTIFIERS}

    def __len__(self) -> int:
        return len(self._by_id)

    def all(self) -> list[StoredContact]:
        return list(self._by_id.values())

    def get(self, contact_id: str) -> StoredContact | None:
        return self._by_id.get(contact_id)

    def by_identifier(self, kind: str, value: str) -> StoredContact | None:
        contact_id = self._index[kind].get(value)
        return None if contact_id is None else self._by_id[contact_id]

    def matching(self, identifiers: Mapping[str, str]) -> list[StoredContact]:
        """Every distinct stored contact that any of ``identifiers`` points at."""
        ids = {self._index[kind].get(value) for kind, value in identifiers.items()}
        return [self._by_id[contact_id] for contact_id in ids if contact_id is not None]

    def by_any_email(self, email: str) -> StoredContact | None:
        """The contact whose primary or alternate email is ``email`` (already lower-cased)."""
        primary = self.by_identifier("email", email)
        if primary is not None:
            return primary
        return next(
            (c for c in self._by_id.values() if email in c.fields.get("alternate_emails", ())),
            None,
        )

    def save(self, contact: StoredContact) -> None:
        """Insert or re-index ``contact`` after its identifiers were set."""
        self._unindex(contact.id)
        self._by_id[contact.id] = contact
        for kind, value in contact.identifiers().items():
            self._index[kind][value] = contact.id

    def delete(self, contact_ids: Iterable[str]) -> int:
        """Remove these contacts; the number that existed."""
        removed = 0
        for contact_id in contact_ids:
            if contact_id in self._by_id:
                self._unindex(contact_id)
                del self._by_id[contact_id]
                removed += 1
        return removed

    def _unindex(self, contact_id: str) -> None:
        old = self._by_id.get(contact_id)
        if old is None:
            return
        for kind, value in old.identifiers().items():
            if self._index[kind].get(value) == contact_id:
                del self._index[kind][value]
