"""Packing contacts into upsert bodies: exact UTF-8 bytes, both limits, fewest requests.

Input is the transform's contacts table, whose ``contact_json`` cells are each one contact
object followed by a comma. Because cells are contiguous in Arrow's data buffer, a run of rows
is already a JSON array body once the last comma is dropped: a body is the envelope prefix,
one slice of that buffer, and ``]}``. No contact is re-encoded and no Python runs per row: the
split points come from a cumulative sum of cell sizes and ``numpy.searchsorted``.

``Packer`` is streaming: ``add(table)`` returns the bodies that became full, keeping the open
tail for the next call; ``flush()`` returns the tail. Bodies are filled up to ``max_bytes``
(the documented limit, or a smaller one SendGrid taught the sender); a contact larger than
that but within ``limit_bytes`` (``max_request_bytes``) goes alone in its own body, and only a
contact beyond ``limit_bytes`` is refused as a row (``split_oversize``). Filling every body to
the limit before starting the next is optimal for order-preserving packing, so the request
count is the minimum for the input order. ``GroupedPacker`` keeps one ``Packer`` per list scope (an
upsert's ``list_ids`` hold for all its contacts), and per new/known contacts when a table may
delete; see its docstring for the request-count bound.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise

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
    # The envelope before the contacts (with the body's list_ids): a body re-encoded after
    # a 400 removed some contacts, or split, keeps its lists.
    prefix: bytes = b'{"contacts":['

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
    limit_bytes: int | None = None  # None: max_bytes
    _open: list[pa.Table] = field(default_factory=list)
    _open_bytes: int = 0
    _open_count: int = 0

    def __post_init__(self) -> None:
        self.limit_bytes = max(self.limit_bytes or self.max_bytes, self.max_bytes)
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

    @property
    def open_bytes(self) -> int:
        """Bytes of contacts in the open body."""
        return self._open_bytes

    def _fit(self, cumulative: np.ndarray, start: int) -> int:
        """The end of the longest run from ``start`` that still fits the open body."""
        # Body bytes = prefix + sum(cell sizes) - 1 (last comma dropped) + len("]}").
        budget = self.max_bytes - len(self.prefix) - len(_SUFFIX) + 1 - self._open_bytes
        before = int(cumulative[start - 1]) if start else 0
        # max(): a lone contact over max_bytes leaves the open body past its budget.
        by_bytes = max(start, int(np.searchsorted(cumulative, before + budget, side="right")))
        if by_bytes == start and not self._open_count:
            by_bytes = start + 1  # over max_bytes, within limit_bytes (checked): alone
        by_count = start + self.max_contacts - self._open_count
        return min(by_bytes, by_count)

    def _append(self, part: pa.Table, nbytes: int) -> None:
        self._open.append(part)
        self._open_bytes += nbytes
        self._open_count += part.num_rows

    def _close(self) -> Body:
        contacts = pa.concat_tables(self._open)
        self._open, self._open_bytes, self._open_count = [], 0, 0
        return Body(encode_body(self.prefix, contacts), contacts, self.prefix)

    @property
    def max_contact_bytes(self) -> int:
        """The largest contact JSON (with its comma) that may go at all: alone, in a body of
        at most ``limit_bytes``."""
        return self.limit - len(self.prefix) - len(_SUFFIX) + 1

    @property
    def limit(self) -> int:
        return self.limit_bytes or self.max_bytes

    def set_max_bytes(self, max_bytes: int) -> None:
        """Fill bodies to ``max_bytes`` from now on (SendGrid refused a body as too large, or
        accepted a larger one than the budget), never beyond ``limit_bytes``."""
        self.max_bytes = min(max_bytes, self.limit)

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
            f"({self.limit:,} bytes with the envelope): shorten its longest values"
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


# Open bodies of different groups held at once: beyond this, the fullest is sent. Each open
# body may hold up to max_request_bytes, and contacts of many list sets interleaved in one
# load would otherwise keep one body each in memory.
MAX_OPEN_BYTES = 64_000_000
_NEW, _KNOWN = "\x1fnew", "\x1fknown"


@dataclass
class GroupedPacker:
    """Bodies per group of contacts that can share a request: SendGrid takes ``list_ids``
    per upsert, not per contact, so each list scope (``RENDERED.list_scope``) has its own
    ``Packer``. With ``split_new``, contacts new to the state and known ones are packed apart
    too, so that an upsert job's counts say whether it created every contact it carried (the
    rule that lets a contact be deleted: ``state.schema``).

    Request count: the minimum for each group in row order (``Packer``), so at most one more
    than the minimum per extra group; plus one each time more than ``max_open_bytes`` of
    open bodies force the fullest out early.
    """

    max_bytes: int = MAX_REQUEST_BYTES
    max_contacts: int = MAX_CONTACTS_PER_REQUEST
    split_new: bool = False
    max_open_bytes: int = MAX_OPEN_BYTES
    limit_bytes: int | None = None  # see Packer
    _packers: dict[str, Packer] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._packer("")  # the limits are checked once, up front

    def add(self, contacts: pa.Table) -> list[Body]:
        """Take contacts (``list_scope``, ``is_new``, in order); return every full body."""
        bodies: list[Body] = []
        for key, part in self._groups(contacts):
            bodies += self._packer(key).add(part)
        while sum(p.open_bytes for p in self._packers.values()) > self.max_open_bytes:
            fullest = max(self._packers.values(), key=lambda p: p.open_bytes)
            bodies += [b for b in [fullest.flush()] if b is not None]
        return bodies

    def flush(self) -> list[Body]:
        """Every open body."""
        return [b for b in (p.flush() for p in self._packers.values()) if b is not None]

    def split_oversize(self, contacts: pa.Table) -> tuple[pa.Table, pa.Table]:
        """``Packer.split_oversize`` for each group (their envelopes differ in length)."""
        fitting, too_big = [], []
        for key, part in self._groups(contacts):
            ok, big = self._packer(key).split_oversize(part)
            fitting.append(ok)
            too_big.append(big)
        if not fitting:
            return contacts, REJECTS.empty_table()
        return pa.concat_tables(fitting), pa.concat_tables(too_big)

    def set_max_bytes(self, max_bytes: int) -> None:
        self.max_bytes = min(max_bytes, self.limit_bytes or max_bytes)
        for packer in self._packers.values():
            packer.set_max_bytes(max_bytes)

    def _packer(self, key: str) -> Packer:
        if key not in self._packers:
            scope = key.partition("\x1f")[0]
            prefix = envelope_prefix(scope.split(",") if scope else [])
            self._packers[key] = Packer(prefix, self.max_bytes, self.max_contacts, self.limit_bytes)
        return self._packers[key]

    def _groups(self, contacts: pa.Table) -> list[tuple[str, pa.Table]]:
        """``(group key, its contacts in row order)``; one sort when several groups."""
        if contacts.num_rows == 0:
            return []
        keys = pc.fill_null(contacts["list_scope"], "")
        if self.split_new:
            keys = pc.binary_join_element_wise(
                keys, pc.if_else(contacts["is_new"], _NEW, _KNOWN), ""
            )
        distinct = pc.unique(keys)
        if len(distinct) == 1:
            return [(str(distinct[0].as_py()), contacts)]
        order = pc.sort_indices(keys)  # stable: row order is kept within a group
        ordered, sorted_keys = contacts.take(order), keys.take(order).combine_chunks()
        changes = pc.not_equal(sorted_keys.slice(1), sorted_keys.slice(0, len(sorted_keys) - 1))
        starts = [0, *(pc.indices_nonzero(changes).to_numpy() + 1).tolist(), len(sorted_keys)]
        return [(str(sorted_keys[a].as_py()), ordered.slice(a, b - a)) for a, b in pairwise(starts)]
