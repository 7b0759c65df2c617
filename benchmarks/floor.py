"""The render floor of issue 16.2: JSON and MD5 of the same mapped columns, nothing else.

Contract: ``render_floor(batches)`` turns each batch, as our path's render does, into every
row's contact JSON (``to_json(struct_pack(...))`` over the benchmark's mapped columns, the
custom fields nested under their IDs, dates in the destination's default format) and its MD5
(as our path keeps it: the first 64 bits, a number, computed the way our path computes them,
the faster of DuckDB's two ways), fetched to Arrow, in one DuckDB query per batch, the batch cut
into scan chunks as our render's are (``arrow_utils.chunked``: DuckDB scans one Arrow chunk per
thread, so a whole batch would keep the floor on one core while our path uses both); it
returns the wall and CPU seconds of the pass. Nothing is
cleaned, checked, deduplicated, compared with a state or packed: it is what any path must at
least do to turn these columns into hashed bodies, so our path's time over it says what
validation, the plan and the state cost on top.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow as pa

from benchmarks import data
from benchmarks.stats import mark
from sendgrid_destination.arrow_utils import chunked
from sendgrid_destination.contact_sql import first_64_bits, ident, literal

DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # the destination's default date_format


def _value(column: str) -> str:
    if data.CUSTOM_TYPES.get(column) == "Date":
        return f"strftime({ident(column)}, {literal(DATE_FORMAT)})"
    return ident(column)


def floor_sql(relation: str) -> str:
    """The floor's query over ``relation`` (the benchmark's source columns)."""
    reserved = [
        f"{ident(field)} := {_value(column)}"
        for field, column in data.MAPPING.items()
        if isinstance(column, str)
    ]
    custom = [
        f"{ident(data.CUSTOM_IDS[name])} := {_value(column)}"
        for name, column in data.MAPPING["custom_fields"].items()
    ]
    contact = (
        f"struct_pack({', '.join(reserved)}, custom_fields := struct_pack({', '.join(custom)}))"
    )
    return (
        f"SELECT contact_json, {first_64_bits('md5(contact_json)')} AS content_hash FROM "
        f"(SELECT CAST(to_json({contact}) AS VARCHAR) AS contact_json FROM {ident(relation)})"
    )


def render_floor(batches: Sequence[pa.RecordBatch]) -> dict[str, Any]:
    con = duckdb.connect()
    try:
        started = mark()
        rendered = 0
        for batch in batches:
            con.register("floor_batch", chunked(pa.table(batch)))
            rendered += con.sql(floor_sql("floor_batch")).to_arrow_table().num_rows
            con.unregister("floor_batch")
        now = mark()
    finally:
        con.close()
    return {"rows": rendered, "seconds": now[0] - started[0], "cpu_seconds": now[1] - started[1]}
