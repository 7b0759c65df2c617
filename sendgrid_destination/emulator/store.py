"""Stored contacts, kept compact, and their identifier indexes.

Contract: ``StoredContact`` is the working view of one contact: the reserved fields that
were set (emails lower-cased), custom field values keyed by custom field ID, list
membership and timestamps; ``details`` renders it as the API's ``ContactDetails3``. The
``ContactStore`` hands out such views and takes them back with ``save``; it keeps one index
per identifier (email, phone_number_id, external_id, anonymous_id), one for alternate
emails, and a contact count per list, so a job finds every contact an incoming contact's
identifiers point at without a scan. Not thread-safe on its own: the backend holds the lock.

Memory: a million contacts must fit in a few hundred MiB (the CLI emulator once held
3.5 GiB after a 1M load). So a stored contact is one record, a compact UTF-8 JSON blob
(``[created, updated, {field code: value}, {custom field code: value}, [list codes]]``,
times in whole seconds since the store was made, custom field IDs and list IDs as small
numbers),
appended to one large byte buffer and found by offset and length through the contact's
serial number: no Python object per contact besides its index entries, and no
fragmentation among the short-lived objects of request parsing. A replaced or deleted
record leaves dead bytes behind; the buffer is compacted when they outweigh the live ones.
No ID string is kept either: a contact's ID is a UUID made of a random per-store prefix
and the serial number, and is parsed back. Views are decoded on demand (a few
microseconds each).
"""

from __future__ import annotations

import json
import time
import uuid
from array import array
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
# One-character keys in the stored blob instead of the field names (about 80 bytes a
# contact at a million contacts).
_CODE = {name: chr(ord("a") + i) for i, name in enumerate(_DETAIL_ORDER)}
_NAME = {code: name for name, code in _CODE.items()}
# A contact ID is ``prefix | serial``: the low 62 bits carry the serial number, the rest
# is a random UUID4's (its version and variant bits included).
_SERIAL_BITS = 62
_SERIAL_MASK = (1 << _SERIAL_BITS) - 1
# A record's length slot when the contact does not exist (never saved, or deleted).
_ABSENT = 0


def iso(timestamp: float) -> str:
    """SendGrid's timestamp format: UTC, seconds precision, ``Z``."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True)
class StoredContact:
    id: str
    created_at: float
    updated_at: float
    fields: dict[str, Any] = field(default_factory=dict)
    custom_fields: dict[str, Any] = field(default_factory=dict)
    list_ids: list[str] = field(default_factory=list)
    # The store's serial number for ``id``, so saving does not parse the ID back.
    serial: int | None = field(default=None, compare=False, repr=False)

    def copy(self) -> StoredContact:
        """A copy whose containers can change without touching this one."""
        return StoredContact(
            self.id,
            self.created_at,
            self.updated_at,
            dict(self.fields),
            dict(self.custom_fields),
            list(self.list_ids),
            self.serial,
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
    """Contacts by serial number, plus indexes from identifier values to serial numbers."""

    def __init__(self) -> None:
        self._prefix = uuid.uuid4().int & ~_SERIAL_MASK
        self._heap = bytearray()
        self._offsets = array("Q")
        self._lengths = array("L")
        self._dead_bytes = 0
        self._live = 0
        self._index: dict[str, dict[str, int]] = {name: {} for name in IDENTIFIERS}
        self._alternates: dict[str, list[int]] = {}
        self._epoch = int(time.time())
        self._list_codes: dict[str, int] = {}
        self._list_ids: list[str] = []
        self._field_codes: dict[str, str] = {}
        self._field_ids: dict[str, str] = {}
        self._list_counts: dict[str, int] = {}

    def __len__(self) -> int:
        return self._live

    # -- reading ----------------------------------------------------------------------------

    def all(self) -> list[StoredContact]:
        contacts = (self._at(n) for n in range(len(self._lengths)))
        return [contact for contact in contacts if contact is not None]

    def ids(self) -> list[str]:
        return [self._id(n) for n, length in enumerate(self._lengths) if length != _ABSENT]

    def get(self, contact_id: str) -> StoredContact | None:
        n = self._serial(contact_id)
        return None if n is None else self._at(n)

    def by_identifier(self, kind: str, value: str) -> StoredContact | None:
        n = self._index[kind].get(value)
        return None if n is None else self._at(n)

    def matching(self, identifiers: Mapping[str, str]) -> list[StoredContact]:
        """Every distinct stored contact that any of ``identifiers`` points at."""
        found = {self._index[kind].get(value) for kind, value in identifiers.items()}
        contacts = (self._at(n) for n in sorted(n for n in found if n is not None))
        return [contact for contact in contacts if contact is not None]

    def by_any_email(self, email: str) -> StoredContact | None:
        """The contact whose primary or alternate email is ``email`` (already lower-cased)."""
        primary = self.by_identifier("email", email)
        if primary is not None:
            return primary
        holders = self._alternates.get(email)
        return self._at(min(holders)) if holders else None

    def list_counts(self) -> dict[str, int]:
        return dict(self._list_counts)

    # -- writing ----------------------------------------------------------------------------

    def new(self, now: float) -> StoredContact:
        """An empty contact with a fresh ID, stored once it is ``save``d."""
        self._offsets.append(0)
        self._lengths.append(_ABSENT)
        n = len(self._lengths) - 1
        return StoredContact(self._id(n), now, now, serial=n)

    def save(self, contact: StoredContact) -> None:
        """Insert or replace ``contact`` (made by ``new`` or read from here) and index it."""
        n = contact.serial if contact.serial is not None else self._serial(contact.id)
        if n is None or self._id(n) != contact.id:
            raise KeyError(f"not a contact of this store: {contact.id}")
        if self._lengths[n] == _ABSENT:
            self._live += 1
        else:
            self._unindex(n)
            self._forget(n)
        blob = self._encode(contact)
        self._offsets[n], self._lengths[n] = len(self._heap), len(blob)
        self._heap += blob
        self._index_contact(n, contact)
        self._compact_if_mostly_dead()

    def delete(self, contact_ids: Iterable[str]) -> int:
        """Remove these contacts; the number that existed."""
        removed = 0
        for contact_id in contact_ids:
            n = self._serial(contact_id)
            if n is not None and self._lengths[n] != _ABSENT:
                self._unindex(n)
                self._forget(n)
                self._live -= 1
                removed += 1
        self._compact_if_mostly_dead()
        return removed

    # -- records ----------------------------------------------------------------------------

    def _id(self, n: int) -> str:
        return str(uuid.UUID(int=self._prefix | n))

    def _serial(self, contact_id: str) -> int | None:
        try:
            value = uuid.UUID(contact_id).int
        except (ValueError, AttributeError, TypeError):
            return None
        n = value & _SERIAL_MASK
        if value & ~_SERIAL_MASK != self._prefix or n >= len(self._lengths):
            return None
        return n

    def _at(self, n: int) -> StoredContact | None:
        length = self._lengths[n]
        if length == _ABSENT:
            return None
        start = self._offsets[n]
        return self._view(n, self._heap[start : start + length])

    def _forget(self, n: int) -> None:
        self._dead_bytes += self._lengths[n]
        self._lengths[n] = _ABSENT

    def _compact_if_mostly_dead(self) -> None:
        # Rewriting costs one pass over the live bytes; doing it only when the dead ones
        # outweigh them keeps it amortised constant per write.
        if self._dead_bytes <= max(1 << 20, len(self._heap) - self._dead_bytes):
            return
        heap = bytearray()
        for n, length in enumerate(self._lengths):
            if length != _ABSENT:
                start = self._offsets[n]
                self._offsets[n] = len(heap)
                heap += self._heap[start : start + length]
        self._heap, self._dead_bytes = heap, 0

    def _view(self, n: int, blob: bytes | bytearray) -> StoredContact:
        created, updated, coded, custom, lists = json.loads(blob)
        fields = {_NAME[code]: value for code, value in coded.items()}
        custom_fields = {self._field_ids[code]: value for code, value in custom.items()}
        return StoredContact(
            self._id(n),
            self._epoch + created,
            self._epoch + updated,
            fields,
            custom_fields,
            [self._list_ids[i] for i in lists],
            n,
        )

    def _encode(self, contact: StoredContact) -> bytes:
        record = [
            int(contact.created_at) - self._epoch,
            int(contact.updated_at) - self._epoch,
            {_CODE[name]: value for name, value in contact.fields.items()},
            {self._field_code(key): value for key, value in contact.custom_fields.items()},
            [self._list_code(list_id) for list_id in contact.list_ids],
        ]
        return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()

    def _field_code(self, field_id: str) -> str:
        code = self._field_codes.get(field_id)
        if code is None:
            code = self._field_codes[field_id] = format(len(self._field_codes), "x")
            self._field_ids[code] = field_id
        return code

    def _list_code(self, list_id: str) -> int:
        code = self._list_codes.get(list_id)
        if code is None:
            code = self._list_codes[list_id] = len(self._list_ids)
            self._list_ids.append(list_id)
        return code

    def _index_contact(self, n: int, contact: StoredContact) -> None:
        for kind, value in contact.identifiers().items():
            self._index[kind][value] = n
        for email in contact.fields.get("alternate_emails", ()):
            self._alternates.setdefault(email, []).append(n)
        for list_id in contact.list_ids:
            self._list_counts[list_id] = self._list_counts.get(list_id, 0) + 1

    def _unindex(self, n: int) -> None:
        old = self._at(n)
        if old is None:
            return
        for kind, value in old.identifiers().items():
            if self._index[kind].get(value) == n:
                del self._index[kind][value]
        for email in old.fields.get("alternate_emails", ()):
            holders = self._alternates.get(email, [])
            if n in holders:
                holders.remove(n)
            if not holders:
                self._alternates.pop(email, None)
        for list_id in old.list_ids:
            self._list_counts[list_id] -= 1
