"""The baseline: the same bodies, written the way most users would write it.

Contract: ``BaselinePath().run_pass(batches)`` turns each Arrow batch into per-row Python
dicts (``to_pylist``), builds each contact with the destination's documented rules (trim and
lower-case the email; omit nulls and empty strings; Numbers must be finite; Dates formatted
``%Y-%m-%dT%H:%M:%SZ``; maxLengths), validates with ``re`` (``EMAIL_RE``; ``E164_RE`` for the
phone), hashes each contact's ``json.dumps`` with ``hashlib.md5`` (the content hash ours
keeps), diffs against a Python dict, and packs greedily by
``len(json.dumps(contact).encode())`` into ``json.dumps({"contacts": [...]})`` bodies within
both limits. The dict is updated after each body, as after a 202, so a second
pass finds everything unchanged. Same fields, values and validation outcome as our path; the
JSON bytes differ (``ensure_ascii``, separators), which is allowed. The generated data has no
repeated contact key, so the baseline needs no last-row-wins pass.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import pyarrow as pa

from benchmarks.ours import BodySink, PassStats
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
_TEXT_FIELDS = (
    "first_name",
    "last_name",
    "address_line_1",
    "city",
    "state_province_region",
    "postal_code",
    "country",
    "phone_number",
)
_MAX_LENGTH = {name: RESERVED_BY_NAME[name].max_length for name in _TEXT_FIELDS}
_EMAIL_MAX = RESERVED_BY_NAME["email"].max_length or 254
_ENVELOPE = len(json.dumps({"contacts": []}))  # '{"contacts": []}'
_SEPARATOR = len(", ")


class Invalid(Exception):
    """A row the destination's rules refuse."""


def build_contact(row: dict[str, Any], ids: dict[str, str]) -> dict[str, Any]:
    """The contact for one source row (mapping of ``benchmarks.data``); raises ``Invalid``."""
    email = (row["email"] or "").strip(BLANKS).lower()
    if not email:
        raise Invalid("no identifier")
    if len(email) > _EMAIL_MAX or not EMAIL_RE.fullmatch(email):
        raise Invalid("email")
    contact: dict[str, Any] = {"email": email}
    for name in _TEXT_FIELDS:
        value = row[name]
        if value:
            limit = _MAX_LENGTH[name]
            if limit is not None and len(value) > limit:
                raise Invalid(name)
            if name == "phone_number" and not E164_RE.fullmatch(value):
                raise Invalid(name)
            contact[name] = value
    custom: dict[str, Any] = {}
    if row["plan"]:
        if len(row["plan"]) > MAX_CUSTOM_TEXT_LENGTH:
            raise Invalid("plan")
        custom[ids["plan"]] = row["plan"]
    value = row["lifetime_value"]
    if value is not None:
        if not math.isfinite(value):
            raise Invalid("lifetime_value")
        custom[ids["lifetime_value"]] = value
    signed_up: datetime | None = row["signed_up_at"]
    if signed_up is not None:
        custom[ids["signed_up_at"]] = signed_up.strftime(DATE_FORMAT)
    if custom:
        contact["custom_fields"] = custom
    return contact


class BaselinePath:
    """A Python dict as the state; any number of passes."""

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
        self.state: dict[str, str] = {}

    def run_pass(
        self,
        batches: Iterable[pa.RecordBatch],
        on_body: BodySink | None = None,
        *,
        keep_rejects: bool = False,
    ) -> PassStats:
        stats = PassStats()
        start = time.perf_counter()
        pending: list[tuple[str, str, dict[str, Any]]] = []  # key, hash, contact
        size = _ENVELOPE
        for batch in batches:
            for row in batch.to_pylist():
                row_number = stats.rows
                stats.rows += 1
                try:
                    contact = build_contact(row, self.custom_ids)
                except Invalid:
                    stats.rejected_rows += 1
                    if keep_rejects:
                        stats.rejected_row_numbers.append(row_number)
                    continue
                encoded = json.dumps(contact)
                key = "email:" + contact["email"]
                digest = hashlib.md5(encoded.encode()).hexdigest()
                if self.state.get(key) == digest:
                    continue
                n = len(encoded.encode()) + (_SEPARATOR if pending else 0)
                if pending and (size + n > self.max_bytes or len(pending) >= self.max_contacts):
                    self._send(pending, stats, on_body)
                    pending, size, n = [], _ENVELOPE, n - _SEPARATOR
                pending.append((key, digest, contact))
                size += n
        if pending:
            self._send(pending, stats, on_body)
        stats.seconds = time.perf_counter() - start
        return stats

    def _send(
        self,
        pending: list[tuple[str, str, dict[str, Any]]],
        stats: PassStats,
        on_body: BodySink | None,
    ) -> None:
        body = json.dumps({"contacts": [contact for _, _, contact in pending]}).encode()
        if len(body) > self.max_bytes:
            raise AssertionError(f"baseline packed {len(body)} bytes, over {self.max_bytes}")
        stats.requests += 1
        stats.body_bytes += len(body)
        stats.contacts += len(pending)
        if on_body is not None:
            on_body(body, len(pending))
        for key, digest, _ in pending:  # "after the 202"
            self.state[key] = digest
