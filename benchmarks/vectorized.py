"""The vectorized baseline: pyarrow.compute for the cleaning and checks, orjson per contact.

Contract: ``VectorizedBaseline(custom_ids).run_pass(batches)`` applies the destination's rules
to whole columns with ``pyarrow.compute`` (trim and ASCII-lower the email; empty strings as
nulls; the email and E.164 patterns as regular expressions; maxLengths; finite Numbers; Dates
formatted in UTC), so a refused row costs no Python; only the rows that pass are turned into
dicts (column by column ``to_pylist``, nulls omitted), encoded with ``orjson``, hashed with
``hashlib.md5`` and packed by ``baseline.GreedyPacker``: the same bodies, requests and bytes
as the destination and the per-row baseline (the harness checks it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from benchmarks.baseline import (
    BLANKS,
    DATE_FORMAT,
    EMAIL_MAX,
    MAX_LENGTH,
    TEXT_FIELDS,
    DictState,
    GreedyPacker,
)
from benchmarks.stats import BodySink, PassStats, mark
from sendgrid_destination.contact_model import (
    E164_PATTERN,
    EMAIL_PATTERN,
    MAX_CONTACTS_PER_REQUEST,
    MAX_CUSTOM_TEXT_LENGTH,
    MAX_REQUEST_BYTES,
)

_CUSTOM = ("plan", "lifetime_value", "signed_up_at")


def _blank_as_null(values: pa.Array) -> pa.Array:
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, values.type), values)


def _too_long(values: pa.Array, limit: int | None) -> pa.Array:
    if limit is None:
        return pa.array([False] * len(values))
    return pc.fill_null(pc.greater(pc.utf8_length(values), limit), False)


def _not_matching(values: pa.Array, pattern: str) -> pa.Array:
    """True where a value is present and does not match (a missing value is no problem)."""
    return pc.fill_null(pc.invert(pc.match_substring_regex(values, pattern)), False)


def clean(batch: pa.RecordBatch) -> tuple[pa.Array, dict[str, pa.Array]]:
    """``(ok, columns)``: which rows pass every check, and every column as it is sent."""
    email = _blank_as_null(pc.ascii_lower(pc.utf8_trim(batch["email"], BLANKS)))
    bad = pc.or_(pc.is_null(email), _too_long(email, EMAIL_MAX))
    bad = pc.or_(bad, _not_matching(email, EMAIL_PATTERN))
    columns: dict[str, pa.Array] = {"email": email}
    for name in TEXT_FIELDS:
        values = _blank_as_null(batch[name])
        bad = pc.or_(bad, _too_long(values, MAX_LENGTH[name]))
        if name == "phone_number":
            bad = pc.or_(bad, _not_matching(values, E164_PATTERN))
        columns[name] = values
    plan = _blank_as_null(batch["plan"])
    bad = pc.or_(bad, _too_long(plan, MAX_CUSTOM_TEXT_LENGTH))
    value = batch["lifetime_value"]
    bad = pc.or_(bad, pc.fill_null(pc.invert(pc.is_finite(value)), False))
    # Whole seconds: Arrow's %S shows a fraction for finer units.
    seconds = pc.cast(batch["signed_up_at"], pa.timestamp("s"), safe=False)
    columns |= {
        "plan": plan,
        "lifetime_value": value,
        "signed_up_at": pc.strftime(seconds, DATE_FORMAT),
    }
    return pc.invert(bad), columns


class VectorizedBaseline:
    """A dict as the state; any number of passes."""

    def __init__(
        self,
        custom_ids: dict[str, str],
        *,
        max_bytes: int = MAX_REQUEST_BYTES,
        max_contacts: int = MAX_CONTACTS_PER_REQUEST,
    ) -> None:
        self.custom_ids = [custom_ids[name] for name in _CUSTOM]
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
        for batch in batches:
            ok, columns = clean(batch)
            refused = pc.indices_nonzero(pc.invert(ok))
            stats.rejected_rows += len(refused)
            if keep_rejects:
                stats.rejected_row_numbers += pc.add(refused, stats.rows).to_pylist()
            stats.rows += batch.num_rows
            self._pack(ok, columns, packer)
        packer.flush()
        stats.finish(start)
        return stats

    def _pack(self, ok: pa.Array, columns: dict[str, pa.Array], packer: GreedyPacker) -> None:
        kept = {name: values.filter(ok) for name, values in columns.items()}
        keys = pc.binary_join_element_wise("email:", kept["email"], "").to_pylist()
        top_names = ("email", *TEXT_FIELDS)
        top = zip(*(kept[name].to_pylist() for name in top_names), strict=True)
        custom = zip(*(kept[name].to_pylist() for name in _CUSTOM), strict=True)
        ids = self.custom_ids
        for key, top_values, custom_values in zip(keys, top, custom, strict=True):
            contact: dict[str, Any] = {
                k: v for k, v in zip(top_names, top_values, strict=True) if v is not None
            }
            fields = {k: v for k, v in zip(ids, custom_values, strict=True) if v is not None}
            if fields:
                contact["custom_fields"] = fields
            encoded = orjson.dumps(contact)
            digest = hashlib.md5(encoded).digest()
            if not self.state.unchanged(key, digest):
                packer.add(key, digest, encoded)
