"""The state store: the one owner of what was sent, what SendGrid made of it, and "unchanged".

``StateStore.open(path)`` opens (creating it ``0600``, upgrading an older file) and locks the
DuckDB state file for one run. Everything the run decides about the past goes through here:

* ``changes_sql(relation, stream)``: per planned row, is it new, what content hash counts as
  its last send, does that send ride on a job still pending, and is the row unchanged by
  fingerprint. The plan runs it over a whole load's rows, and again over held-back contacts:
  one definition of "unchanged", one place that knows which statuses count.
* ``same_content(contacts, legacy_hash)``: unchanged by content hash (the fingerprint is only
  a shortcut), including the SHA-256 hashes of files before schema 5.
* recording: ``record_sent`` (right after each 202, one transaction with its request, with
  the lists each contact is now in and the removal from those it left queued; the contacts'
  rows go through ``state.spool`` and are merged in bulk before anything else uses the
  state: see ``con``),
  ``refresh_fingerprints``, ``record_rejects``, ``record_job_outcome`` (a job's end, with
  the contacts it failed) and ``record_job_outcomes`` (jobs that failed none, in one
  transaction), and the runs table;
* ``removals`` (``state.removals.RemovalLedger``): a load's keys, which contacts left and
  who created them, list removals and deletions queued or in flight.

Every write that spans statements runs in a transaction that rolls back on error, and every set
operation is SQL over Arrow tables: no Python loop touches individual contacts. While a store
is open the process umask is ``077``, so DuckDB's write-ahead log (re-created beside the file
at every checkpoint) is private too: it holds contact keys, i.e. emails.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from sendgrid_destination.contact_model import IDENTIFIER_CHANGE, IDENTIFIERS
from sendgrid_destination.errors import ConfigurationError, SendGridError
from sendgrid_destination.schemas import REJECTS
from sendgrid_destination.state import recovery
from sendgrid_destination.state.duck import transaction, utc_cursor
from sendgrid_destination.state.invalid_rows import InvalidRowMemory
from sendgrid_destination.state.lock import file_lock
from sendgrid_destination.state.removals import SENT as REMOVAL_SENT
from sendgrid_destination.state.removals import RemovalLedger, ids_sql
from sendgrid_destination.state.schema import COUNTING, RESEND, ContactStatus, migrate
from sendgrid_destination.state.spool import MERGE_ROWS, SPOOLED, Spool

# DuckDB's cap for everything the load does in it: the state's pages, the plan (with its
# duplicate keys) and the render (the plan runs them in this instance's workspace), spilling
# beyond it. At 160 MB a 10M-row load peaked at ~600 MiB RSS (~720 with 256 MB), same time.
STATE_MEMORY_LIMIT = "160MB"
# The cap while a plan renders a batch (``render_memory``) or the spool merges (``con``): the
# render reads one batch of the plan's table, so DuckDB may write the rest of it out, and the
# render's own result is sliced when it finds too little room (``sliced_query``). With 160 MB
# throughout, a 10M-row load kept 160 MB of its plan resident and peaked 21% above a 1M-row
# load (653 vs 540 MiB); with this, 16% (572 vs 494), at the same render time. The merge
# streams files into a table without an index. Other state writes keep the full cap (a
# million identities recorded as their jobs ended ran out of 64 MB; 4% with 64 MB for the
# whole send).
RENDER_MEMORY_LIMIT = "64MB"
# DuckDB checkpoints when its write-ahead log reaches the threshold (16 MB by default), i.e.
# every few 6 MB upserts, each time rewriting row groups that the next job outcome updates
# again: a 1M-contact first load spent half its state writes in checkpoints. 128 MB cut
# them by 40% for about 20 MB more peak memory; a crash replays at most that much log.
_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "memory_limit": STATE_MEMORY_LIMIT,
    "checkpoint_threshold": "128MB",
}
_COUNTING_SQL = "(" + ", ".join(f"'{s}'" for s in COUNTING) + ")"
_RESEND_SQL = "(" + ", ".join(f"'{s}'" for s in RESEND) + ")"

LegacyHash = Callable[[pa.ChunkedArray], pa.ChunkedArray]
# The sent contacts' columns record_sent keeps (with ``list_scope``).
_SENT = ["contact_key", "content_hash", "fingerprint", "is_new", "ids"]
# What record_sent keeps of a contact's previous row.
_PREVIOUS = pa.schema(
    [
        pa.field("contact_key", pa.string()),
        pa.field("first_seq", pa.int64()),
        pa.field("lists", pa.string()),
        pa.field("seq", pa.int64()),
    ]
)
# Refusals by SendGrid (reject stages): a 400 naming the row, or a job that failed it.
_BY_SENDGRID = "('api', 'job')"
# A job's failure of a contact whose latest send was this run's own (the join yields the
# contact keys; ``{}`` is the relation holding the contacts' previous rows).
_SENT_BY_RUN = "SELECT p.contact_key FROM {} p JOIN requests q ON q.seq = p.seq WHERE q.run_id = ?"


# A job's end as ``record_job_outcome`` takes it (the keys of ``JobTracker``'s job rows).
_ENDED = pa.schema(
    [
        pa.field("id", pa.string()),
        pa.field("status", pa.string()),
        pa.field("created_count", pa.int64()),
        pa.field("updated_count", pa.int64()),
        pa.field("errored_count", pa.int64()),
        pa.field("errors_url", pa.string()),
    ]
)


def _attempt_key(run_id: str) -> str:
    """The start of ``meta``'s keys of the ``sent`` counters the run's attempt in progress
    keeps, one per request (its seq follows: the last sorts last)."""
    return f"attempt.{run_id}."


def _seqs_sql(seqs: list[int]) -> str:
    """A filter on the contacts of these requests; the range lets DuckDB skip the row groups
    outside it by their min/max."""
    listed = ", ".join(str(int(seq)) for seq in seqs)
    return f"seq BETWEEN {min(seqs)} AND {max(seqs)} AND seq IN ({listed})"


@dataclass(frozen=True)
class SentLists:
    """What one accepted upsert did to list memberships, per (contact, list)."""

    joined: int = 0  # lists the contacts were put in that their previous send had not
    dropped: int = 0  # lists their previous send put them in, no longer theirs: queued


def _matches_sql(quoted: str, mapped: Sequence[str]) -> str:
    """Over ``quoted`` (``row_number``, ``i_<identifier>``): each row's number and the key of
    each contact known to the state that one of its identifiers matches (distinct)."""
    several = [
        f"SELECT r.row_number, i.contact_key FROM {quoted} r JOIN identities i ON i.{n} = r.i_{n}"
        for n in IDENTIFIERS
    ]
    single = [
        f"SELECT r.row_number, '{n}:' || r.i_{n} AS contact_key FROM {quoted} r "
        f"WHERE r.i_{n} IS NOT NULL AND '{n}:' || r.i_{n} IN "
        "(SELECT contact_key FROM contacts) "
        f"AND NOT EXISTS (SELECT 1 FROM identities i WHERE i.{n} = r.i_{n})"
        for n in IDENTIFIERS
        if n in mapped
    ]
    return " UNION ".join(several + single)


def _connect(path: Path, read_only: bool) -> duckdb.DuckDBPyConnection:
    # The state's tables live in DuckDB's buffer pool, which spills to disk beyond the cap:
    # memory stays flat however many contacts the account holds.
    try:
        return duckdb.connect(str(path), read_only=read_only, config=_CONFIG)
    except duckdb.Error as exc:
        raise recovery.unreadable(path, exc) from None


def _upgrade(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    try:
        with transaction(con):
            migrate(con)
        ((seq,),) = con.execute("SELECT coalesce(max(seq), 0) FROM requests").fetchall()
    except duckdb.Error as exc:
        raise recovery.unreadable(path, exc) from None
    recovery.check_against_journal(path, int(seq))
    Spool(path).recover(con)


def _count(cur: duckdb.DuckDBPyConnection, sql: str, *params: Any) -> int:
    """A ``count(*)`` query's number: checked first, it spares a DELETE's or a join's scan
    of a table that is usually empty (3 ms a request at 1M contacts, measured)."""
    return int(cur.execute(sql, list(params)).fetchall()[0][0])


def no_state_file(path: Path) -> SendGridError:
    """``path`` holds no state file to read: a directory, a file deleted (its journal
    remains), or nothing yet."""
    if (missing := recovery.missing_state(path)) is not None:
        return missing
    if path.is_dir():
        return ConfigurationError(
            f"{path} is a directory: --state (and state_path) name the state file itself, "
            "e.g. a .duckdb file in that directory."
        )
    return ConfigurationError(
        f"No state file at {path}: nothing has been loaded with it yet. Without state_path, "
        "each account (base_url, on_behalf_of) has its own default file: `run` prints the one "
        "it used as `state:`; pass that with --state."
    )


def _any_lists(contacts: pa.Table, previous: pa.Table | None = None) -> bool:
    """Whether sent contacts are, or were, in any list (else no membership changed)."""
    scoped = pc.any(pc.not_equal(pc.fill_null(contacts["list_scope"], ""), "")).as_py()
    was = previous is not None and pc.any(pc.is_valid(previous["lists"])).as_py()
    return bool(scoped) or bool(was)


class StateStore:
    """An open state file; use ``StateStore.open(path)`` as a context manager."""

    def __init__(self, con: duckdb.DuckDBPyConnection, path: Path) -> None:
        self._con = con
        self.path = path
        self._spool = Spool(path)
        self._memory_limit = STATE_MEMORY_LIMIT  # the cap asked for last (see ``_memory_cap``)
        # Saved statements per job outcome (5 ms a job at 1M contacts): whether rows of a
        # file before schema 6 may still say 'sent', and the jobs this process recorded whose
        # contacts carried a single identifier (nothing for ``identities``).
        self._legacy_status = True
        self._jobs_without_ids: set[str] = set()
        # Saved statement per request (1-2 ms of ~8): the next request's seq, and the (table,
        # run) pairs whose sends have no deferred contact, refusal by SendGrid or row refused
        # for good to clear. Only this instance writes the file (its lock); each method that
        # adds such a row empties the set (``_may_clear``).
        self._next_seq: int | None = None
        self._plain_sends: set[tuple[str, str]] = set()

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The state's connection, with every contact recorded so far in ``contacts``: the
        rows ``record_sent`` left in the spool for one bulk insert are merged first, under
        the render cap."""
        if self._spool.holding:
            # The merge streams its files into ``contacts``; what DuckDB held before (mid-load,
            # the plan's table) may go out meanwhile. A 10M-row load peaked during its merges,
            # with the plan's table resident: 564-571 MiB with this cap, 583-609 without.
            try:
                with self._memory_cap(RENDER_MEMORY_LIMIT), utc_cursor(self._con) as cur:
                    self._spool.merge(cur)
            except duckdb.OutOfMemoryException:
                # What DuckDB cannot write out (the ``identities`` index: 57 MB at 1.5M
                # contacts) left too little room: the merge rolled back, ``spooled`` still
                # names its requests, and it runs again under the cap in force.
                with utc_cursor(self._con) as cur:
                    self._spool.merge(cur)
        return self._con

    @classmethod
    @contextmanager
    def open(cls, path: Path, *, read_only: bool = False) -> Iterator[StateStore]:
        """Open (creating it unless ``read_only``) and lock the state file."""
        if read_only and not path.is_file():
            raise no_state_file(path)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        recovery.refuse_missing(path)
        previous_umask = os.umask(0o077)
        try:
            if read_only and Spool(path).has_files():
                with cls.open(path):  # merges what a killed run recorded and had not merged
                    pass
            with file_lock(path, shared=read_only):
                con = _connect(path, read_only)
                try:
                    if not read_only:
                        os.chmod(path, 0o600)
                        _upgrade(con, path)
                    store = cls(con, path)
                    yield store
                    store.con  # noqa: B018 (merges the rows still in the spool)
                finally:
                    con.close()
        finally:
            os.umask(previous_umask)

    @property
    def invalid_rows(self) -> InvalidRowMemory:
        """The rows the check refused in each table's latest run (a rerun's shortcut)."""
        return InvalidRowMemory(self)

    @property
    def removals(self) -> RemovalLedger:
        """List removals and deletions: the load's keys, what left, what is in flight."""
        return RemovalLedger(self)

    def back_up(self) -> None:
        """Keep a copy of the file as it is now (after a run that completed)."""
        self._write("CHECKPOINT")
        recovery.back_up(self.path)

    def _write(self, sql: str, params: list[Any] | None = None) -> None:
        """One statement on a cursor of its own: DuckDB refuses new work on a connection
        whose last result was not fetched to the end, and a write's count row is never read."""
        self._rows(sql, params)

    def _rows(
        self, sql: str, params: list[Any] | dict[str, Any] | None = None
    ) -> list[tuple[Any, ...]]:
        """Every row of one query, read to the end on a cursor of its own (see ``_write``)."""
        with self.workspace() as cur:
            return cur.execute(sql, params or []).fetchall()

    def _first(self, sql: str, params: list[Any] | None = None) -> tuple[Any, ...] | None:
        rows = self._rows(sql, params)
        return rows[0] if rows else None

    @contextmanager
    def workspace(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A UTC cursor on the state's database for temporary tables: the plan and the render
        share the state's one memory budget (a 10M-row load filled two separate caps)."""
        cur = utc_cursor(self.con)
        try:
            yield cur
        finally:
            cur.close()

    def render_memory(self) -> AbstractContextManager[None]:
        """DuckDB's cap lowered to ``RENDER_MEMORY_LIMIT`` inside, back after."""
        return self._memory_cap(RENDER_MEMORY_LIMIT)

    @contextmanager
    def _memory_cap(self, limit: str) -> Iterator[None]:
        """DuckDB's cap at ``limit`` inside, and back to what it was after (caps nest)."""
        previous = self._memory_limit
        self._set_memory_limit(limit)
        try:
            yield
        finally:
            self._set_memory_limit(previous)

    def _set_memory_limit(self, limit: str) -> None:
        # When what DuckDB holds cannot go out now, it keeps its cap: a speed setting.
        with suppress(duckdb.OutOfMemoryException):
            self._con.execute(f"SET memory_limit = '{limit}'")
        self._memory_limit = limit

    def checkpoint(self) -> None:
        """Write everything committed into the file itself, so that a copy of the file alone
        is the whole state (the remote state uploads such copies)."""
        self.con.execute("CHECKPOINT")

    # -- the account ---------------------------------------------------------------------------

    def account(self) -> dict[str, str]:
        """The account this file belongs to (``meta``'s ``account.*`` keys), if recorded."""
        rows = self._rows("SELECT key, value FROM meta WHERE key LIKE 'account.%'")
        return {str(k).removeprefix("account."): str(v) for k, v in rows if v is not None}

    def set_account(self, account: dict[str, str]) -> None:
        with self.workspace() as cur, transaction(cur):
            for key, value in account.items():
                cur.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [f"account.{key}", value])

    def learned_max_bytes(self) -> int | None:
        """The request size SendGrid accepted for this account, when it refused a larger one
        as too large (``learned.max_request_bytes`` in ``meta``)."""
        row = self._first("SELECT value FROM meta WHERE key = 'learned.max_request_bytes'")
        return int(row[0]) if row and row[0] else None

    def set_learned_max_bytes(self, max_bytes: int) -> None:
        self._write(
            "INSERT OR REPLACE INTO meta VALUES ('learned.max_request_bytes', ?)", [str(max_bytes)]
        )

    def column_stats(self, stream: str) -> dict[str, Any] | None:
        """What the stream's last load held per mapped column (``drift.ColumnStats``)."""
        row = self._first("SELECT value FROM meta WHERE key = ?", [f"columns.{stream}"])
        return dict(json.loads(row[0])) if row and row[0] else None

    def set_column_stats(self, stream: str, stats: dict[str, Any]) -> None:
        self._write(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)", [f"columns.{stream}", json.dumps(stats)]
        )

    def has_contacts(self, stream: str) -> bool:
        """Whether the state has a contact of ``stream``."""
        rows = self._rows(
            "SELECT count(*) FROM (SELECT 1 FROM contacts WHERE stream = ? LIMIT 1)", [stream]
        )
        return bool(rows[0][0])

    def has_accepted(self) -> bool:
        """Whether the state records a contact SendGrid accepted (its job ended)."""
        rows = self._rows(
            "SELECT count(*) FROM (SELECT 1 FROM contact_status WHERE status = ? LIMIT 1)",
            [str(ContactStatus.ACCEPTED)],
        )
        return bool(rows[0][0])

    # -- deciding what changed ---------------------------------------------------------------

    def changes_sql(
        self, relation: str, stream: str, run_id: str, *, checked: bool = True
    ) -> tuple[str, list[Any]]:
        """A query over ``relation`` (``contact_key``, ``fingerprint``, and ``ok`` when
        ``checked``: rows that may be refused) returning its columns plus:

        * ``is_new``: the state has no send of this contact;
        * ``prev_hash``: the content hash of the send that counts (its job pending or
          accepted), else null: failed and unconfirmed contacts are always sent again;
          ``prev_sha256``: the same, when that send was recorded before schema 5;
        * ``pending``: that send, or a send of the same contact from another table (one
          account, one contact), rides on a job not yet finished;
        * ``retry``: the last send failed or is unconfirmed (sent again: "retried");
        * ``unchanged``: the row is ok and its fingerprint is the counting send's, or the
          fingerprint of a send SendGrid refused for good (a missing identifier, a value it
          refuses): such a row waits for a change of its data (``waits``);
        * ``refused_hash``: the content hash of that send refused for good, when the row does
          not wait by fingerprint: if its JSON is that one (the fingerprint changed, not the
          data: a DuckDB upgrade, another source type), the render finds it waits;
        * ``this_run``: that send was made by ``run_id`` (an earlier attempt of this run,
          which counted the contact already).
        """
        ok = "c.ok" if checked else "true"
        quoted = '"' + relation.replace('"', '""') + '"'
        pending = f"coalesce(s.status = '{ContactStatus.SENT}', false)"
        params: list[Any] = []
        if self._pending_elsewhere(stream):
            pending += (
                " OR c.contact_key IN (SELECT contact_key FROM contact_status "
                f"WHERE status = '{ContactStatus.SENT}' AND stream <> ?)"
            )
            params.append(stream)
        if self.removals.any_in_flight():
            # A removal job not yet ended, of any table, must not land after a newer upsert
            # of the contact (``state.removals``).
            pending += (
                " OR c.contact_key IN (SELECT contact_key FROM removals "
                f"WHERE status = '{REMOVAL_SENT}')"
            )
        params.append(run_id)
        # A row a 400 refused for good, unchanged since (rare: joined only when any is kept);
        # not this run's own refusal: an attempt dlt retries sends it again, counted once.
        refused, refused_join, refused_params = "", "", []
        refused_hash = "CASE WHEN s.permanent THEN s.content_md5 END"
        if self._any_refused_for_good(stream):
            refused = f"OR coalesce({ok} AND f.fingerprint = c.fingerprint, false)"
            refused_hash = f"coalesce({refused_hash}, f.content_md5)"
            refused_join = (
                "LEFT JOIN refused f ON f.stream = ? AND f.contact_key = c.contact_key "
                "AND f.run_id <> ?"
            )
            refused_params = [stream, run_id]
        sql = (
            "SELECT c.*, s.contact_key IS NULL AS is_new, "
            f"CASE WHEN s.status IN {_COUNTING_SQL} THEN s.content_md5 END AS prev_hash, "
            f"CASE WHEN s.status IN {_COUNTING_SQL} THEN s.content_hash END AS prev_sha256, "
            f"({pending}) AS pending, "
            f"coalesce(s.status IN {_RESEND_SQL}, false) AS retry, "
            f"coalesce({ok} AND s.fingerprint = c.fingerprint "
            f"AND (s.status IN {_COUNTING_SQL} OR s.permanent), false) {refused} AS unchanged, "
            f"coalesce({ok} AND s.fingerprint = c.fingerprint AND s.permanent, false) {refused} "
            f"AS waits, {refused_hash} AS refused_hash, "
            "coalesce(s.seq IN (SELECT seq FROM requests WHERE run_id = ?), false) AS this_run "
            f"FROM {quoted} c LEFT JOIN contact_status s "
            f"ON s.stream = ? AND s.contact_key = c.contact_key {refused_join}"
        )
        return sql, [*params, stream, *refused_params]

    def _any_refused_for_good(self, stream: str) -> bool:
        with self.workspace() as cur:
            return _count(cur, "SELECT count(*) FROM refused WHERE stream = ?", stream) > 0

    def record_refused_for_good(self, run_id: str, stream: str, refused: pa.Table) -> None:
        """Contacts a 400 refused for a reason only their data can fix (``contact_key``,
        ``fingerprint``, ``reason``, ``content_hash``): kept until the contact is accepted, so
        that the same row waits for a change instead of being refused again by every run."""
        if refused.num_rows == 0:
            return
        self._may_clear()
        with self.workspace() as cur, transaction(cur):
            cur.register(
                "r", refused.select(["contact_key", "fingerprint", "reason", "content_hash"])
            )
            cur.execute(
                "DELETE FROM refused WHERE stream = ? AND contact_key IN "
                "(SELECT contact_key FROM r)",
                [stream],
            )
            cur.execute(
                "INSERT INTO refused (stream, contact_key, fingerprint, reason, run_id, "
                "refused_at, content_md5) SELECT DISTINCT ON (contact_key) ?, contact_key, "
                "fingerprint, reason, ?, now(), content_hash FROM r "
                "WHERE contact_key IS NOT NULL",
                [stream, run_id],
            )

    def _pending_elsewhere(self, stream: str) -> bool:
        """Whether another table of this account has jobs pending (then a contact's pending
        send may come from there: checked only then, it costs a second scan)."""
        rows = self._rows(
            "SELECT count(*) FROM jobs WHERE status = 'pending' AND stream <> ?", [stream]
        )
        return bool(rows[0][0])

    def sent_in_run(self, run_id: str) -> bool:
        """Whether ``run_id`` has accepted requests already (dlt is retrying one of its files)."""
        return bool(self._rows("SELECT count(*) FROM requests WHERE run_id = ?", [run_id])[0][0])

    def same_content(self, contacts: pa.Table, legacy_hash: LegacyHash) -> pa.Array:
        """Per row of ``contacts`` (``content_hash``, ``prev_hash``, ``prev_sha256``,
        ``contact_json``): is its JSON the one last sent? A ``prev_sha256`` (a state file
        before schema 5) is compared with ``legacy_hash`` of the JSON."""
        prev = contacts["prev_sha256"]
        same = pc.fill_null(pc.equal(contacts["content_hash"], contacts["prev_hash"]), False)
        same = same.combine_chunks()
        legacy = pc.is_valid(prev)
        if not pc.any(legacy).as_py():
            return same
        at = pc.indices_nonzero(legacy)
        old = legacy_hash(contacts["contact_json"].take(at))
        merged = same.to_numpy(zero_copy_only=False).copy()
        merged[at.to_numpy()] = pc.equal(old, prev.take(at)).to_numpy(zero_copy_only=False)
        return pa.array(merged)

    def pending_jobs(self, stream: str | None = None) -> list[str]:
        sql = "SELECT job_id FROM jobs WHERE status = 'pending'"
        params: list[Any] = []
        if stream is not None:
            sql += " AND stream = ?"
            params.append(stream)
        return [r[0] for r in self._rows(sql + " ORDER BY created_at", params)]

    def pending_jobs_of(self, contacts: pa.Table) -> list[str]:
        """Unfinished jobs carrying an earlier version of any of these contacts, from any
        table of the account."""
        with self.workspace() as cur:
            cur.register("incoming", contacts.select(["contact_key"]))
            rows = cur.execute(
                "SELECT DISTINCT s.job_id FROM incoming i JOIN contact_status s "
                f"ON s.contact_key = i.contact_key AND s.status = '{ContactStatus.SENT}'"
            ).fetchall()
        return [str(r[0]) for r in rows]

    def jobs_of_other_tables(
        self, job_ids: Sequence[str], stream: str
    ) -> dict[str, tuple[str, str]]:
        """Of these jobs, those another table sent: job id -> (the run that sent it, its
        table)."""
        if not job_ids:
            return {}
        # Asked at every wait, mid-load: on the bare connection, since ``jobs`` needs no merge
        # of the spool (``con`` would merge it, a bulk insert for a lookup).
        with utc_cursor(self._con) as cur:
            rows = cur.execute(
                "SELECT job_id, run_id, stream FROM jobs WHERE stream <> ? AND job_id IN "
                "(SELECT unnest(?::VARCHAR[]))",
                [stream, list(job_ids)],
            ).fetchall()
        return {str(j): (str(r), str(s)) for j, r, s in rows}

    # -- identifiers SendGrid holds -----------------------------------------------------------

    def has_identities(self) -> bool:
        """Whether any contact was accepted with several identifiers."""
        return bool(self._rows("SELECT count(*) FROM identities")[0][0])

    def identities_refused_for_change(self, stream: str, run_id: str) -> dict[str, dict[str, str]]:
        """The identifiers the state holds (type -> value) of each contact whose row the
        table's last run before ``run_id`` refused for an identifier change (its key)."""
        names = ", ".join(f"i.{n}" for n in IDENTIFIERS)
        rows = self._rows(
            f"SELECT i.contact_key, {names} FROM identities i WHERE i.contact_key IN ("
            "SELECT contact_key FROM rejects WHERE stream = $stream AND stage = 'validation' "
            "AND reason LIKE $changed AND run_id = (SELECT run_id FROM runs WHERE stream = "
            "$stream AND run_id <> $run ORDER BY started_at DESC LIMIT 1))",
            {"stream": stream, "run": run_id, "changed": f"%{IDENTIFIER_CHANGE}%"},
        )
        return {
            key: {n: v for n, v in zip(IDENTIFIERS, values, strict=True) if v is not None}
            for key, *values in rows
        }

    def identity_misses(self, stream: str) -> set[str]:
        """The contacts (keys) of ``stream`` that ``identity_refresh`` found by none of their
        identifiers last time (``meta``)."""
        row = self._first("SELECT value FROM meta WHERE key = ?", [f"identity_missed.{stream}"])
        return set(json.loads(row[0])) if row else set()

    def set_identity_misses(self, stream: str, keys: set[str]) -> None:
        self._write(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            [f"identity_missed.{stream}", json.dumps(sorted(keys))],
        )

    def set_identities(self, held: Mapping[str, Mapping[str, str] | None]) -> None:
        """Each contact's identifiers as SendGrid holds them now, or forgotten (None: it
        holds the contact no more)."""
        if not held:
            return
        names = ", ".join(IDENTIFIERS)
        with self.workspace() as cur, transaction(cur):
            for key, ids in held.items():
                cur.execute("DELETE FROM identities WHERE contact_key = ?", [key])
                if ids:
                    cur.execute(
                        f"INSERT INTO identities (contact_key, {names}) VALUES (?, ?, ?, ?, ?)",
                        [key, *(ids.get(n) for n in IDENTIFIERS)],
                    )

    def identities_sql(
        self, relation: str, mapped: Sequence[str] = IDENTIFIERS
    ) -> tuple[str, list[Any]]:
        """Over ``relation`` (``row_number`` and ``i_<identifier>`` for the four
        identifiers): for each row that matches a contact the state knows, its
        ``row_number``, ``known_key``, ``k_<identifier>`` (every identifier SendGrid holds for
        that contact) and ``matches``, the number of different contacts matched (over 1:
        ambiguous). Rows that match none are left out: the caller joins this narrow result
        back to its rows (one query doing both ran out of the state's memory cap with rows
        as wide as the check's, at 300,000 rows against as many contacts).

        A contact sent with several identifiers is matched through ``identities``; one known
        by a single identifier (``mapped``: those the rows can hold) through its key, which
        is that identifier (``external_id:X0``), whatever its send's outcome (pending, failed
        or accepted), unless ``identities`` knows that identifier under a key of its own (a
        state file of an earlier version may hold both). So a row that gains an identifier,
        an email beside the external_id its contact was created with, stays that contact:
        mirror mode would otherwise delete it as gone."""
        quoted = '"' + relation.replace('"', '""') + '"'
        # Narrow first (row number and contact key of each match, distinct), the identifiers
        # of the one contact matched joined after: a wide union and a count(DISTINCT) ran
        # out of the state's memory cap at 1M rows and 1M known contacts.
        held = ", ".join(f"k.{n} AS k_{n}" for n in IDENTIFIERS)
        return (
            f"SELECT m.row_number, m.known_key, {held}, m.matches FROM (SELECT row_number, "
            "min(contact_key) AS known_key, "
            f"count(*) AS matches FROM ({_matches_sql(quoted, mapped)}) "
            "GROUP BY row_number) m LEFT JOIN identities k ON k.contact_key = m.known_key",
            [],
        )

    def shared_keys_sql(self, relation: str, mapped: Sequence[str] = IDENTIFIERS) -> str:
        """Over ``relation`` (``identities_sql``'s result): the key of every contact that a
        row matching several contacts (``matches`` over 1) matches. Such a row is refused and
        stands for none of them, yet may be the only row of any: each is kept from deletion
        as present in the load (which of them the row meant, only its author knows)."""
        quoted = '"' + relation.replace('"', '""') + '"'
        return (
            f"SELECT DISTINCT contact_key FROM ({_matches_sql(quoted, mapped)}) "
            f"WHERE row_number IN (SELECT row_number FROM {quoted} WHERE matches > 1)"
        )

    def own_keys_sql(self, relation: str) -> str:
        """Statements over ``relation`` (``identities_sql``'s result, a table) that set the
        ``known_key`` of each row matching several contacts (``matches`` over 1: refused) to
        the contact its first identifier in SendGrid's order matches, or to NULL: such a row
        must stand for its own contact, not for one of the others (``identifiers``)."""
        quoted = '"' + relation.replace('"', '""') + '"'
        first = " ".join(f"WHEN i_{n} IS NOT NULL THEN '{n}'" for n in IDENTIFIERS)
        value = ", ".join(f"i_{n}" for n in IDENTIFIERS)
        by_identity = " OR ".join(f"(a.n = '{n}' AND i.{n} = a.v)" for n in IDENTIFIERS)
        return (
            f"UPDATE {quoted} SET known_key = NULL WHERE matches > 1; "
            f"UPDATE {quoted} SET known_key = o.own FROM ("
            "WITH a AS (SELECT row_number, CASE " + first + " END AS n, "
            f"coalesce({value}) AS v FROM {quoted} WHERE matches > 1) "
            "SELECT row_number, min(own) AS own FROM ("
            f"SELECT a.row_number, i.contact_key AS own FROM a JOIN identities i ON {by_identity} "
            "UNION ALL SELECT a.row_number, c.contact_key FROM a JOIN contacts c "
            "ON c.contact_key = a.n || ':' || a.v) GROUP BY row_number) o "
            f"WHERE {quoted}.row_number = o.row_number"
        )

    # -- contacts waiting for a pending job -------------------------------------------------

    def forget_deferred_sql(self, relation: str, stream: str) -> tuple[str, list[Any]]:
        """A statement dropping the deferred contacts of ``stream`` that ``relation`` (the
        load's checked rows: ``contact_key``) has a row for: its last row decides now."""
        quoted = '"' + relation.replace('"', '""') + '"'
        return (
            "DELETE FROM deferred WHERE stream = ? AND contact_key IN "
            f"(SELECT contact_key FROM {quoted} WHERE contact_key IS NOT NULL)",
            [stream],
        )

    def deferred(self, stream: str) -> pa.Table:
        """The contacts of ``stream`` waiting for a pending job (``RENDERED``'s columns)."""
        with self.workspace() as cur:
            return cur.sql(
                "SELECT row_number, contact_key, fingerprint, false AS is_new, "
                "NULL::UBIGINT AS prev_hash, NULL::VARCHAR AS prev_sha256, false AS pending, "
                "false AS retry, NULL::UBIGINT AS refused_hash, contact_json, "
                "content_hash, ids, coalesce(list_scope, '') AS list_scope FROM deferred "
                "WHERE stream = ? ORDER BY row_number",
                params=[stream],
            ).to_arrow_table()

    def defer(self, run_id: str, stream: str, contacts: pa.Table) -> None:
        """``contacts`` (``RENDERED``) are the stream's deferred contacts from now on: what is
        still to send once their blocking jobs end; accepted sends remove theirs."""
        self._may_clear()
        with self.workspace() as cur, transaction(cur):
            cur.execute("DELETE FROM deferred WHERE stream = ?", [stream])
            if contacts.num_rows:
                cur.register(
                    "waiting",
                    contacts.select(
                        [
                            "contact_key",
                            "row_number",
                            "fingerprint",
                            "content_hash",
                            "contact_json",
                            "ids",
                            "list_scope",
                        ]
                    ),
                )
                cur.execute(
                    "INSERT INTO deferred SELECT ?, contact_key, row_number, ?, fingerprint, "
                    "content_hash, contact_json, now(), ids, list_scope FROM waiting",
                    [stream, run_id],
                )

    # -- recording ---------------------------------------------------------------------------

    def record_sent(
        self,
        *,
        run_id: str,
        stream: str,
        job_id: str,
        contacts: pa.Table,
        body_bytes: int,
        progress: dict[str, Any] | None = None,
    ) -> SentLists:
        """After a 202: the request and the hashes it carried (``contact_key``,
        ``content_hash``, ``fingerprint``, ``is_new``, ``list_scope``), in one transaction;
        with the lists each contact is now in (``lists``), and the lists its previous send put
        it in that it left, queued for removal (``removals``). Returns those list counts.

        The contacts' rows go to the spool (``state.spool``), written before the commit and
        merged into ``contacts`` in bulk: the one method that leaves rows in the spool.
        ``progress``: the attempt's ``sent`` counters with this request counted, kept in the
        same transaction (``adopt_killed_attempt``)."""
        with utc_cursor(self._con) as cur:
            with transaction(cur):
                seq, deferred, refusals, refused = self._before_send(cur, run_id, stream)
                cur.execute(
                    "INSERT INTO requests VALUES (?, ?, ?, ?, ?, now(), ?)",
                    [job_id, run_id, stream, contacts.num_rows, body_bytes, seq],
                )
                cur.execute(
                    "INSERT INTO jobs (job_id, run_id, stream, status, requested_count, "
                    "created_at) VALUES (?, ?, ?, 'pending', ?, now())",
                    [job_id, run_id, stream, contacts.num_rows],
                )
                first_sends = bool(pc.all(contacts["is_new"]).as_py())
                if first_sends and not (deferred or refusals or refused or _any_lists(contacts)):
                    # The common first send: no statement reads the sent contacts (two
                    # registrations saved, 1.5 ms a request).
                    rows = self._first_rows(contacts, stream, int(seq))
                    lists = SentLists()
                else:
                    rows, lists = self._recorded_rows(
                        cur, run_id, stream, contacts, int(seq), first_sends=first_sends
                    )
                    if deferred:
                        cur.execute(
                            "DELETE FROM deferred WHERE stream = ? AND contact_key IN "
                            "(SELECT contact_key FROM sent)",
                            [stream],
                        )
                    if refusals:
                        self._supersede_refusals(cur, run_id)
                    if refused:
                        cur.execute(  # accepted now: its row no longer waits for a change
                            "DELETE FROM refused WHERE stream = ? AND contact_key IN "
                            "(SELECT contact_key FROM sent)",
                            [stream],
                        )
                cur.execute("INSERT INTO spooled VALUES (?)", [seq])
                if progress is not None:  # a key per request: no replace (1.3 ms of 2.7)
                    cur.execute(
                        "INSERT INTO meta VALUES (?, ?)",
                        [f"{_attempt_key(run_id)}{int(seq):012d}", json.dumps(progress)],
                    )
                self._spool.write(int(seq), rows)
            self._spool.committed(rows.num_rows)
        self._next_seq = int(seq) + 1
        if not (deferred or refusals or refused):
            self._plain_sends.add((stream, run_id))
        if rows["ids"].null_count == rows.num_rows:
            self._jobs_without_ids.add(job_id)
        recovery.write_journal(self.path, int(seq))
        if self._spool.rows >= MERGE_ROWS:
            self.con  # noqa: B018 (merges: the spool stays bounded on disk)
        return lists

    def _before_send(
        self, cur: duckdb.DuckDBPyConnection, run_id: str, stream: str
    ) -> tuple[int, int, int, int]:
        """The request's seq, and how many deferred contacts, refusals by SendGrid in this run
        and rows refused for good the table has (which the send may clear)."""
        if self._next_seq is not None and (stream, run_id) in self._plain_sends:
            return self._next_seq, 0, 0, 0
        row = cur.execute(
            "SELECT (SELECT coalesce(max(seq), 0) + 1 FROM requests), "
            "(SELECT count(*) FROM deferred WHERE stream = $stream), "
            f"(SELECT count(*) FROM rejects WHERE run_id = $run AND stage IN {_BY_SENDGRID}), "
            "(SELECT count(*) FROM refused WHERE stream = $stream)",
            {"stream": stream, "run": run_id},
        ).fetchall()[0]
        return int(row[0]), int(row[1]), int(row[2]), int(row[3])

    def _may_clear(self) -> None:
        """A deferred contact, refusal or row refused for good is being added: the next send
        of every table counts them again."""
        self._plain_sends.clear()

    def _recorded_rows(
        self,
        cur: duckdb.DuckDBPyConnection,
        run_id: str,
        stream: str,
        contacts: pa.Table,
        seq: int,
        *,
        first_sends: bool,
    ) -> tuple[pa.Table, SentLists]:
        """Within ``record_sent``, with the sent contacts as ``sent`` and their previous rows
        as ``previous`` (deleted: one row per key): their new rows and list changes."""
        cur.register("sent", contacts.select([*_SENT, "list_scope"]))
        previous = _PREVIOUS.empty_table()
        if not first_sends:
            # No primary key on ``contacts``: DuckDB keeps a key index in memory, about 100
            # bytes a contact. The previous row gives who first sent the contact, and its lists.
            previous = cur.sql(
                "DELETE FROM contacts WHERE stream = ? AND contact_key IN "
                "(SELECT contact_key FROM sent WHERE NOT is_new) "
                "RETURNING contact_key, first_seq, lists, seq",
                params=[stream],
            ).to_arrow_table()
        cur.register("previous", previous.cast(_PREVIOUS))
        lists = SentLists()
        if _any_lists(contacts, previous):
            lists = self._record_list_changes(cur, run_id, stream)
        if not previous.num_rows:
            return self._first_rows(contacts, stream, seq), lists
        # A contact keeps who first sent it. No status: a contact's outcome is its job's
        # until the job says otherwise.
        rows = cur.sql(
            "SELECT $stream AS stream, s.contact_key, s.content_hash AS content_md5, "
            "s.fingerprint, $seq AS seq, s.ids, coalesce(p.first_seq, $seq) AS first_seq, "
            "nullif(s.list_scope, '') AS lists "
            "FROM sent s LEFT JOIN previous p ON p.contact_key = s.contact_key",
            params={"stream": stream, "seq": seq},
        ).to_arrow_table()
        return rows.cast(SPOOLED), lists

    @staticmethod
    def _first_rows(contacts: pa.Table, stream: str, seq: int) -> pa.Table:
        """The spool rows (``spool.SPOOLED``) of contacts sent for the first time (4 ms a
        request in SQL, a tenth of that here). Their list scope stays as it is ('' for none):
        the merge makes it null (pyarrow 18's if_else wrote invalid offsets for sliced text)."""
        count = contacts.num_rows
        return pa.Table.from_arrays(
            [
                pa.repeat(stream, count),
                contacts["contact_key"],
                contacts["content_hash"],
                contacts["fingerprint"],
                pa.repeat(pa.scalar(seq, pa.int64()), count),
                contacts["ids"],
                pa.repeat(pa.scalar(seq, pa.int64()), count),
                contacts["list_scope"],
            ],
            names=SPOOLED.names,
        ).cast(SPOOLED)

    @staticmethod
    def _supersede_refusals(cur: duckdb.DuckDBPyConnection, run_id: str) -> None:
        """A contact this run saw refused, accepted now (an attempt of the file dlt retried):
        its refusal no longer stands. A 400 always refused this run's own send; a job's
        failure only counts as superseded when the failed send was this run's, since a job
        of an earlier run that failed the contact is that earlier send's outcome."""
        cur.execute(
            "DELETE FROM rejects WHERE run_id = ? AND contact_key IN (SELECT contact_key FROM "
            "sent) AND (stage = 'api' OR (stage = 'job' AND contact_key IN ("
            + _SENT_BY_RUN.format("previous")
            + ")))",
            [run_id, run_id],
        )

    @staticmethod
    def _record_list_changes(cur: duckdb.DuckDBPyConnection, run_id: str, stream: str) -> SentLists:
        """Within ``record_sent``: count the lists the sent contacts joined, queue the removal
        from those they left (their previous send's lists no longer in their scope), and
        drop queued removals from lists a contact is back in."""
        pairs = (
            f"SELECT s.contact_key, unnest({ids_sql('p.lists')}) AS list_id, s.list_scope "
            "FROM sent s JOIN previous p ON p.contact_key = s.contact_key"
        )
        ((joined, dropped),) = cur.execute(
            f"SELECT coalesce(sum(len(list_filter({ids_sql('s.list_scope')}, lambda x: "
            f"NOT list_contains({ids_sql('p.lists')}, x)))), 0), "
            f"(SELECT count(*) FROM ({pairs}) WHERE NOT list_contains({ids_sql('list_scope')}, "
            "list_id)) FROM sent s LEFT JOIN previous p ON p.contact_key = s.contact_key"
        ).fetchall()
        cur.execute(
            "DELETE FROM removals WHERE stream = ? AND status = 'queued' AND contact_key IN "
            "(SELECT contact_key FROM sent) AND list_contains("
            f"(SELECT {ids_sql('list_scope')} FROM sent WHERE sent.contact_key = "
            "removals.contact_key), list_id)",
            [stream],
        )
        if dropped:
            cur.execute(
                "INSERT INTO removals (stream, contact_key, action, list_id, cause, status, "
                f"run_id, queued_at) SELECT ?, contact_key, 'unlist', list_id, 'dropped', "
                f"'queued', ?, now() FROM ({pairs}) WHERE NOT list_contains("
                f"{ids_sql('list_scope')}, list_id)",
                [stream, run_id],
            )
        return SentLists(int(joined), int(dropped))

    def refresh_fingerprints(self, stream: str, contacts: pa.Table) -> None:
        """Record the fingerprints and content hashes (``contact_key``, ``fingerprint``,
        ``content_hash``) of contacts found unchanged by content, so the next plan skips them
        without rendering (and a SHA-256 of schema 4 or earlier becomes an MD5)."""
        if contacts.num_rows == 0:
            return
        with self.workspace() as cur:
            cur.register("fresh", contacts.select(["contact_key", "fingerprint", "content_hash"]))
            cur.execute(
                "UPDATE contacts SET fingerprint = f.fingerprint, content_md5 = f.content_hash, "
                "content_hash = NULL "
                "FROM fresh f WHERE contacts.stream = ? AND contacts.contact_key = f.contact_key",
                [stream],
            )

    def refresh_waiting(self, stream: str, contacts: pa.Table) -> None:
        """Record the fingerprints of contacts whose JSON is that of their send refused for
        good (``contact_key``, ``fingerprint``, ``content_hash``): they wait, and the next
        plan finds them waiting without rendering them. Only that send's row is touched (a
        failed contact's, or the ``refused`` one), never an accepted send's."""
        if contacts.num_rows == 0:
            return
        with self.workspace() as cur, transaction(cur):
            cur.register("w", contacts.select(["contact_key", "fingerprint", "content_hash"]))
            cur.execute(
                "UPDATE contacts SET fingerprint = w.fingerprint FROM w "
                "WHERE contacts.stream = ? AND contacts.contact_key = w.contact_key "
                "AND contacts.permanent AND contacts.content_md5 = w.content_hash",
                [stream],
            )
            cur.execute(
                "UPDATE refused SET fingerprint = w.fingerprint FROM w "
                "WHERE refused.stream = ? AND refused.contact_key = w.contact_key "
                "AND refused.content_md5 = w.content_hash",
                [stream],
            )

    def record_rejects(
        self, *, run_id: str, stream: str, rejects: pa.Table, stage: str
    ) -> pa.Table:
        """Rows refused (``REJECTS``), at ``stage`` (validation, api, job). A row this run
        refused already (an earlier attempt of the file that dlt retried) is recorded once:
        its latest refusal replaces the earlier one. Returns the rejects not recorded before
        (what a run's counters may add)."""
        if rejects.num_rows == 0:
            return rejects
        self._may_clear()
        same = (
            "r.row_number IS NOT DISTINCT FROM rejects.row_number "
            "AND r.contact_key IS NOT DISTINCT FROM rejects.contact_key "
            'AND r."column" IS NOT DISTINCT FROM rejects."column"'
        )
        earlier = "rejects.run_id = ? AND rejects.stream = ? AND rejects.stage = ?"
        with self.workspace() as cur, transaction(cur):
            cur.register("r", rejects.select(REJECTS.names))
            fresh = cur.sql(
                f"SELECT * FROM r WHERE NOT EXISTS (SELECT 1 FROM rejects WHERE {earlier} "
                f"AND {same})",
                params=[run_id, stream, stage],
            ).to_arrow_table()
            cur.execute(
                f"DELETE FROM rejects WHERE {earlier} AND EXISTS (SELECT 1 FROM r WHERE {same})",
                [run_id, stream, stage],
            )
            cur.execute(
                'INSERT INTO rejects SELECT ?, ?, row_number, contact_key, "column", reason, ?, '
                "now() FROM r",
                [run_id, stream, stage],
            )
            if stage == "api":
                # The contact's latest send is refused: a job of this run that failed an
                # earlier send of it (an earlier attempt) is no longer its outcome.
                cur.execute(
                    "DELETE FROM rejects WHERE run_id = ? AND stage = 'job' AND contact_key IN "
                    "(SELECT contact_key FROM r) AND contact_key IN ("
                    + _SENT_BY_RUN.format("contacts")
                    + " AND p.stream = ?)",
                    [run_id, run_id, stream],
                )
        return fresh

    def refusals(self, run_id: str) -> tuple[int, list[tuple[str, str, int]]]:
        """The run's refusals by SendGrid as they stand (a later attempt's acceptance
        supersedes an earlier refusal): the rows refused by a 400, and (stage, SendGrid's
        reason, count) for those and for the contacts failed in jobs."""
        where = f"WHERE run_id = ? AND stage IN {_BY_SENDGRID}"
        rows = self._rows(
            "SELECT count(DISTINCT row_number) FILTER (WHERE stage = 'api') FROM rejects " + where,
            [run_id],
        )
        by_reason = self._rows(
            f"SELECT stage, reason, count(*) FROM rejects {where} GROUP BY ALL ORDER BY ALL",
            [run_id],
        )
        return int(rows[0][0]), [(str(s), str(r), int(n)) for s, r, n in by_reason]

    # -- jobs --------------------------------------------------------------------------------

    def record_job_outcome(
        self,
        job: dict[str, Any],
        *,
        failed: pa.Table | None,
        contacts_status: ContactStatus,
        note: str | None = None,
    ) -> None:
        """A finished job: its counts and outcome, and the contacts it failed.

        ``failed`` (``FAILED_IN_JOB``) are the contacts SendGrid refused in the job; every
        other contact of the job gets ``contacts_status`` (``accepted``, or ``unconfirmed``
        when the errors could not be read), written once on the job.
        """
        with self.workspace() as cur, transaction(cur):
            seqs = self._end_jobs(cur, [job], contacts_status, note)
            if failed is not None and failed.num_rows and seqs:
                cur.register("failed", failed.select(["contact_key", "reason", "permanent"]))
                cur.execute(
                    f"UPDATE contacts SET status = '{ContactStatus.FAILED}', reason = f.reason, "
                    "permanent = f.permanent FROM failed f WHERE contacts.seq = ? "
                    "AND contacts.contact_key = f.contact_key",
                    [seqs[0]],
                )
            self._record_identities(cur, [job["id"]], seqs)

    def record_job_outcomes(self, jobs: Sequence[dict[str, Any]]) -> None:
        """Finished jobs that failed no contact (``record_job_outcome`` of each with no
        ``failed`` and ``accepted``), in one transaction: one per job was 3-4 ms, 48 of them
        for 1M contacts."""
        if not jobs:
            return
        with self.workspace() as cur, transaction(cur):
            seqs = self._end_jobs(cur, jobs, ContactStatus.ACCEPTED, None)
            self._record_identities(cur, [job["id"] for job in jobs], seqs)

    def _end_jobs(
        self,
        cur: duckdb.DuckDBPyConnection,
        jobs: Sequence[dict[str, Any]],
        contacts_status: ContactStatus,
        note: str | None,
    ) -> list[int]:
        """Within a transaction: the jobs' rows say how they ended; returns the requests'
        ``seq`` of those sent (a job never sent carries no contact)."""
        ended = pa.Table.from_pylist(
            [{name: job[name] for name in _ENDED.names} for job in jobs], schema=_ENDED
        )
        cur.register("ended", ended)
        cur.execute(
            "UPDATE jobs SET status = e.status, created_count = e.created_count, "
            "updated_count = e.updated_count, errored_count = e.errored_count, "
            "errors_url = e.errors_url, note = ?, finished_at = now(), contacts_status = ? "
            "FROM ended e WHERE jobs.job_id = e.id",
            [note, str(contacts_status)],
        )
        seqs = [
            int(seq)
            for (seq,) in cur.execute(
                "SELECT seq FROM requests WHERE job_id IN (SELECT id FROM ended) "
                "AND seq IS NOT NULL"
            ).fetchall()
        ]
        cur.unregister("ended")
        if seqs and self._has_legacy_status(cur):
            cur.execute(
                f"UPDATE contacts SET status = ? WHERE {_seqs_sql(seqs)} "
                f"AND status = '{ContactStatus.SENT}'",
                [str(contacts_status)],
            )
        return seqs

    def _record_identities(
        self, cur: duckdb.DuckDBPyConnection, job_ids: list[str], seqs: list[int]
    ) -> None:
        """What SendGrid now holds for each contact the jobs carried with several
        identifiers (none to look for in jobs this process sent with one)."""
        if not seqs or all(job_id in self._jobs_without_ids for job_id in job_ids):
            return
        cur.execute(
            "INSERT OR REPLACE INTO identities SELECT contact_key, "
            "json_extract_string(ids, '$.email'), "
            "json_extract_string(ids, '$.phone_number_id'), "
            "json_extract_string(ids, '$.external_id'), "
            "json_extract_string(ids, '$.anonymous_id') "
            f"FROM contacts WHERE {_seqs_sql(seqs)} AND ids IS NOT NULL "
            f"AND coalesce(status, '') <> '{ContactStatus.FAILED}'"
        )

    def _has_legacy_status(self, cur: duckdb.DuckDBPyConnection) -> bool:
        """Whether contacts written before schema 6 carry their own 'sent' (newer rows have no
        status until their job fails them, and nothing writes 'sent' any more: once none is
        left, none comes back)."""
        if self._legacy_status:
            sent = f"SELECT count(*) FROM contacts WHERE status = '{ContactStatus.SENT}'"
            self._legacy_status = _count(cur, sent) > 0
        return self._legacy_status

    def record_job_failures_as_rejects(self, *, run_id: str, job_id: str) -> dict[str, int]:
        """Copy a job's failed contacts into the rejects table of this run (``record_rejects``:
        once per contact and run); return SendGrid's reasons of those this run had not seen
        fail before (a job of an earlier attempt of the file dlt retried may have failed them
        already), with their counts."""
        where, params = self._of_job(job_id)
        stream = self._first("SELECT stream FROM requests WHERE job_id = ?", [job_id])
        if stream is None:
            return {}
        with self.workspace() as cur:
            failed = cur.sql(
                'SELECT NULL::BIGINT AS row_number, contact_key, NULL::VARCHAR AS "column", '
                f"reason FROM contacts WHERE {where} AND status = ?",
                params=[*params, ContactStatus.FAILED.value],
            ).to_arrow_table()
        fresh = self.record_rejects(
            run_id=run_id, stream=str(stream[0]), rejects=failed.cast(REJECTS), stage="job"
        )
        counts = pc.value_counts(fresh["reason"]).to_pylist() if fresh.num_rows else []
        return {str(c["values"]): int(c["counts"]) for c in counts}

    def count_job_contacts(self, job_id: str, contacts: pa.Table) -> int:
        """How many of these contact keys (``contact_key``) the job carried."""
        if contacts.num_rows == 0:
            return 0
        where, params = self._of_job(job_id, "c.")
        with self.workspace() as cur:
            cur.register("named", contacts.select(["contact_key"]))
            rows = cur.execute(
                f"SELECT count(DISTINCT c.contact_key) FROM contacts c JOIN named n "
                f"ON n.contact_key = c.contact_key WHERE {where}",
                params,
            ).fetchall()
        return int(rows[0][0])

    def job_contact_count(self, job_id: str, status: ContactStatus) -> int:
        where, params = self._of_job(job_id)
        rows = self._rows(
            f"SELECT count(*) FROM contact_status WHERE {where} AND status = ?",
            [*params, str(status)],
        )
        return int(rows[0][0]) if rows else 0

    def _of_job(self, job_id: str, prefix: str = "") -> tuple[str, list[Any]]:
        """A filter on a job's contacts that DuckDB can serve by skipping row groups."""
        rows = self._rows("SELECT seq FROM requests WHERE job_id = ?", [job_id])
        if not rows or rows[0][0] is None:
            return "false", []  # never sent, so no contact rides on it
        return f"{prefix}seq = ?", [rows[0][0]]

    # -- runs --------------------------------------------------------------------------------

    def start_run(self, run_id: str, stream: str) -> None:
        self._write(
            "INSERT OR IGNORE INTO runs (run_id, stream, started_at) VALUES (?, ?, now())",
            [run_id, stream],
        )

    def finish_run(self, run_id: str, summary: dict[str, Any]) -> None:
        self._write(
            "UPDATE runs SET finished_at = now(), summary = ? WHERE run_id = ?",
            [json.dumps(summary), run_id],
        )

    def adopt_killed_attempt(self, run_id: str, file_key: str) -> bool:
        """The ``sent`` counters an attempt of the run kept with its last recorded request
        (``record_sent``'s ``progress``) but never saved as an attempt: it was killed
        (SIGKILL, a lost machine). They become an attempt of ``file_key``, so that the run's
        summary counts what it sent; the next attempt's plan takes those rows for unchanged.
        Returns whether there was one."""
        with self.workspace() as cur, transaction(cur):
            left = cur.execute(
                "SELECT value FROM meta WHERE prefix(key, ?) ORDER BY key DESC LIMIT 1",
                [_attempt_key(run_id)],
            ).fetchone()
            if left is None:
                return False
            row = cur.execute(
                "SELECT plan, sent, attempts FROM run_files WHERE run_id = ? AND file_key = ?",
                [run_id, file_key],
            ).fetchone()
            plan = row[0] if row else json.dumps({})
            earlier = [] if row is None else [json.loads(row[1])]
            sent = json.dumps({"attempts": [*_attempts(earlier), json.loads(left[0])]})
            cur.execute(
                "INSERT OR REPLACE INTO run_files VALUES (?, ?, ?, ?, ?)",
                [run_id, file_key, plan, sent, (row[2] if row else 0) + 1],
            )
            cur.execute("DELETE FROM meta WHERE prefix(key, ?)", [_attempt_key(run_id)])
        return True

    def record_file_attempt(
        self, run_id: str, file_key: str, plan: dict[str, Any], sent: dict[str, Any]
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """One attempt at one file of a run: its ``plan`` counters replace the file's earlier
        ones (each attempt reads the whole file), its ``sent`` counters add to them (each
        attempt sent other contacts), and the progress it kept is dropped. Returns every
        file's (plan, sent) of the run."""
        with self.workspace() as cur, transaction(cur):
            cur.execute("DELETE FROM meta WHERE prefix(key, ?)", [_attempt_key(run_id)])
            row = cur.execute(
                "SELECT sent, attempts FROM run_files WHERE run_id = ? AND file_key = ?",
                [run_id, file_key],
            ).fetchone()
            earlier = [] if row is None else [json.loads(row[0])]
            cur.execute(
                "INSERT OR REPLACE INTO run_files VALUES (?, ?, ?, ?, ?)",
                [
                    run_id,
                    file_key,
                    json.dumps(plan),
                    json.dumps({"attempts": [*_attempts(earlier), sent]}),
                    (row[1] if row else 0) + 1,
                ],
            )
            rows = cur.execute(
                "SELECT plan, sent FROM run_files WHERE run_id = ? ORDER BY file_key", [run_id]
            ).fetchall()
        return [(json.loads(p), json.loads(s)) for p, s in rows]

    def prune_runs(self, stream: str, keep: int) -> None:
        """Keep the rejects and per-file counters (and a killed attempt's) of the stream's
        latest ``keep`` runs only: a row refused on every run would otherwise be stored again
        on every run."""
        latest = (
            "SELECT run_id FROM runs WHERE stream = ? ORDER BY started_at DESC, run_id DESC LIMIT ?"
        )
        with self.workspace() as cur, transaction(cur):
            cur.execute(
                f"DELETE FROM rejects WHERE stream = ? AND run_id NOT IN ({latest})",
                [stream, stream, keep],
            )
            cur.execute(
                "DELETE FROM run_files WHERE run_id IN (SELECT run_id FROM runs WHERE stream = ?) "
                f"AND run_id NOT IN ({latest})",
                [stream, stream, keep],
            )
            # The counters a killed attempt kept, of a run no attempt completed since.
            cur.execute(
                "DELETE FROM meta WHERE prefix(key, 'attempt.') AND EXISTS (SELECT 1 FROM runs "
                f"r WHERE r.stream = ? AND r.run_id NOT IN ({latest}) AND "
                "prefix(meta.key, 'attempt.' || r.run_id || '.'))",
                [stream, stream, keep],
            )

    def report_once(self, run_id: str, what: str) -> bool:
        """True the first time ``what`` is reported for ``run_id``, False ever after."""
        key = f"reported.{what}.{run_id}"
        if self._first("SELECT 1 FROM meta WHERE key = ?", [key]):
            return False
        self._write("INSERT INTO meta VALUES (?, 'true')", [key])
        return True

    def run_summary(self, run_id: str) -> dict[str, Any] | None:
        row = self._first("SELECT summary FROM runs WHERE run_id = ?", [run_id])
        return None if row is None or row[0] is None else dict(json.loads(row[0]))


def _attempts(earlier: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for doc in earlier for a in doc.get("attempts", [])]
