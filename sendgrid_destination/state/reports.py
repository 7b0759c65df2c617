"""Read-only questions about a state file, for the CLI and for people: recent runs, rejects,
contacts by outcome. Row-level output (``rejects``) carries contact keys because the user asked
for it; nothing else here does.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from sendgrid_destination.state.store import StateStore


def recent_runs(store: StateStore, limit: int = 10) -> list[dict[str, Any]]:
    rows = store.con.execute(
        "SELECT run_id, stream, started_at, finished_at, summary FROM runs "
        "ORDER BY started_at DESC LIMIT ?",
        [limit],
    ).fetchall()
    return [
        {
            "run_id": r[0],
            "stream": r[1],
            "started_at": r[2],
            "finished_at": r[3],
            "summary": json.loads(r[4]) if r[4] else None,
        }
        for r in rows
    ]


def load_summaries(store: StateStore, load_id: str = "", limit: int = 10) -> list[dict[str, Any]]:
    """The summaries recorded for the tables of one load (a failed one included, every table
    of it), oldest first; without ``load_id``, of the ``limit`` most recent runs."""
    if not load_id:
        return [r["summary"] for r in reversed(recent_runs(store, limit)) if r["summary"]]
    rows = store.con.execute(
        "SELECT summary FROM runs WHERE starts_with(run_id, ?) AND summary IS NOT NULL "
        "ORDER BY started_at",
        [f"{load_id}:"],
    ).fetchall()
    return [json.loads(r[0]) for r in rows]


def last_run_epochs(store: StateStore) -> dict[str, float]:
    """Per table, when its latest run started (seconds since the epoch, UTC)."""
    rows = store.con.execute(
        "SELECT stream, epoch(max(started_at)) FROM runs GROUP BY stream"
    ).fetchall()
    return {str(r[0]): float(r[1]) for r in rows if r[1] is not None}


REJECT_FIELDS = ("run_id", "stream", "stage", "row_number", "contact_key", "column", "reason")


def rejects(
    store: StateStore, run_id: str | None = None, *, batch_rows: int = 10_000
) -> pa.RecordBatchReader:
    """The rejects (of one run, or all), oldest first, as a stream of record batches: an
    export of millions holds one batch in memory, not all of them."""
    sql = 'SELECT run_id, stream, stage, row_number, contact_key, "column", reason FROM rejects'
    params: list[Any] = []
    if run_id:
        sql += " WHERE run_id = ?"
        params.append(run_id)
    relation = store.con.sql(sql + " ORDER BY recorded_at, row_number", params=params)
    return relation.to_arrow_reader(batch_rows)


def contact_status_counts(store: StateStore) -> dict[str, int]:
    rows = store.con.execute(
        "SELECT status, count(*) FROM contact_status GROUP BY status"
    ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}
