"""Rows the check refused, remembered so that a rerun need not read and check them again.

A row's fingerprint (``contact_sql``) digests its source values as they arrive under the
signature of everything that decides whether a row is ok (mapping, field types, policy,
versions): the same key and fingerprint are the same values under the same rules, so the
check refuses them again, with the same problems. A rerun finds most rows unchanged by
fingerprint and reads the source a second time only for the rest (``plan``); a row refused
last time is never unchanged (it was never sent), so without this memory a rerun whose only
other rows are last run's refusals read the whole source again to check them (the benchmark's
1% of bad rows: 0.4 s of a 1M-row unchanged rerun).

* ``match_sql(relation, stream, checks)``: the rows of ``relation`` (``row_number``,
  ``contact_key``, ``fingerprint``) remembered as refused under the checks of digest
  ``checks`` (``ContactSql.checks_digest``), with their problem masks (``masks``, in the order
  of ``ContactSql.problem_columns``); None when nothing of ``stream`` is remembered (no join).
  The fingerprint's signature already tells other checks apart; the digest makes sure masks
  are never read against checks they were not taken under.
* ``remember(run_id, stream, rows)``: the rows a plan of ``run_id`` found refused by the check
  (``contact_key``, ``fingerprint``, ``checks``, ``masks``). What another run remembered of
  the table is dropped: the memory holds the latest run's refusals, so it stays as small as
  one run's rejects (an incremental load forgets earlier runs' refusals, which costs only
  their check should those rows come again). A row without an identifier is remembered
  with a null key.

Only a cache: losing it (a crash between the rejects and this write, an older state file)
costs a second read, never a wrong outcome. Rows with the identifier rule in play are not
remembered: their outcome depends on what SendGrid holds, not on their values alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

from sendgrid_destination.state.duck import transaction

if TYPE_CHECKING:
    from sendgrid_destination.state.store import StateStore

# One row per (stream, contact_key, fingerprint): ``remember`` replaces, the match groups.
_SAME = "i.contact_key IS NOT DISTINCT FROM r.contact_key AND i.fingerprint = r.fingerprint"


class InvalidRowMemory:
    def __init__(self, store: StateStore) -> None:
        self._store = store

    def match_sql(self, relation: str, stream: str, checks: int) -> tuple[str, list[Any]] | None:
        """See the module docstring."""
        with self._store.workspace() as cur:
            ((count,),) = cur.execute(
                "SELECT count(*) FROM invalid_rows WHERE stream = ?", [stream]
            ).fetchall()
        if not count:
            return None
        quoted = '"' + relation.replace('"', '""') + '"'
        return (
            f"SELECT r.row_number, i.masks FROM {quoted} r JOIN (SELECT contact_key, "
            "fingerprint, any_value(masks) AS masks FROM invalid_rows WHERE stream = ? "
            f"AND checks = ? GROUP BY contact_key, fingerprint) i ON {_SAME}",
            [stream, checks],
        )

    def remember(self, run_id: str, stream: str, rows: pa.Table) -> None:
        """See the module docstring."""
        with self._store.workspace() as cur:
            ((stale,),) = cur.execute(
                "SELECT count(*) FROM invalid_rows WHERE stream = ? AND run_id <> ?",
                [stream, run_id],
            ).fetchall()
            if not stale and rows.num_rows == 0:
                return
            with transaction(cur):
                cur.execute(
                    "DELETE FROM invalid_rows WHERE stream = ? AND run_id <> ?", [stream, run_id]
                )
                if rows.num_rows:
                    self._replace(cur, run_id, stream, rows)

    @staticmethod
    def _replace(cur: Any, run_id: str, stream: str, rows: pa.Table) -> None:
        cur.register("r", rows.select(["contact_key", "fingerprint", "checks", "masks"]))
        try:
            # An attempt of the same run (dlt retrying the file) remembered these already.
            cur.execute(
                "DELETE FROM invalid_rows i WHERE stream = ? AND EXISTS "
                f"(SELECT 1 FROM r WHERE {_SAME})",
                [stream],
            )
            cur.execute(
                "INSERT INTO invalid_rows (stream, contact_key, fingerprint, checks, masks, "
                "run_id) SELECT DISTINCT ON (contact_key, fingerprint) ?, contact_key, "
                "fingerprint, checks, masks, ? FROM r",
                [stream, run_id],
            )
        finally:
            cur.unregister("r")
