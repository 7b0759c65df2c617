"""The competent per-row baseline: what a careful user writes in plain Python.

Contract: ``PerRowBaseline(custom_ids).run_pass(batches)`` turns each Arrow batch into Python
dicts (``to_pylist``), builds each contact with the destination's documented rules (trim the
email and lower-case its ASCII letters; omit nulls and empty strings; Numbers must be finite;
Dates formatted ``%Y-%m-%dT%H:%M:%SZ``; maxLengths; ``re`` for the email and E.164 phone
patterns), encodes it once with ``orjson`` (compact, UTF-8, as the destination's JSON), hashes
those bytes with ``hashlib.md5``, skips it when the hash is the one a dict (the state) holds,
and packs it with ``GreedyPacker``, the destination's packing: the bodies are byte for byte
the destination's, so requests and byte totals are identical (the harness checks it). The dict
is updated after each body, as after a 202, so a second pass finds everything unchanged.

``GreedyPacker`` and ``DictState`` are shared with ``benchmarks.vectorized``. The generated
data has no repeated contact key, so neither baseline needs a last-row-wins pass.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import orjson
import pyarrow as pa

from benchmarks.stats import BodySink, PassStats, mark
from sendgrid_destination.contact_model import (
    E164_RE,
    EMAIL_RE,
    MAX_CONTACTS_PER_REQUEST,
    MAX_CUSTOM_TEXT_LENGTH,
    MAX_REQUEST_BYTES,
    RESERVED_BY_NAME,
)

DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
BLANKS = " \t\n\r\f\v\u00a0"  # trimmed around identifiers, as the destination does
# Only ASCII letters are folded: the destination refuses look-alikes rather than folding them.
ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
TEXT_FIELDS = (
    "first_name",
    "last_name",
    "address_line_1",
    "city",
    "state_province_region",
    "postal_code",
    "country",
    "phone_number",
)
MAX_LENGTH = {name: RESERVED_BY_NAME[name].max_length for name in TEXT_FIELDS}
EMAIL_MAX = RESERVED_BY_NAME["email"].max_length or 254
PREFIX = b'{"contacts":['
SUFFIX = b"]}"


class DictState:
    """The state as a dict: contact key -> MD5 of the JSON last accepted."""

    def __init__(self) -> None:
        self.hashes: dict[str, bytes] = {}

    def unchanged(self, key: str, digest: bytes) -> bool:
        return self.hashes.get(key) == digest


class GreedyPacker:
    """The destination's packing, per contact: fill each body to the first limit it meets.

    A body is ``PREFIX`` + the contacts' JSON joined by commas + ``SUFFIX``; it closes when
    the next contact would take it over ``max_bytes`` or past ``max_contacts``.
    """

    def __init__(
        self, state: DictState, stats: PassStats, on_body: BodySink | None, max_bytes: int,
        max_contacts: int,
    ) -> None:  # fmt: skip
        self._state = state
        self._stats = stats
        self._on_body = on_body
        self._max_bytes = max_bytes
        self._max_contacts = max_contacts
        self._pending: list[tuple[str, bytes, bytes]] = []  # key, digest, JSON
        # Body bytes so far, counting a comma after every contact (the last one is not sent).
        self._size = len(PREFIX) + len(SUFFIX) - 1

    def add(self, key: str, digest: bytes, encoded: bytes) -> None:
        n = len(encoded) + 1
        if self._pending and (
            self._size + n > self._max_bytes or len(self._pending) >= self._max_contacts
        ):
            self.flush()
        self._pending.append((key, digest, encoded))
        self._size += n

    def flush(self) -> None:
        if not self._pending:
            return
        body = PREFIX + b",".join(encoded for _, _, encoded in self._pending) + SUFFIX
        if len(body) > self._max_bytes:
            raise AssertionError(f"baseline packed {len(body)} bytes, over {self._max_bytes}")
        stats = self._stats
        stats.requests += 1
        stats.body_bytes += len(body)
        stats.contacts += len(self._pending)
        if self._on_body is not None:
            self._on_body(body, len(self._pending))
        for key, digest, _ in self._pending:  # "after the 202"
            self._state.hashes[key] = digest
        self._pending = []
        self._size = len(PREFIX) + len(SUFFIX) - 1


def build_contact(row: dict[str, Any], ids: dict[str, str]) -> dict[str, Any] | None:
    """The contact for one source row (mapping of ``benchmarks.data``); None if refused."""
    email = (row["email"] or "").strip(BLANKS).translate(ASCII_LOWER)
    if not email or len(email) > EMAIL_MAX or not EMAIL_RE.fullmatch(email):
        return None
    contact: dict[str, Any] = {"email": email}
    for name in TEXT_FIELDS:
        value = row[name]
        if value:
            limit = MAX_LENGTH[name]
            if limit is not None and len(value) > limit:
                return None
            if name == "phone_number" and not E164_RE.fullmatch(value):
                return None
            contact[name] = value
    custom: dict[str, Any] = {}
    plan = row["plan"]
    if plan:
        if len(plan) > MAX_CUSTOM_TEXT_LENGTH:
            return None
        custom[ids["plan"]] = plan
    value = row["lifetime_value"]
    if value is not None:
        if not math.isfinite(value):
            return None
        custom[ids["lifetime_value"]] = value
    signed_up: datetime | None = row["signed_up_at"]
    if signed_up is not None:
        custom[ids["signed_up_at"]] = signed_up.strftime(DATE_FORMAT)
    if custom:
        contact["custom_fields"] = custom
    return contact


class PerRowBaseline:
    """A dict as the state; any number of passes."""

    encode: Callable[[Any], bytes] = staticmethod(orjson.dumps)

    def __init__(
        self,
        custom_ids: dict[str, str],
        *,
        max_bytes: int = MAX_REQUEST_BYTES,
        max_contacts: int = MAX_CONTACTS_PER_REQUEST,
    ) -> None:
        self.custom_ids = custom_ids
        self.max_bytes = max_bytes
        self.max_contacts = max_contacts
        self.state = DictState()

    def run_pass(
        self,
        batches: Iterable[pa.RecordBatch],
        on_body: BodySink | None = None,
        *,
        keep_rejects: bool = False,
    ) -> PassStats:
        stats = PassStats()
        start = mark()
        packer = GreedyPacker(self.state, stats, on_body, self.max_bytes, self.max_contacts)
        encode = self.encode
        for batch in batches:
            for row in batch.to_pylist():
                row_number = stats.rows
                stats.rows += 1
                contact = build_contact(row, self.custom_ids)
                if contact is None:
                    stats.rejected_rows += 1
                    if keep_rejects:
                        stats.rejected_row_numbers.append(row_number)
                    continue
                encoded = encode(contact)
                key = "email:" + contact["email"]
                digest = hashlib.md5(encoded).digest()
                if not self.state.unchanged(key, digest):
                    packer.add(key, digest, encoded)
        packer.flush()
        stats.finish(start)
        return stats
