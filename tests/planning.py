"""Rows through the real plan and render, for tests of the mapping's rules.

``plan_rows(mapping, data, ...)`` binds the mapping to the data's schema, compiles it, builds
the destination's ``Plan`` over the rows against a state store (a fresh stream of one shared
temporary store unless a store is given, so every row is new), remembers the rows the check
refused (``state.invalid_rows``) and renders every planned row: exactly what a load does
before packing. The result has ``contacts`` (the rendered rows, in row order), ``rejects``
and the plan's ``counts``.
"""

from __future__ import annotations

import atexit
import hashlib
import itertools
import shutil
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from sendgrid_destination.contact_sql import ContactSql
from sendgrid_destination.mapping import bind_mapping, parse_mapping
from sendgrid_destination.plan import Plan, PlanCounts
from sendgrid_destination.source_rows import SourceRows
from sendgrid_destination.state import StateStore

_streams = itertools.count()


def content_digest(text: str) -> int:
    """The render's ``content_hash`` of ``text`` (list scope, newline, contact JSON): the first
    64 bits of its MD5 (its first 16 hex digits), as a number."""
    return int(hashlib.md5(text.encode()).hexdigest()[:16], 16)


_shared: StateStore | None = None


@dataclass(frozen=True)
class Planned:
    contacts: pa.Table  # the rendered rows to send (schemas.RENDERED), in row order
    unchanged: pa.Table  # rows the render found unchanged by content
    rejects: pa.Table
    counts: PlanCounts
    omitted: pa.Table  # fields left out of sent rows (on_invalid_value = "omit_field")

    @property
    def superseded(self) -> int:
        return self.counts.superseded


def shared_store() -> StateStore:
    """One temporary state store for a test session (streams keep tests apart)."""
    global _shared
    if _shared is None:
        root = Path(tempfile.mkdtemp(prefix="sg-plan-tests-"))
        stack = ExitStack()
        _shared = stack.enter_context(StateStore.open(root / "state.duckdb"))
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        atexit.register(stack.close)
    return _shared


def contact_sql(
    mapping: dict[str, Any],
    schema: pa.Schema,
    types: dict[str, Any] | None = None,
    ids: dict[str, str] | None = None,
    **options: Any,
) -> ContactSql:
    bindings = bind_mapping(parse_mapping(mapping), schema, types or {}, ids or {})
    return ContactSql(bindings, **options)


def plan_rows(
    sql: ContactSql,
    data: pa.Table | pa.RecordBatch,
    *,
    first_row: int = 0,
    store: StateStore | None = None,
    stream: str | None = None,
    batch_rows: int | None = None,
) -> Planned:
    """Plan and render ``data`` (rows numbered from ``first_row``) as a load would;
    ``batch_rows``: what the rows say a read holds (else the whole batch)."""
    store = store or shared_store()
    # A stream of its own is never planned again: what it refused need not be remembered.
    remember = stream is not None or store is not shared_store()
    stream = stream or f"test-{next(_streams)}"
    batch = data if isinstance(data, pa.RecordBatch) else one_batch(data)
    rows = SourceRows.from_batch(batch, first_row)
    rows.batch_rows = batch_rows or rows.batch_rows
    with Plan.build(store, sql, stream, "test-run", rows) as plan:
        if remember:  # as a load does
            store.invalid_rows.remember("test-run", stream, plan.invalid_rows)
        return render_all(plan)


def render_all(plan: Plan) -> Planned:
    """Every planned row of a built plan, rendered, with what the plan found."""
    rendered = list(plan.rendered_batches())
    contacts = [r.to_send for r in rendered]
    unchanged = [r.unchanged for r in rendered]
    empty = _empty_rendered()
    return Planned(
        pa.concat_tables(contacts) if contacts else empty,
        pa.concat_tables(unchanged) if unchanged else empty,
        plan.rejects,
        plan.counts,
        plan.omitted,
    )


def legacy_hash(sql: ContactSql, contact_json: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray:
    """The SHA-256 content hash of state files before schema 5."""
    with shared_store().workspace() as cur:
        cur.register("legacy", pa.table({"contact_json": contact_json}))
        return cur.sql(sql.legacy_hash("legacy")).to_arrow_table()["h"]


def one_batch(table: pa.Table) -> pa.RecordBatch:
    """The table as one record batch (an empty table too, with its schema)."""
    combined = table.combine_chunks()
    batches = combined.to_batches()
    if batches:
        return batches[0]
    # Empty arrays of each type (pa.nulls: on pyarrow 18, from_pylist gives a dictionary int8
    # indices and pa.array([]) has no converter for some dictionaries).
    empty = [pa.nulls(0, field.type) for field in table.schema]
    return pa.RecordBatch.from_arrays(empty, schema=table.schema)


def _empty_rendered() -> pa.Table:
    from sendgrid_destination.schemas import RENDERED

    return RENDERED.empty_table()
