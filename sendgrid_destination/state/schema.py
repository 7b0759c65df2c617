"""The state file's tables and their upgrades: what each table holds and how old files catch up.

``migrate(con)`` brings any earlier version of the file to ``SCHEMA_VERSION`` in place (the
version is in ``meta``); contacts an older version recorded are never resent because of it.

Tables:

* ``contacts``: per (stream, contact_key) the content hash last sent (``content_md5``: 64 bits
  of the MD5 of its list scope and JSON, see ``contact_sql``; ``content_hash`` holds only the
  hex SHA-256 that files before schema 5 recorded, until the contact is next found unchanged),
  the fingerprint of the values it was rendered from (the plan's shortcut) and ``seq``, the
  number of the request that carried it. Its outcome is its job's, so that finishing a job
  writes one row, not one per contact: ``status`` is set only where a contact's outcome
  differs from its job's (``failed``, with SendGrid's reason; and rows of state files before
  schema 6, which kept a status per contact); ``permanent`` marks a failure only a change of
  the row can fix (a missing identifier, a value refused). The view ``contact_status`` gives
  every contact's ``job_id`` and ``status`` (see ``ContactStatus``).
* ``requests``: one row per accepted upsert (job id, contacts, bytes, and ``seq``, its number
  in the file), written right after the 202 in one transaction with its row in ``spooled``
  and the spool file of the contacts it carried (``state.spool``). Those rows reach
  ``contacts`` in bulk, a few dozen requests at a time, so DuckDB's per-row-group min/max of
  ``seq`` still lets the queries on one job's contacts skip most of the table rather than
  read every contact once per job.
* ``spooled``: the requests whose contacts are in the spool and not yet in ``contacts`` (the
  merge takes them out in the same transaction that inserts the rows).
* ``jobs``: every job with its final status and counts, and ``contacts_status``: the outcome
  of its contacts not marked otherwise (``accepted``, or ``unconfirmed`` when the errors file
  could not be read; null while the job is pending).
* ``runs``: one row per run (a dlt load id and table), with its summary counters: the sum of
  ``run_files``, one row per job file (or RecordBatch) of the run, which keeps the counters of
  the file's last attempt that describe its rows (``plan``) apart from the sum over attempts of
  what was sent (``sent``), so that dlt retrying a file counts each row once.
* ``identities``: for contacts sent with more than one identifier, every identifier SendGrid
  accepted (its job finished without failing the contact), under the key the contact is
  tracked by. SendGrid refuses an update that omits an identifier the contact has, and a row
  may match the contact by any of them: the plan completes (or refuses) rows from here (a
  contact known by one identifier is matched through its key, which is that identifier).
  ``contacts.ids`` holds the identifiers a send carried until its job says so.
* ``deferred``: contacts rendered (with their ``list_scope``) but not sent because the job
  carrying their previous version was still pending when the run ended (SendGrid promises no
  order between jobs); the next run sends them once that job has finished, unless a newer row
  of the contact came since. Their ``content_hash`` is a number, as ``contacts.content_md5``.
* ``load_keys``: the contact keys of a table's rows in the load being made (``run_id``), per
  job file, and whether the row's hard-delete column flags it: written only when the table is
  mirrored (its absent contacts leave) or has a hard-delete column, read once the table's last
  job file is loaded, then dropped. A table split over several files is judged as a whole.
* ``removals``: list removals and deletions, queued (a contact's row no longer names a list
  this sync put it in) or sent (with the ``job_id`` of the DELETE, until that job has ended;
  ``cause``: ``dropped``, ``left`` (its row left a mirrored table) or ``flagged``).
  A contact's ``first_seq`` (the request that first carried it) and ``lists`` (the list IDs
  its last send put it in, comma-separated) live on ``contacts``: a contact is *created by
  this sync* only when the upsert job of ``first_seq`` completed with every contact of its
  request created (``jobs.created_count = requested_count``); anything uncertain (an
  update, an errored or unknown job, a state file before schema 7: ``first_seq`` 0) is
  never deleted.
* ``meta``: the schema version, and the account the file belongs to (``account.base_url``,
  ``account.on_behalf_of``, ``account.key_digest``: a short digest, never the key).
* ``rejects``: rows refused before sending, by SendGrid's 400, or failed in a job.
* ``refused``: contacts a 400 refused for good (a value SendGrid refuses, a contact too
  large even alone), never accepted since, with the fingerprint of the row refused: that row
  waits for a change of its data, as a contact its job failed for good does (schema 9; an
  accepted send of the contact removes it).
* ``invalid_rows``: the rows the check refused in the table's latest run, by key and
  fingerprint, with their problem masks and the digest of the checks those masks are of
  (``state.invalid_rows``): a rerun refuses the same rows again without reading the source a
  second time (schema 12; only a cache).
"""

from __future__ import annotations

from enum import StrEnum

import duckdb

# 5: content hashes are MD5; the SHA-256 of earlier files is compared as such (the store's
# ``same_content``) and replaced by MD5 when its contact is next found unchanged, so no
# migration reads them all.
# 6: a contact's outcome is its job's (``contact_status``): finishing a job no longer updates
# each of its contacts, and contacts no longer carry job id, run id and time (a first load of
# 1M contacts spent 1.8 s in record_sent and record_job_outcome, 0.95 s now). Older rows keep
# their own status.
# 7: ``run_files`` (each row counted once across dlt's retries), the account in ``meta``,
# ``deferred`` (held-back contacts outlive the run instead of failing it), and lists and
# removals: ``contacts.first_seq`` and ``contacts.lists``, ``deferred.list_scope``,
# ``load_keys`` and ``removals`` (a file of schema 6 gets ``first_seq`` 0: never deletable).
# 8: the content hash is a number, ``content_md5`` (the first 64 bits of the same MD5), not
# 32 hex digits: a 1M-contact first load spent a quarter of its state writes on that string
# column (1.61 -> 1.21 s written alone; a 1M-contact state file 38 -> 29 MB, measured). The
# hex MD5s of older files are converted in place (the same digest: nothing is resent);
# SHA-256s stay text.
# 9: ``refused``: a contact a 400 refused for good waits for its row to change instead of
# being sent (and refused) again by every run.
# 10: ``spooled``: the requests whose contacts' rows wait beside the file (``state.spool``)
# to be merged into ``contacts`` in bulk (a table that starts empty: nothing to convert).
# 11: ``refused.content_md5``: the JSON refused, so that a row whose fingerprint changed but
# not its JSON still waits (older rows have none: such a contact is sent once more).
# 12: ``invalid_rows`` (a table that starts empty: older files lose nothing but a shortcut).
SCHEMA_VERSION = 12


class ContactStatus(StrEnum):
    """A contact's outcome, as the view ``contact_status`` gives it."""

    SENT = "sent"  # its 202 is recorded, its job not finished
    ACCEPTED = "accepted"  # its job finished without naming it
    FAILED = "failed"  # its job failed it, with SendGrid's reason
    UNCONFIRMED = "unconfirmed"  # its job failed some contacts but the errors were unreadable


# Only these make a contact's last send count: a row whose content equals it is unchanged.
COUNTING = (ContactStatus.SENT, ContactStatus.ACCEPTED)
# A contact in one of these is sent again whatever its content: "retried", not "changed".
RESEND = (ContactStatus.FAILED, ContactStatus.UNCONFIRMED)

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS contacts (
    stream VARCHAR, contact_key VARCHAR, content_hash VARCHAR, status VARCHAR,
    reason VARCHAR, fingerprint UBIGINT, seq BIGINT, content_md5 UBIGINT);
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
CREATE TABLE IF NOT EXISTS run_files (
    run_id VARCHAR, file_key VARCHAR, plan JSON, sent JSON, attempts INTEGER,
    PRIMARY KEY (run_id, file_key));
CREATE TABLE IF NOT EXISTS identities (
    contact_key VARCHAR PRIMARY KEY, email VARCHAR, phone_number_id VARCHAR,
    external_id VARCHAR, anonymous_id VARCHAR);
CREATE TABLE IF NOT EXISTS deferred (
    stream VARCHAR, contact_key VARCHAR, row_number BIGINT, run_id VARCHAR,
    fingerprint UBIGINT, content_hash UBIGINT, contact_json VARCHAR, deferred_at TIMESTAMP,
    ids VARCHAR);
CREATE TABLE IF NOT EXISTS load_keys (
    run_id VARCHAR, stream VARCHAR, file_key VARCHAR, contact_key VARCHAR, flagged BOOLEAN);
CREATE TABLE IF NOT EXISTS removals (
    stream VARCHAR, contact_key VARCHAR, action VARCHAR, list_id VARCHAR, cause VARCHAR,
    contact_id VARCHAR, job_id VARCHAR, status VARCHAR, run_id VARCHAR, note VARCHAR,
    queued_at TIMESTAMP, finished_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS rejects (
    run_id VARCHAR, stream VARCHAR, row_number BIGINT, contact_key VARCHAR,
    "column" VARCHAR, reason VARCHAR, stage VARCHAR, recorded_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS spooled (seq BIGINT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS refused (
    stream VARCHAR, contact_key VARCHAR, fingerprint UBIGINT, reason VARCHAR, run_id VARCHAR,
    refused_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS invalid_rows (
    stream VARCHAR, contact_key VARCHAR, fingerprint UBIGINT, checks BIGINT, masks BIGINT[],
    run_id VARCHAR);
"""

# A contact's job and outcome. Its own status, where set, wins: ``failed`` (or a row of a
# state file before schema 6); otherwise its job's: ``sent`` while pending, then the job's
# ``contacts_status``. Requests and jobs are one row per 30,000 contacts: the joins are cheap.
_CONTACT_STATUS_VIEW = f"""
CREATE OR REPLACE VIEW contact_status AS
SELECT c.stream, c.contact_key, c.content_md5, c.content_hash, c.fingerprint, c.seq, o.job_id,
    coalesce(c.status, o.outcome) AS status, c.reason, coalesce(c.permanent, false) AS permanent
FROM contacts c LEFT JOIN (
    SELECT r.seq, r.job_id,
        CASE WHEN j.status = 'pending' THEN '{ContactStatus.SENT}' ELSE j.contacts_status END
        AS outcome
    FROM requests r JOIN jobs j ON j.job_id = r.job_id) o ON o.seq = c.seq
"""


def migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Create the tables, or bring an older file up to ``SCHEMA_VERSION``."""
    con.execute(_DDL)
    version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    # Version 2 had no fingerprints: its contacts are compared by content hash once, and
    # the run that finds them unchanged records their fingerprints.
    con.execute("ALTER TABLE contacts ADD COLUMN IF NOT EXISTS fingerprint UBIGINT")
    # Versions 2 and 3 had no request numbers: number the requests in the order sent.
    con.execute("ALTER TABLE contacts ADD COLUMN IF NOT EXISTS seq BIGINT")
    con.execute("ALTER TABLE requests ADD COLUMN IF NOT EXISTS seq BIGINT")
    con.execute("ALTER TABLE jobs ADD COLUMN IF NOT EXISTS contacts_status VARCHAR")
    # 7: a failure only a change of the data can fix, and the identifiers a send carried.
    con.execute("ALTER TABLE contacts ADD COLUMN IF NOT EXISTS permanent BOOLEAN")
    con.execute("ALTER TABLE contacts ADD COLUMN IF NOT EXISTS ids VARCHAR")
    # 7: who created a contact, and the lists it was put in. Rows from before: 0, unknown.
    con.execute("ALTER TABLE contacts ADD COLUMN IF NOT EXISTS first_seq BIGINT DEFAULT 0")
    con.execute("ALTER TABLE contacts ADD COLUMN IF NOT EXISTS lists VARCHAR")
    con.execute("ALTER TABLE deferred ADD COLUMN IF NOT EXISTS list_scope VARCHAR")
    # 11: the content hash of a send a 400 refused for good (before: unknown, null).
    con.execute("ALTER TABLE refused ADD COLUMN IF NOT EXISTS content_md5 UBIGINT")
    if version and int(version[0][0]) < 8:
        _numeric_md5(con)
    con.execute(
        "UPDATE requests SET seq = n.seq FROM (SELECT job_id, row_number() OVER "
        "(ORDER BY sent_at, job_id) AS seq FROM requests) n "
        "WHERE requests.job_id = n.job_id AND requests.seq IS NULL"
    )
    # Before version 6 every contact named its job (and kept its own status, which the
    # view prefers: those rows stay as they are).
    if "job_id" in _column_types(con, "contacts"):
        con.execute(
            "UPDATE contacts SET seq = r.seq FROM requests r "
            "WHERE contacts.seq IS NULL AND contacts.job_id = r.job_id"
        )
    con.execute(_CONTACT_STATUS_VIEW)
    con.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])


# An MD5's 32 hex digits as the render's number: the first 16 (``contact_sql``).
_FIRST_64 = "('0x' || left(content_hash, 16))"


def _numeric_md5(con: duckdb.DuckDBPyConnection) -> None:
    """Schema 8: hex MD5 content hashes become ``content_md5``; in ``deferred`` the column
    keeps its name (its rows are rendered in the current version: never a SHA-256)."""
    con.execute("ALTER TABLE contacts ADD COLUMN IF NOT EXISTS content_md5 UBIGINT")
    con.execute(
        f"UPDATE contacts SET content_md5 = {_FIRST_64}::UBIGINT, content_hash = NULL "
        "WHERE length(content_hash) = 32"
    )
    if _column_types(con, "deferred").get("content_hash") == "VARCHAR":
        con.execute(
            f"ALTER TABLE deferred ALTER content_hash TYPE UBIGINT USING {_FIRST_64}::UBIGINT"
        )


def _column_types(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """Each column of ``table`` and its DuckDB type."""
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?",
        [table],
    ).fetchall()
    return {str(r[0]): str(r[1]) for r in rows}
