"""The plan of a load: one SQL pass over all its rows decides what each row needs.

``build_plan(con, state_path, transformer, stream, source, superseded)`` runs the transform's
check over ``source`` (the load's rows with ``__sg_row``: an Arrow table or a streaming reader
of the whole job file) minus the ``superseded`` rows, joined once with the state's
``contacts``:

* rows that fail the check become ``Plan.rejects``;
* a row whose fingerprint equals the one recorded for its key, with the last send counting
  (``sent`` or ``accepted``), is unchanged and goes no further: it is never rendered;
* every other row stays in the plan, with ``is_new``, ``prev_hash`` (the content hash of the
  send that counts, else null: the render compares it, since a fingerprint may also differ
  because DuckDB's hash did) and ``pending`` (its last version rides on an unfinished job).

The plan is a temporary table in the state's database, written in row order, so that
``Plan.render(batch, first_row)`` reads one batch's rows back by range (DuckDB skips the
other row groups), renders them and sets apart those whose JSON is the one last sent.

One join per job file, not one per batch: against a state of N contacts each join reads all
N, so per-batch joins made a 10M-row file quadratic. DuckDB spills the table and the join
beyond the state connection's memory limit.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sendgrid_destination.state import duplicate_contact_error
from sendgrid_destination.transform import ROW_COLUMN, Transformer, utc_cursor

_TABLE = "sg_plan"
_SHA256_HEX_DIGITS = 64
_COLUMNS = "row_number, contact_key, fingerprint, is_new, prev_hash, pending"


@dataclass(frozen=True)
class Rendered:
    """One batch's planned rows, rendered."""

    to_send: pa.Table  # row_number, contact_key, fingerprint, is_new, prev_hash, pending,
    #                    contact_json, content_hash; in row order
    unchanged: pa.Table  # the same columns: rows whose JSON is the one last sent


@dataclass
class Plan:
    """A built plan; ``close()`` drops its table."""

    cursor: duckdb.DuckDBPyConnection
    state_path: str
    transformer: Transformer
    kept: int  # rows not found unchanged: to render, or rejected
    to_render: int  # ok rows that the render must see
    rejects: pa.Table

    def rows(self, first: int, end: int) -> pa.Table:
        """The plan's ok rows with ``first <= row_number < end``, in row order."""
        rows = self.cursor.sql(
            f"SELECT {_COLUMNS} FROM {_TABLE} WHERE ok AND row_number >= ? AND row_number < ? "
            "ORDER BY row_number",
            params=[first, end],
        ).to_arrow_table()
        numbers = rows["row_number"].to_numpy()
        if len(numbers) > 1 and not np.all(np.diff(numbers) > 0):
            raise duplicate_contact_error(self.state_path)
        return rows

    def render(self, batch: pa.RecordBatch | pa.Table, first_row: int) -> Rendered:
        """Render this batch's planned rows (the batch's first row is ``first_row``)."""
        planned = self.rows(first_row, first_row + batch.num_rows)
        if planned.num_rows == 0:
            empty = planned.append_column("contact_json", pa.array([], pa.string()))
            empty = empty.append_column("content_hash", pa.array([], pa.string()))
            return Rendered(empty, empty)
        positions = pc.subtract(planned["row_number"], first_row).combine_chunks()
        rendered = self.transformer.render(batch.take(positions))
        contacts = planned.append_column("contact_json", rendered["contact_json"])
        contacts = contacts.append_column("content_hash", rendered["content_hash"])
        # A fingerprint also differs when only DuckDB's hash did: same JSON, nothing to send.
        same = self._same_json(contacts)
        if not pc.any(same).as_py():
            return Rendered(contacts, contacts.slice(0, 0))
        return Rendered(contacts.filter(pc.invert(same)), contacts.filter(same))

    def _same_json(self, contacts: pa.Table) -> pa.Array:
        """Per row: is its JSON the one last sent? State files before schema 5 hold SHA-256
        hashes (64 hex digits): those rows are compared by SHA-256 too."""
        prev = contacts["prev_hash"]
        same = pc.fill_null(pc.equal(contacts["content_hash"], prev), False).combine_chunks()
        legacy = pc.fill_null(pc.equal(pc.utf8_length(prev), _SHA256_HEX_DIGITS), False)
        if not pc.any(legacy).as_py():
            return same
        at = pc.indices_nonzero(legacy)
        old = self.transformer.legacy_hash(contacts["contact_json"].take(at))
        merged = same.to_numpy(zero_copy_only=False).copy()
        merged[at.to_numpy()] = pc.equal(old, prev.take(at)).to_numpy(zero_copy_only=False)
        return pa.array(merged)

    def close(self) -> None:
        self.cursor.execute(f"DROP TABLE IF EXISTS {_TABLE}")
        self.cursor.close()


def build_plan(
    con: duckdb.DuckDBPyConnection,
    state_path: str,
    transformer: Transformer,
    stream: str,
    source: pa.Table | pa.RecordBatchReader,
    superseded: pa.Array,
) -> Plan:
    cur = utc_cursor(con)
    try:
        cur.register("plan_src", source)
        cur.register("plan_superseded", pa.table({"row_number": superseded.cast(pa.int64())}))
        rows = (
            "(SELECT s.* FROM plan_src s ANTI JOIN plan_superseded x "
            f"ON s.{ROW_COLUMN} = x.row_number)"
        )
        cur.execute(
            f"CREATE OR REPLACE TEMP TABLE {_TABLE} AS SELECT c.*, "
            "s.contact_key IS NULL AS is_new, "
            "CASE WHEN s.status IN ('sent', 'accepted') THEN s.content_hash END AS prev_hash, "
            "coalesce(s.status = 'sent', false) AS pending "
            f"FROM ({transformer.check_sql(rows)}) c LEFT JOIN contact_status s "
            "ON s.stream = ? AND s.contact_key = c.contact_key "
            "WHERE NOT coalesce(c.ok AND s.fingerprint = c.fingerprint "
            "AND s.status IN ('sent', 'accepted'), false) ORDER BY c.row_number",
            [stream],
        ).fetchall()
        cur.unregister("plan_src")
        kept, to_render = _counts(cur)
        bad = cur.sql(f"SELECT * FROM {_TABLE} WHERE NOT ok ORDER BY row_number").to_arrow_table()
        rejects = transformer.expand_rejects(bad)
        return Plan(cur, state_path, transformer, kept, to_render, rejects)
    except BaseException:
        cur.close()
        raise


def _counts(cur: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    ((kept, to_render),) = cur.execute(
        f"SELECT count(*), count(*) FILTER (WHERE ok) FROM {_TABLE}"
    ).fetchall()
    return int(kept), int(to_render)
