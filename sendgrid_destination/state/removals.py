"""The state's side of removals: which contacts left a table, who created them, what is queued
and what is in flight. Part of the state store (it owns the ``load_keys`` and ``removals``
tables and the ``first_seq`` / ``lists`` columns of ``contacts``; see ``state.schema``).

``RemovalLedger(store)``:

* ``record_load_keys``: the keys of one job file's rows (and whether each is flagged by the
  hard-delete column), written by the plan through the state's workspace;
* ``candidates``: once a table's last file is loaded, its contacts that left (no row in any of
  the load's files, when the load is the whole source) or are flagged, each with what decides
  its fate: ``waiting`` (a job carrying it has not ended), ``created`` (this sync created it,
  the rule in ``state.schema``), ``shared`` (another table of the state sends it too) and
  ``lists`` (the lists this table put it in that no other table did);
* ``queued_drops``: lists contacts still in the table left (their rows no longer name them);
* ``record_sent`` / ``finish_jobs``: DELETEs accepted (their job ids, after the 202s), and
  their jobs' end: a deletion forgets its contacts, a removal of contacts that left forgets them
  once their last removal is done and none failed, a failed job puts dropped lists back in the
  queue (and lets the next load decide again about contacts that left: ``clear_failed``);
* ``forget``: contacts the table no longer tracks (gone from SendGrid, or nothing to do).

All set operations are SQL over the state's tables; Arrow tables carry keys in and out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb
import pyarrow as pa

from sendgrid_destination.contact_model import IDENTIFIERS
from sendgrid_destination.schemas import SENT_REMOVALS
from sendgrid_destination.state.duck import transaction
from sendgrid_destination.state.schema import ContactStatus

if TYPE_CHECKING:
    from sendgrid_destination.state.store import StateStore

# Removal rows: ``status`` queued (a dropped list not yet sent), sent (its job not ended),
# failed (below).
QUEUED = "queued"
SENT = "sent"
# A removal of a contact that left whose job failed: kept until the table is judged again, so
# that its other removals succeeding do not forget the contact (which would leave it in that
# list for good); never sent itself (the next judgment decides the contact again).
FAILED = "failed"
# A contact that left whose removal SendGrid's search did not find: gone, or not searchable
# yet (search lags behind jobs by seconds to minutes). Forgotten when a later load's search
# misses it again; never sent.
MISSED = "missed"
# A table's misses of the contacts a relation (``keys``: ``contact_key``) names.
_DROP_MISSED = (
    f"DELETE FROM removals WHERE stream = ? AND status = '{MISSED}' AND "
    "contact_key IN (SELECT contact_key FROM {keys})"
)
# Every removal in flight bears on an upsert of its contact, whichever table sent it: a
# deletion takes the contact out of the account, a list removal takes it out of a list the
# upsert may name (another table's row, say). SendGrid keeps no order between jobs: a removal
# landing after the upsert undid it, for good. So the upsert waits for the removal's job.


@dataclass(frozen=True)
class EndedJob:
    """A removal job that ended: completed (``succeeded``) or not, and why (``note``)."""

    job_id: str
    succeeded: bool
    note: str | None = None


# ``tracked_as``: per row of ``sg_coming``, the contacts it matches (``identities_sql``'s
# rule: through ``identities``, else a contact tracked under that very key), equi-joins only.
_BY_IDENTITY = " UNION ".join(
    f"SELECT c.row, i.contact_key FROM sg_coming c JOIN identities i "
    f"ON c.contact_key = '{name}:' || i.{name}"
    for name in IDENTIFIERS
)
_IDENTITY_KEYS = " UNION ".join(
    f"SELECT '{name}:' || {name} AS k FROM identities WHERE {name} IS NOT NULL"
    for name in IDENTIFIERS
)
_TRACKED_AS = f"""
    WITH matched AS (
        {_BY_IDENTITY}
        UNION SELECT c.row, c.contact_key FROM sg_coming c
        WHERE c.contact_key IN (SELECT contact_key FROM contacts)
            AND c.contact_key NOT IN ({_IDENTITY_KEYS})),
    ambiguous AS (SELECT row FROM matched GROUP BY row HAVING count(DISTINCT contact_key) > 1)
    SELECT contact_key AS k FROM sg_coming WHERE row NOT IN (SELECT row FROM ambiguous)
    UNION SELECT contact_key FROM matched WHERE row NOT IN (SELECT row FROM ambiguous)
"""


def ids_sql(sql: str) -> str:
    """The list IDs of a comma-separated text (``lists``, ``list_scope``) as a SQL list."""
    return f"list_filter(string_split(coalesce({sql}, ''), ','), lambda x: x <> '')"


class RemovalLedger:
    def __init__(self, store: StateStore) -> None:
        self._store = store

    @property
    def _con(self) -> duckdb.DuckDBPyConnection:
        return self._store.con

    # -- the load's keys -----------------------------------------------------------------

    @staticmethod
    def record_load_keys(
        cur: duckdb.DuckDBPyConnection,
        relation: str,
        *,
        run_id: str,
        stream: str,
        file_key: str,
        flagged_only: bool,
    ) -> None:
        """Keep the keys of ``relation`` (``contact_key``, ``flagged``: one job file's last
        rows) for this run; keys of other runs of the table are stale (an aborted load). A
        null ``flagged`` is a contact present without a row of its own (one a refused row
        matching several contacts matches): it is not gone, and its own rows' flags decide."""
        quoted = '"' + relation.replace('"', '""') + '"'
        cur.execute(
            "DELETE FROM load_keys WHERE stream = ? AND (run_id <> ? OR file_key = ?)",
            [stream, run_id, file_key],
        )
        cur.execute(
            "INSERT INTO load_keys SELECT ?, ?, ?, contact_key, flagged FROM "
            f"{quoted} WHERE contact_key IS NOT NULL{' AND flagged' if flagged_only else ''}",
            [run_id, stream, file_key],
        )

    def clear_load_keys(self, run_id: str, stream: str) -> None:
        self._con.execute("DELETE FROM load_keys WHERE run_id = ? AND stream = ?", [run_id, stream])

    # -- deciding ------------------------------------------------------------------------

    def tracked(self, stream: str) -> int:
        """How many contacts the state holds for this table."""
        rows = self._con.execute("SELECT count(*) FROM contacts WHERE stream = ?", [stream])
        return int(rows.fetchall()[0][0])

    def tracked_before(self, run_id: str, stream: str) -> int:
        """How many of the table's contacts earlier runs sent (this run's files excluded)."""
        rows = self._con.execute(
            "SELECT count(*) FROM contacts c JOIN requests r ON r.seq = c.seq "
            "WHERE c.stream = ? AND r.run_id <> ?",
            [stream, run_id],
        )
        return int(rows.fetchall()[0][0])

    def candidates(self, run_id: str, stream: str, *, whole_source: bool) -> pa.Table:
        """The table's contacts that left the source (``whole_source``: no row in this run's
        files) or whose last row is flagged: ``contact_key``, ``cause`` (``left`` or
        ``flagged``), ``waiting``, ``created``, ``shared`` and ``lists`` (module doc)."""
        left = "k.contact_key IS NULL" if whole_source else "false"
        sql = f"""
            WITH keys AS (
                SELECT contact_key, bool_and(flagged) AS flagged FROM load_keys
                WHERE run_id = ? AND stream = ? GROUP BY contact_key),
            others AS (
                SELECT contact_key, flatten(list({ids_sql("lists")})) AS lists
                FROM contacts WHERE stream <> ? GROUP BY contact_key),
            busy AS (
                SELECT DISTINCT contact_key FROM removals WHERE stream = ? AND status = '{SENT}'),
            missed AS (
                SELECT contact_key, any_value(cause) AS cause FROM removals
                WHERE stream = ? AND status = '{MISSED}' GROUP BY contact_key)
            SELECT c.contact_key,
                CASE WHEN k.contact_key IS NULL THEN coalesce(m.cause, 'left') ELSE 'flagged' END
                    AS cause,
                coalesce(st.status = '{ContactStatus.SENT}', false)
                    OR coalesce(fj.status = 'pending', false)
                    OR b.contact_key IS NOT NULL AS waiting,
                coalesce(fj.status = 'completed' AND fj.requested_count > 0
                    AND fj.created_count >= fj.requested_count
                    AND coalesce(fj.errored_count, 0) = 0, false) AS created,
                o.contact_key IS NOT NULL AS shared,
                array_to_string(list_filter({ids_sql("c.lists")},
                    lambda x: NOT list_contains(coalesce(o.lists, []), x)), ',') AS lists
            FROM contacts c
            LEFT JOIN keys k ON k.contact_key = c.contact_key
            LEFT JOIN contact_status st ON st.stream = c.stream AND st.contact_key = c.contact_key
            LEFT JOIN requests fr ON fr.seq = c.first_seq
            LEFT JOIN jobs fj ON fj.job_id = fr.job_id
            LEFT JOIN others o ON o.contact_key = c.contact_key
            LEFT JOIN busy b ON b.contact_key = c.contact_key
            LEFT JOIN missed m ON m.contact_key = c.contact_key
            WHERE c.stream = ? AND (({left}) OR coalesce(k.flagged, false)
                OR (m.contact_key IS NOT NULL AND k.contact_key IS NULL))
            ORDER BY c.contact_key
        """
        params = [run_id, stream, stream, stream, stream, stream]
        with self._store.workspace() as cur:
            return cur.sql(sql, params=params).to_arrow_table()

    def tracked_as(self, keys_of: Callable[[duckdb.DuckDBPyConnection], pa.Table]) -> pa.Array:
        """The keys ``keys_of`` gives (``row``, ``contact_key``: ``<identifier>:<value>``, on
        a cursor of the state), with the keys of the contacts the state knows by any of those
        identifiers (``identities``: a contact tracked under its email, reached by its
        external_id); but none of a row whose identifiers belong to several contacts the
        state knows: refused when its table loads, it stands for none of them."""
        with self._store.workspace() as cur:
            keys = keys_of(cur)
            if keys.num_rows == 0:
                return pa.array([], pa.string())
            cur.register("sg_coming", keys.select(["row", "contact_key"]))
            try:
                found = cur.sql(_TRACKED_AS).to_arrow_table()
            finally:
                cur.unregister("sg_coming")
        return found["k"].combine_chunks()

    def queued_drops(self, stream: str) -> pa.Table:
        """``contact_key``, ``list_id`` of the lists contacts left while still in the table,
        and ``held``: another table's last send of the contact put it in that list, so it
        stays (as for contacts that left: ``candidates``)."""
        return self._con.sql(
            "SELECT DISTINCT r.contact_key, r.list_id, EXISTS (SELECT 1 FROM contacts o "
            "WHERE o.stream <> r.stream AND o.contact_key = r.contact_key "
            f"AND list_contains({ids_sql('o.lists')}, r.list_id)) AS held FROM removals r "
            f"WHERE r.stream = ? AND r.status = '{QUEUED}' ORDER BY r.list_id, r.contact_key",
            params=[stream],
        ).to_arrow_table()

    # -- recording -----------------------------------------------------------------------

    def record_sent(self, *, run_id: str, stream: str, sent: pa.Table) -> None:
        """After DELETEs' 202s, in one transaction: ``sent`` (``contact_key``,
        ``contact_id``, ``cause``, ``job_id``, ``list_id``) rides on its ``job_id``; a
        deletion where ``list_id`` is null, else a list removal. Their queued rows go."""
        if sent.num_rows == 0:
            return
        with self._store.workspace() as cur, transaction(cur):
            cur.register("gone", sent.select(SENT_REMOVALS.names))
            cur.execute(
                f"DELETE FROM removals r USING gone g WHERE r.stream = ? AND r.status = '{QUEUED}' "
                "AND r.contact_key = g.contact_key AND r.list_id IS NOT DISTINCT FROM g.list_id",
                [stream],
            )
            cur.execute(
                "INSERT INTO removals (stream, contact_key, action, list_id, cause, "
                "contact_id, job_id, status, run_id, queued_at) SELECT ?, contact_key, "
                "CASE WHEN list_id IS NULL THEN 'delete' ELSE 'unlist' END, list_id, cause, "
                f"contact_id, job_id, '{SENT}', ?, now() FROM gone",
                [stream, run_id],
            )

    def in_flight(self) -> list[str]:
        """The jobs of DELETEs sent and not yet ended, of every table (each bears on an
        upsert of its contacts, see above), oldest first."""
        rows = self._con.execute(
            f"SELECT job_id FROM removals WHERE status = '{SENT}' "
            "GROUP BY job_id ORDER BY min(queued_at), job_id"
        ).fetchall()
        return [str(r[0]) for r in rows]

    def any_in_flight(self) -> bool:
        rows = self._con.execute(f"SELECT count(*) FROM removals WHERE status = '{SENT}'")
        return bool(rows.fetchall()[0][0])

    def sent_by_other_tables(self, stream: str) -> dict[str, tuple[str, str]]:
        """Of the jobs ``in_flight()`` returns, those another table sent: job -> (table,
        ``deletion`` or ``list removal``)."""
        rows = self._con.execute(
            "SELECT job_id, any_value(stream), bool_or(action = 'delete') FROM removals "
            f"WHERE status = '{SENT}' AND stream <> ? GROUP BY job_id",
            [stream],
        ).fetchall()
        return {str(j): (str(s), "deletion" if d else "list removal") for j, s, d in rows}

    def job_size(self, job_id: str) -> tuple[str, int]:
        """A removal job's action and how many contacts (or memberships) it carried."""
        row = self._con.execute(
            "SELECT any_value(action), count(*) FROM removals WHERE job_id = ?", [job_id]
        ).fetchone()
        return (str(row[0]), int(row[1])) if row and row[0] else ("unknown", 0)

    def finish_jobs(self, ended: Sequence[EndedJob]) -> None:
        """Removal jobs that ended, in one transaction. Succeeded: a deletion forgets its
        contacts; contacts that left are forgotten once their last removal is done; dropped
        lists leave the queue. Failed: dropped lists go back to the queue, contacts that left
        are decided again next load."""
        if not ended:
            return
        with self._store.workspace() as cur, transaction(cur):
            cur.register(
                "ended",
                pa.table(
                    {
                        "job_id": [e.job_id for e in ended],
                        "succeeded": [e.succeeded for e in ended],
                        "note": pa.array([e.note for e in ended], pa.string()),
                    }
                ),
            )
            # Failures first: a list back in the queue keeps its contact tracked.
            cur.execute(
                f"UPDATE removals SET status = '{QUEUED}', job_id = NULL, contact_id = NULL, "
                "note = e.note FROM ended e WHERE removals.job_id = e.job_id "
                "AND NOT e.succeeded AND removals.cause = 'dropped'"
            )
            cur.execute(
                f"UPDATE removals SET status = '{FAILED}', job_id = NULL, contact_id = NULL, "
                "note = e.note FROM ended e WHERE removals.job_id = e.job_id AND NOT e.succeeded"
            )
            if any(e.succeeded for e in ended):
                self._succeeded(cur)

    @staticmethod
    def _succeeded(cur: duckdb.DuckDBPyConnection) -> None:
        # The jobs' contacts the state stops tracking (deleted, or gone from the table) that
        # no other removal still waits on. Only the jobs' own keys are looked up: comparing
        # with every removal and every contact per finished job made thousands of list
        # removals quadratic. Jobs of list removals only (a contact left a list) have none.
        done = "SELECT job_id FROM ended WHERE succeeded"
        untracked = (
            f"SELECT d.stream, d.contact_key FROM removals d WHERE d.job_id IN ({done}) "
            "AND (d.action = 'delete' OR d.cause <> 'dropped') AND NOT EXISTS (SELECT 1 FROM "
            "removals o WHERE o.stream = d.stream AND o.contact_key = d.contact_key "
            f"AND o.status IN ('{QUEUED}', '{SENT}', '{FAILED}') "
            f"AND (o.job_id IS NULL OR o.job_id NOT IN ({done})))"
        )
        # A deleted contact's identifiers are free again in SendGrid.
        cur.execute(
            "DELETE FROM identities WHERE contact_key IN (SELECT contact_key FROM removals "
            f"WHERE job_id IN ({done}) AND action = 'delete')"
        )
        gone = cur.execute(f"SELECT count(*) FROM ({untracked})").fetchall()
        if gone[0][0]:
            cur.execute(f"DELETE FROM contacts WHERE (stream, contact_key) IN ({untracked})")
        cur.execute(f"DELETE FROM removals WHERE job_id IN ({done})")

    def forget(self, stream: str, keys: pa.Table, *, gone: bool) -> None:
        """The table no longer tracks these contacts (``contact_key``); ``gone``: SendGrid no
        longer holds them either (their identifiers are free)."""
        if keys.num_rows == 0:
            return
        with self._store.workspace() as cur:
            cur.register("forgotten", keys.select(["contact_key"]))
            where = "contact_key IN (SELECT contact_key FROM forgotten)"
            cur.execute(f"DELETE FROM contacts WHERE stream = ? AND {where}", [stream])
            cur.execute(
                f"DELETE FROM removals WHERE stream = ? AND status IN ('{QUEUED}', '{FAILED}', "
                f"'{MISSED}') AND {where}",
                [stream],
            )
            if gone:
                cur.execute(f"DELETE FROM identities WHERE {where}")

    def missed_before(self, stream: str, run_id: str, keys: pa.Array) -> pa.Array:
        """Of these keys, those an earlier run's search missed too (``MISSED``)."""
        if len(keys) == 0:
            return keys
        with self._store.workspace() as cur:
            cur.register("sg_missing", pa.table({"contact_key": keys}))
            found = cur.sql(
                f"SELECT DISTINCT contact_key FROM removals WHERE stream = ? AND status = "
                f"'{MISSED}' AND run_id <> ? AND contact_key IN "
                "(SELECT contact_key FROM sg_missing)",
                params=[stream, run_id],
            ).to_arrow_table()
        return found["contact_key"].combine_chunks()

    def has_missed(self, stream: str) -> bool:
        """Whether a contact of the table waits for a second search (``MISSED``)."""
        rows = self._con.execute(
            f"SELECT count(*) FROM removals WHERE stream = ? AND status = '{MISSED}'", [stream]
        ).fetchall()
        return bool(rows[0][0])

    def drop_missed_back(self, run_id: str, stream: str) -> None:
        """Contacts a search missed whose rows are in this run's load, unflagged: back in the
        table, they are no longer to remove (a later leaving starts again from one miss)."""
        self._con.execute(
            f"DELETE FROM removals WHERE stream = ? AND status = '{MISSED}' AND contact_key IN "
            "(SELECT contact_key FROM load_keys WHERE run_id = ? AND stream = ? "
            "GROUP BY contact_key HAVING NOT coalesce(bool_and(flagged), false))",
            [stream, run_id, stream],
        ).fetchall()

    def record_missed(self, stream: str, run_id: str, missed: pa.Table) -> None:
        """Contacts (``contact_key``, ``action``, ``cause``) this run's search did not find,
        for the first time: kept, and looked up again by the next load."""
        if missed.num_rows == 0:
            return
        with self._store.workspace() as cur, transaction(cur):
            cur.register("sg_missed", missed.select(["contact_key", "action", "cause"]))
            cur.execute(_DROP_MISSED.format(keys="sg_missed"), [stream])
            cur.execute(
                "INSERT INTO removals (stream, contact_key, action, cause, status, run_id, "
                f"queued_at) SELECT ?, contact_key, action, cause, '{MISSED}', ?, now() "
                "FROM sg_missed",
                [stream, run_id],
            )

    def drop_missed(self, stream: str, keys: pa.Array) -> None:
        """These contacts were found after all: an earlier miss no longer counts."""
        if len(keys) == 0:
            return
        with self._store.workspace() as cur:
            cur.register("sg_found", pa.table({"contact_key": keys}))
            cur.execute(_DROP_MISSED.format(keys="sg_found"), [stream])

    def distrust(self, stream: str, keys: pa.Array) -> None:
        """These contacts of the table are about to be deleted or taken out of lists: their
        last send no longer says what SendGrid holds (``ContactStatus.UNCONFIRMED``)."""
        if len(keys) == 0:
            return
        with self._store.workspace() as cur:
            cur.register("distrusted", pa.table({"contact_key": keys}))
            cur.execute(
                f"UPDATE contacts SET status = '{ContactStatus.UNCONFIRMED}' WHERE stream = ? "
                "AND contact_key IN (SELECT contact_key FROM distrusted)",
                [stream],
            )

    def clear_failed(self, stream: str) -> None:
        """The table is judged again: the contacts whose removal failed are decided anew."""
        self._con.execute(
            f"DELETE FROM removals WHERE stream = ? AND status = '{FAILED}'", [stream]
        ).fetchall()

    def drop_queued(self, stream: str, pairs: pa.Table) -> None:
        """Queued list removals (``contact_key``, ``list_id``) with nothing left to do: the
        contact is not (or no longer) in SendGrid or in that list."""
        if pairs.num_rows == 0:
            return
        with self._store.workspace() as cur:
            cur.register("moot", pairs.select(["contact_key", "list_id"]))
            cur.execute(
                f"DELETE FROM removals WHERE stream = ? AND status = '{QUEUED}' AND "
                "(contact_key, list_id) IN (SELECT contact_key, list_id FROM moot)",
                [stream],
            )

    # -- reports -------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Removals not yet done, by status and action (``queued unlist``, ``sent delete``),
        for ``status``."""
        rows = self._con.execute(
            "SELECT status, action, count(*) FROM removals GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        return {f"{status} {action}": int(n) for status, action, n in rows}
