"""Packing contacts into upsert bodies: exact UTF-8 bytes, both limits, fewest requests.

Input is the transform's contacts table, whose ``contact_json`` cells are each one contact
object followed by a comma. Because cells are contiguous in Arrow's data buffer, a run of rows
is already a JSON array body once the last comma is dropped: a body is the envelope prefix,
one slice of that buffer, and ``]}``. No contact is re-encoded and no Python runs per row: the
split points come from a cumulative sum of cell sizes and ``numpy.searchsorted``.

``Packer`` is streaming: ``add(table)`` returns the bodies that became full, keeping the open
tail for the next call; ``flush()`` returns the tail. Filling every body to the limit before
starting the next is optimal for order-preserving packing, so the request count is the
minimum for the input order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sendgrid_destination.contact_model import MAX_CONTACTS_PER_REQUEST, MAX_REQUEST_BYTES
from sendgrid_destination.errors import ConfigurationError
from sendgrid_destination.schemas import REJECTS, rejects_of

_SUFFIX = b"]}"


@dataclass
class Body:
    """One upsert request: the exact bytes, and the contacts it carries (for the state)."""

    data: bytes
    contacts: pa.Table  # contact_key, row_number, content_hash, contact_json (same order)

    @property
    def contact_count(self) -> int:
        return int(self.contacts.num_rows)


def envelope_prefix(list_ids: Sequence[str]) -> bytes:
    """``{"list_ids":[...],"contacts":[`` (``list_ids`` only when there are some)."""
    if list_ids:
        ids = json.dumps(list(list_ids), separators=(",", ":"))
        return ('{"list_ids":' + ids + ',"contacts":[').encode()
    return b'{"contacts":['


def encode_body(prefix: bytes, contacts: pa.Table) -> bytes:
    """The body carrying exactly these contacts (used again when a 400 removes some).

    One copy: each Arrow chunk's cells are one contiguous run of bytes.
    """
    parts: list[bytes | memoryview] = [prefix]
    for chunk in contacts["contact_json"].chunks:
        if len(chunk):
            offsets = _offsets(chunk)
            parts.append(_data(chunk)[int(offsets[0]) : int(offsets[-1])])
    if len(parts) > 1:  # the last cell's trailing comma is where the array ends
        parts[-1] = parts[-1][:-1]
    parts.append(_SUFFIX)
    return b"".join(parts)


@dataclass
class Packer:
    """Greedy streaming packer; see the module docstring."""

    prefix: bytes
    max_bytes: int = MAX_REQUEST_BYTES
    max_contacts: int = MAX_CONTACTS_PER_REQUEST
    _open: list[pa.Table] = field(default_factory=list)
    _open_bytes: int = 0
    _open_count: int = 0

    def __post_init__(self) -> None:
        # The smallest body is prefix + "{}" + "]}": a limit below that can hold nothing.
        if self.max_bytes < len(self.prefix) + 4 or self.max_contacts < 1:
            raise ConfigurationError(
                "max_request_bytes / max_contacts_per_request are too small to hold one contact."
            )

    def add(self, contacts: pa.Table) -> list[Body]:
        """Take contacts (in order); return every body that is now full."""
        sizes = pc.binary_length(contacts["contact_json"]).to_numpy().astype(np.int64)
        self._check_single_sizes(contacts, sizes)
        cumulative = np.cumsum(sizes)
        bodies: list[Body] = []
        start = 0
        while start < len(sizes):
            end = self._fit(cumulative, start)
            if end == start:  # the open body cannot take even the next contact
                bodies.append(self._close())
                continue
            self._append(contacts.slice(start, end - start), int(sizes[start:end].sum()))
            start = end
            if start < len(sizes):
                bodies.append(self._close())
        return bodies

    def flush(self) -> Body | None:
        """The open body, if it has any contact."""
        return self._close() if self._open_count else None

    def _fit(self, cumulative: np.ndarray, start: int) -> int:
        """The end of the longest run from ``start`` that still fits the open body."""
        # Body bytes = prefix + sum(cell sizes) - 1 (last comma dropped) + len("]}").
        budget = self.max_bytes - len(self.prefix) - len(_SUFFIX) + 1 - self._open_bytes
        before = int(cumulative[start - 1]) if start else 0
        by_bytes = int(np.searchsorted(cumulative, before + budget, side="right"))
        by_count = start + self.max_contacts - self._open_count
        return min(by_bytes, by_count)

    def _append(self, part: pa.Table, nbytes: int) -> None:
        self._open.append(part)
        self._open_bytes += nbytes
        self._open_count += part.num_rows

    def _close(self) -> Body:
        contacts = pa.concat_tables(self._open)
        self._open, self._open_bytes, self._open_count = [], 0, 0
        return Body(encode_body(self.prefix, contacts), contacts)

    @property
    def max_contact_bytes(self) -> int:
        """The largest contact JSON (with its comma) that fits a body alone."""
        return self.max_bytes - len(self.prefix) - len(_SUFFIX) + 1

    def set_max_bytes(self, max_bytes: int) -> None:
        """A smaller byte budget from now on (SendGrid refused a body as too large)."""
        self.max_bytes = max_bytes

    def split_oversize(self, contacts: pa.Table) -> tuple[pa.Table, pa.Table]:
        """``(fitting, too_big)``: contacts larger than any body may be are refused as rows
        (``REJECTS``), like any other bad row; they never stop the rest."""
        sizes = pc.binary_length(contacts["contact_json"])
        too_big = pc.greater(sizes, self.max_contact_bytes)
        if not pc.any(too_big).as_py():
            return contacts, REJECTS.empty_table()
        big = contacts.filter(too_big)
        reasons = [
            f"contact is {n:,} bytes of JSON, more than one request may carry "
            f"({self.max_bytes:,} bytes with the envelope): shorten its longest values"
            for n in pc.binary_length(big["contact_json"]).to_pylist()
        ]
        return contacts.filter(pc.invert(too_big)), rejects_of(big, reasons)

    def _check_single_sizes(self, contacts: pa.Table, sizes: np.ndarray) -> None:
        too_big = np.flatnonzero(sizes > self.max_contact_bytes)
        if len(too_big):  # split_oversize must run first: this is a bug, not a bad row
            raise AssertionError(
                f"a contact of {int(sizes[too_big[0]])} bytes reached the packer "
                f"(limit {self.max_contact_bytes})"
            )


def _offsets(column: pa.Array) -> np.ndarray:
    width = np.int64 if pa.types.is_large_string(column.type) else np.int32
    raw = np.frombuffer(column.buffers()[1], dtype=width)
    return raw[column.offset : column.offset + len(column) + 1]


def _data(column: pa.Array) -> memoryview:
    return memoryview(column.buffers()[2])
