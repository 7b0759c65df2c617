"""The state file: what was sent, what SendGrid made of it, and what each run did.

One DuckDB file per account (see ``SendGridConfiguration.resolved_state_path``), opened by one
process at a time: ``StateStore.open`` takes an exclusive ``flock`` on ``<file>.lock`` and
raises ``StateLockedError`` when another run holds it. The file is ``0600``, and while a store
is open the process umask is ``077``, so DuckDB's write-ahead log (re-created at every
checkpoint, beside the file) is private too.

Tables:

* ``contacts``: per (stream, contact_key) the content hash (hex MD5 of the JSON) last sent,
  the fingerprint of the values it was rendered from (the plan's shortcut) and ``seq``, the
  number of the request that carried it. Its outcome is its job's, so that finishing a job
  writes one row, not one per contact: ``status`` is set only where a contact's outcome
  differs from its job's (``failed``, with SendGrid's reason; and rows of state files before
  schema 6, which kept a status per contact). The view ``contact_status`` gives every
  contact's ``job_id`` and ``status``: ``sent`` (202 recorded, job not finished),
  ``accepted``, ``failed`` (the job errored for it), ``unconfirmed`` (the job's errors could
  not be fetched). Only ``sent`` and ``accepted`` hashes make a row "unchanged".
* ``requests``: one row per accepted upsert (job id, contacts, bytes, and ``seq``, its number
  in the file), written in the same transaction as the contacts it carried, right after the
  202. Contacts are appended a request at a time, so DuckDB's per-row-group min/max of
  ``seq`` lets the queries on one job's contacts skip the rest of the table rather than read
  every contact once per job.
* ``jobs``: every job with its final status and counts, and ``contacts_status``: the outcome
  of its contacts not marked otherwise (``accepted``, or ``unconfirmed`` when the errors file
  could not be read; null while the job is pending).
* ``runs``: one row per run (a dlt load id and table), with its summary counters.
* ``rejects``: rows refused before sending, by SendGrid's 400, or failed in a job.

Every set operation is SQL over Arrow tables; no Python loop touches individual contacts.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sendgrid_destination.errors import ConfigurationError, StateLockedError

# 5: content hashes are MD5; the SHA-256 of earlier files is compared as such (plan.py) and
# replaced by MD5 when its contact is next found unchanged, so no migration reads them all.
# 6: a contact's outcome is its job's (``contact_status``): finishing a job no longer updates
# each of its contacts, and contacts no longer carry job id, run id and time (a first load of
# 1M contacts spent 1.8 s in record_sent and record_job_outcome, 0.95 s now). Older rows keep
# their own status.
SCHEMA_VERSION = 6
# DuckDB's cap for everything the load does in it: the state's pages, the plan (with its
# duplicate keys) and the render (the loader runs them on this instance), spilling beyond
# it. At 160 MB a 10M-row load peaked at ~600 MiB RSS (~720 with 256 MB) in the same time.
STATE_MEMORY_LIMIT = "160MB"
# DuckDB checkpoints when its write-ahead log reaches the threshold (16 MB by default), i.e.
# every few 6 MB upserts, each time rewriting row groups that the next job outcome updates
# again: a 1M-contact first load spent half its state writes in checkpoints. 128 MB cut
# them by 40% for about 20 MB more peak memory; a crash replays at most that much log.
_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "memory_limit": STATE_MEMORY_LIMIT,
    "checkpoint_threshold": "128MB",
}

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS contacts (
    stream VARCHAR, contact_key VARCHAR, content_hash VARCHAR, status VARCHAR,
    reason VARCHAR, fingerprint UBIGINT, seq BIGINT);
CREATE TABLE IF NOT EXISTS requests (
    job_id VARCHAR PRIMARY KEY, run_id VARCHAR, stream VARCHAR, contact_count BIGINT,
    body_bytes BIGINT, sent_at TIMESTAMP, seq BIGINT);
CREATE TABLE IF NOT EXISTS jobs (
    job_id VARCHAR PRIMARY KEY, run_id VARCHAR, stream VARCHAR, status VARCHAR,
    requested_count BIGINT, created_count BIGINT, updated_count BIGINT,
    errored_count BIGINT, errors_url VARCHAR, note VARCHAR, created_at TIMESTAMP,
    finished_at TIMESTAMP, contacts_status VARCHAR);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY, stream VARCHAR, started_at TIMESTAMP, finished_at TIMESTAMP,
    summary JSON);
CREATE TABLE IF NOT EXISTS rejects (
    run_id VARCHAR, stream VARCHAR, row_number BIGINT, contact_key VARCHAR,
    "column" VARCHAR, reason VARCHAR, stage VARCHAR, recorded_at TIMESTAMP);
"""

# A contact's job and outcome. Its own status, where set, wins: ``failed`` (or a row of a
# state file before schema 6); otherwise its job's: ``sent`` while pending, then the job's
# ``contacts_status``. Requests and jobs are one row per 30,000 contacts: the joins are cheap.
_CONTACT_STATUS_VIEW = """
CREATE OR REPLACE VIEW contact_status AS
SELECT c.stream, c.contact_key, c.content_hash, c.fingerprint, c.seq, o.job_id,
    coalesce(c.status, o.outcome) AS status, c.reason
FROM contacts c LEFT JOIN (
    SELECT r.seq, r.job_id,
        CASE WHEN j.status = 'pending' THEN 'sent' ELSE j.contacts_status END AS outcome
    FROM requests r JOIN jobs j ON j.job_id = r.job_id) o ON o.seq = c.seq
"""

SENT, ACCEPTED, FAILED, UNCONFIRMED = "sent", "accepted", "failed", "unconfirmed"


@dataclass(frozen=True)
class DiffResult:
    """Contacts to send, and how many were new, changed or unchanged."""

    to_send: pa.Table
    new: int
    changed: int
    unchanged: int


class StateStore:
    """An open state file; use ``StateStore.open(path)`` as a context manager."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path) -> None:
        self.con = con
        self.path = path

    @classmethod
    @contextmanager
    def open(cls, path: Path, *, read_only: bool = False) -> Iterator[StateStore]:
        """Open (creating it unless ``read_only``) and lock the state file."""
        if read_only and not path.exists():
            raise ConfigurationError(
                f"No state file at {path}: nothing has been loaded with it yet."
            )
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # The file and DuckDB's write-ahead log beside it (re-created at every checkpoint)
        # hold contact keys, i.e. emails: whatever the directory, only the owner may read them.
        previous_umask = os.umask(0o077)
        try:
            with _exclusive_lock(path, shared=read_only):
                # The state's tables live in DuckDB's buffer pool, which spills to disk beyond
                # this cap: memory stays flat however many contacts the account holds.
                con = duckdb.connect(str(path), read_only=read_only, config=_CONFIG)
                try:
                    store = cls(con, path)
                    if not read_only:
                        os.chmod(path, 0o600)
                        store._migrate()
                    yield store
                finally:
                    con.close()
        finally:
            os.umask(previous_umask)

    def _migrate(self) -> None:
        self.con.execute(_DDL)
        # Version 2 had no fingerprints: its contacts are compared by content hash once, and
        # the run that finds them unchanged records their fingerprints.
        self.con.execute("ALTER TABLE contacts ADD COLUMN IF NOT EXISTS fingerprint UBIGINT")
        # Versions 2 and 3 had no request numbers: number the requests in the order sent.
        self.con.execute("ALTER TABLE contacts ADD COLUMN IF NOT EXISTS seq BIGINT")
        self.con.execute("ALTER TABLE requests ADD COLUMN IF NOT EXISTS seq BIGINT")
        self.con.execute("ALTER TABLE jobs ADD COLUMN IF NOT EXISTS contacts_status VARCHAR")
        self.con.execute(
            "UPDATE requests SET seq = n.seq FROM (SELECT job_id, row_number() OVER "
            "(ORDER BY sent_at, job_id) AS seq FROM requests) n "
            "WHERE requests.job_id = n.job_id AND requests.seq IS NULL"
        )
        # Before version 6 every contact named its job (and kept its own status, which the
        # view prefers: those rows stay as they are).
        if "job_id" in self._columns("contacts"):
            self.con.execute(
                "UPDATE contacts SET seq = r.seq FROM requests r "
                "WHERE contacts.seq IS NULL AND contacts.job_id = r.job_id"
            )
        self.con.execute(_CONTACT_STATUS_VIEW)
        self.con.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
        )

    def _columns(self, table: str) -> set[str]:
        rows = self.con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [table]
        ).fetchall()
        return {str(r[0]) for r in rows}

    # -- diff and recording ------------------------------------------------------------------

    def diff(self, stream: str, contacts: pa.Table) -> DiffResult:
        """Split transformed contacts into those to send and counts of new/changed/unchanged."""
        # Only keys and hashes go through DuckDB; the contact JSON stays in Arrow and is
        # filtered once, and not at all when nothing is unchanged (a first run).
        cur = self.con.cursor()
        cur.register("incoming", contacts.select(["contact_key", "row_number", "content_hash"]))
        change = cur.sql(
            "SELECT CASE WHEN s.contact_key IS NULL THEN 'new' "
            "WHEN s.content_hash = i.content_hash AND s.status IN ('sent', 'accepted') "
            "THEN 'unchanged' ELSE 'changed' END AS change "
            "FROM incoming i LEFT JOIN contact_status s "
            "ON s.stream = ? AND s.contact_key = i.contact_key ORDER BY i.row_number",
            params=[stream],
        ).to_arrow_table()["change"]
        cur.close()
        if len(change) != contacts.num_rows:
            raise duplicate_contact_error(self.path)
        counts = {k: _count(change, k) for k in ("new", "changed", "unchanged")}
        if "is_new" in contacts.column_names:
            contacts = contacts.drop_columns(["is_new"])
        to_send = contacts.append_column("is_new", pc.equal(change, "new"))
        if counts["unchanged"]:
            to_send = to_send.filter(pc.not_equal(change, "unchanged"))
        return DiffResult(to_send, counts["new"], counts["changed"], counts["unchanged"])

    def pending_keys(self, stream: str, contacts: pa.Table) -> pa.Array:
        """A boolean mask: which of these contacts ride on a job not yet finished."""
        cur = self.con.cursor()
        cur.register("incoming", contacts.select(["contact_key", "row_number"]))
        mask = cur.sql(
            "SELECT s.contact_key IS NOT NULL AS pending FROM incoming i "
            "LEFT JOIN contact_status s "
            "ON s.stream = ? AND s.contact_key = i.contact_key AND s.status = 'sent' "
            "ORDER BY i.row_number",
            params=[stream],
        ).to_arrow_table()["pending"]
        cur.close()
        return mask.combine_chunks()

    def pending_jobs_of(self, stream: str, contacts: pa.Table) -> list[str]:
        """Unfinished jobs carrying an earlier version of any of these contacts."""
        cur = self.con.cursor()
        cur.register("incoming", contacts.select(["contact_key"]))
        rows = cur.execute(
            "SELECT DISTINCT s.job_id FROM incoming i JOIN contact_status s "
            "ON s.stream = ? AND s.contact_key = i.contact_key AND s.status = 'sent'",
            [stream],
        ).fetchall()
        cur.close()
        return [str(r[0]) for r in rows]

    def record_sent(
        self, *, run_id: str, stream: str, job_id: str, contacts: pa.Table, body_bytes: int
    ) -> None:
        """After a 202: the request and the hashes it carried, in one transaction."""
        cur = self.con.cursor()
        is_new = (
            contacts["is_new"]
            if "is_new" in contacts.column_names
            else pa.array(np.zeros(contacts.num_rows, dtype=bool))
        )
        fingerprint = (
            contacts["fingerprint"]
            if "fingerprint" in contacts.column_names
            else pa.nulls(contacts.num_rows, pa.uint64())
        )
        cur.register(
            "sent",
            pa.table(
                {
                    "contact_key": contacts["contact_key"],
                    "content_hash": contacts["content_hash"],
                    "is_new": is_new,
                    "fingerprint": fingerprint,
                }
            ),
        )
        cur.execute("BEGIN")
        ((seq,),) = cur.execute("SELECT coalesce(max(seq), 0) + 1 FROM requests").fetchall()
        cur.execute(
            "INSERT INTO requests VALUES (?, ?, ?, ?, ?, now(), ?)",
            [job_id, run_id, stream, contacts.num_rows, body_bytes, seq],
        )
        cur.execute(
            "INSERT INTO jobs (job_id, run_id, stream, status, requested_count, created_at) "
            "VALUES (?, ?, ?, 'pending', ?, now())",
            [job_id, run_id, stream, contacts.num_rows],
        )
        # No primary key on contacts: DuckDB keeps a key index in memory (about 100 bytes a
        # contact), which made memory grow with the state. One row per key is kept by
        # deleting the previous row in the same transaction; a contact sent for the first
        # time has none, and the diff said which ones.
        if not pc.all(is_new).as_py():
            cur.execute(
                "DELETE FROM contacts WHERE stream = ? AND contact_key IN "
                "(SELECT contact_key FROM sent WHERE NOT is_new)",
                [stream],
            )
        # No status: a contact's outcome is its job's until the job says otherwise for it.
        cur.execute(
            "INSERT INTO contacts (stream, contact_key, content_hash, fingerprint, seq) "
            "SELECT ?, contact_key, content_hash, fingerprint, ? FROM sent",
            [stream, seq],
        )
        cur.execute("COMMIT")
        cur.close()

    def refresh_fingerprints(self, stream: str, contacts: pa.Table) -> None:
        """Record the fingerprints and content hashes (``contact_key``, ``fingerprint``,
        ``content_hash``) of contacts the render found unchanged, so the next plan skips them
        without rendering (and a SHA-256 of schema 4 or earlier becomes an MD5)."""
        if contacts.num_rows == 0:
            return
        cur = self.con.cursor()
        cur.register("fresh", contacts.select(["contact_key", "fingerprint", "content_hash"]))
        cur.execute(
            "UPDATE contacts SET fingerprint = f.fingerprint, content_hash = f.content_hash "
            "FROM fresh f "
            "WHERE contacts.stream = ? AND contacts.contact_key = f.contact_key",
            [stream],
        )
        cur.close()

    def record_rejects(self, *, run_id: str, stream: str, rejects: pa.Table, stage: str) -> None:
        """Rows refused (columns row_number, contact_key, column, reason)."""
        if rejects.num_rows == 0:
            return
        cur = self.con.cursor()
        cur.register("r", rejects.select(["row_number", "contact_key", "column", "reason"]))
        cur.execute(
            'INSERT INTO rejects SELECT ?, ?, row_number, contact_key, "column", reason, ?, '
            "now() FROM r",
            [run_id, stream, stage],
        )
        cur.close()

    # -- jobs --------------------------------------------------------------------------------

    def pending_jobs(self, stream: str | None = None) -> list[str]:
        sql = "SELECT job_id FROM jobs WHERE status = 'pending'"
        params: list[Any] = []
        if stream is not None:
            sql += " AND stream = ?"
            params.append(stream)
        return [r[0] for r in self.con.execute(sql + " ORDER BY created_at", params).fetchall()]

    def record_job_outcome(
        self,
        job: dict[str, Any],
        *,
        failed: pa.Table | None,
        contacts_status: str,
        note: str | None = None,
    ) -> None:
        """A finished job: its counts and outcome, and the contacts it failed.

        ``failed`` (contact_key, reason) are the contacts SendGrid refused in the job;
        every other contact of the job gets ``contacts_status`` (``accepted``, or
        ``unconfirmed`` when the errors could not be fetched), written once on the job.
        """
        cur = self.con.cursor()
        cur.execute("BEGIN")
        cur.execute(
            "UPDATE jobs SET status = ?, created_count = ?, updated_count = ?, "
            "errored_count = ?, errors_url = ?, note = ?, finished_at = now(), "
            "contacts_status = ? WHERE job_id = ?",
            [
                job["status"],
                job["created_count"],
                job["updated_count"],
                job["errored_count"],
                job["errors_url"],
                note,
                contacts_status,
                job["id"],
            ],
        )
        where, params = self._of_job(job["id"], "contacts.")
        # Rows written before schema 6 carry their own 'sent'; newer rows have no status.
        cur.execute(
            f"UPDATE contacts SET status = ? WHERE {where} AND status = 'sent'",
            [contacts_status, *params],
        )
        if failed is not None and failed.num_rows:
            cur.register("failed", failed.select(["contact_key", "reason"]))
            cur.execute(
                "UPDATE contacts SET status = 'failed', reason = f.reason FROM failed f "
                f"WHERE {where} AND contacts.contact_key = f.contact_key",
                params,
            )
        cur.execute("COMMIT")
        cur.close()

    def record_job_failures_as_rejects(self, *, run_id: str, job_id: str) -> None:
        """Copy a job's failed contacts into the rejects table of this run."""
        where, params = self._of_job(job_id)
        self.con.execute(
            "INSERT INTO rejects SELECT ?, stream, NULL, contact_key, NULL, reason, 'job', now() "
            f"FROM contacts WHERE {where} AND status = 'failed'",
            [run_id, *params],
        )

    def job_failure_reasons(self, job_id: str) -> dict[str, int]:
        where, params = self._of_job(job_id)
        rows = self.con.execute(
            f"SELECT reason, count(*) FROM contacts WHERE {where} AND status = 'failed' "
            "GROUP BY reason",
            params,
        ).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def job_contact_count(self, job_id: str, status: str) -> int:
        where, params = self._of_job(job_id)
        rows = self.con.execute(
            f"SELECT count(*) FROM contact_status WHERE {where} AND status = ?",
            [*params, status],
        ).fetchall()
        return int(rows[0][0]) if rows else 0

    def _of_job(self, job_id: str, prefix: str = "") -> tuple[str, list[Any]]:
        """A filter on a job's contacts that DuckDB can serve by skipping row groups."""
        rows = self.con.execute("SELECT seq FROM requests WHERE job_id = ?", [job_id]).fetchall()
        if not rows or rows[0][0] is None:
            return "false", []  # never sent, so no contact rides on it
        return f"{prefix}seq = ?", [rows[0][0]]

    # -- runs --------------------------------------------------------------------------------

    def start_run(self, run_id: str, stream: str) -> None:
        self.con.execute(
            "INSERT OR IGNORE INTO runs (run_id, stream, started_at) VALUES (?, ?, now())",
            [run_id, stream],
        )

    def finish_run(self, run_id: str, summary: dict[str, Any]) -> None:
        self.con.execute(
            "UPDATE runs SET finished_at = now(), summary = ? WHERE run_id = ?",
            [json.dumps(summary), run_id],
        )

    def run_summary(self, run_id: str) -> dict[str, Any] | None:
        row = self.con.execute("SELECT summary FROM runs WHERE run_id = ?", [run_id]).fetchone()
        return None if row is None or row[0] is None else dict(json.loads(row[0]))

    def recent_runs(self, limit: int = 10) -> list[dict[str, Any]]:
        rows = self.con.execute(
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

    def rejects(self, run_id: str | None = None) -> pa.Table:
        sql = 'SELECT run_id, stream, stage, row_number, contact_key, "column", reason FROM rejects'
        params: list[Any] = []
        if run_id:
            sql += " WHERE run_id = ?"
            params.append(run_id)
        return self.con.sql(
            sql + " ORDER BY recorded_at, row_number", params=params
        ).to_arrow_table()

    def contact_status_counts(self) -> dict[str, int]:
        rows = self.con.execute(
            "SELECT status, count(*) FROM contact_status GROUP BY status"
        ).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}


def duplicate_contact_error(path: Path | str) -> ConfigurationError:
    return ConfigurationError(
        f"The state file {path} holds a contact twice; it was not written by this version. "
        "Move it away (the next run then resends every contact once)."
    )


def _count(column: pa.ChunkedArray, value: str) -> int:
    return int(pc.sum(pc.equal(column, value)).as_py() or 0)


@contextmanager
def _exclusive_lock(path: Path, *, shared: bool = False) -> Iterator[IO[str]]:
    lock_path = path.with_name(path.name + ".lock")
    handle = open(lock_path, "a+")  # noqa: SIM115 - held for the whole run
    try:
        os.chmod(lock_path, 0o600)
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise StateLockedError(
                f"The state file {path} is in use by another run. Wait for it to finish, or "
                "point this run at another state_path; two runs on one state file could both "
                "send the same contacts."
            ) from exc
        yield handle
    finally:
        handle.close()
