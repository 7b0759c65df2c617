"""The plan of a load: one SQL pass over all its rows decides what each row needs.

``Plan.build(store, sql, stream, rows)`` runs the check (``ContactSql.check``) over every row
once, into a temporary table of its narrow result (row number, key, problem masks,
fingerprint), in the state's workspace, and from that:

* of several rows with one contact key, all but the last are superseded (last row wins,
  before anything else: a superseded row is neither rejected nor sent);
* a contact whose last row the hard-delete column flags is neither rejected nor sent
  (``PlanCounts.flagged``): the ``on_last_rows`` hook sees every contact's last row first
  (``deletions`` keeps the keys of a table loaded whole, and the flagged ones);
* rows that fail the check become ``Plan.rejects``; the fields left out of rows that pass
  it (``on_invalid_value = "omit_field"``) become ``Plan.omitted``, in the same form;
* the rest are classified by the state store (``changes_sql``): a row unchanged by fingerprint
  goes no further and is never rendered; every other row stays in the plan with ``is_new``,
  ``prev_hash`` and ``pending``.

When the state already has contacts of the table (a rerun), the pass computes only each
row's key and fingerprint (``ContactSql.keys``: the fingerprint is of the source values as
they arrive, so no value is cleaned or checked), and the same steps run on that; then only the
rows not found unchanged are read again (``SourceRows.reader(only)``) and checked. Equivalent
(a stored fingerprint is of a row that was ok, and the same values under the same signature
are ok again) and, for a rerun of 1M rows of which few changed, about a third less work.
When those rows are no more than one read batch (``SourceRows.batch_rows``), the plan keeps
them as read, and ``rendered_batches`` renders them from memory: the source is read twice,
not three times.

The plan table is written in row order, so that ``render(batch, first_row)`` reads one batch's
rows back by range (DuckDB skips the other row groups), renders them and sets apart, through
the store's ``same_content``, those whose JSON is the one last sent. ``decide_again(contacts)``
runs the same classification over contacts already rendered (held back behind a pending job):
one path, one definition of "unchanged".

One scan of the source for the keys, not two: finding the superseded rows needs every row's
key, and computing keys (reading, trimming, lower-casing) was most of a separate duplicate
scan. One join per load, not one per batch: against a state of N contacts each join reads all
N, so per-batch joins made a 10M-row file quadratic. DuckDB spills the tables, the grouping
and the join beyond the state's memory limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass
from typing import Any, Protocol

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sendgrid_destination.arrow_utils import (
    BAD_TEXT_COLUMN,
    ROW_COLUMN,
    chunked,
    normalize_arrow,
)
from sendgrid_destination.contact_model import IDENTIFIERS
from sendgrid_destination.contact_sql import ContactSql, duplicate_keys, fill_column, ident
from sendgrid_destination.errors import CorruptStateError
from sendgrid_destination.identifiers import IdentifierPolicy
from sendgrid_destination.schemas import REJECTS, RENDERED
from sendgrid_destination.sliced_query import SlicedQuery
from sendgrid_destination.source_rows import SourceRows
from sendgrid_destination.state.invalid_rows import InvalidRowMemory

_TABLE = "sg_plan"
_CHECKED = "sg_checked"
_DUPLICATES = "sg_duplicates"
# What the state decides of a row or a rendered contact (``changes_sql``, ``decide_again``).
_DECIDED = "is_new, prev_hash, prev_sha256, pending, retry, refused_hash"
_PLANNED = f"row_number, fingerprint, {_DECIDED}"
_FILLS = ", ".join(ident(fill_column(name)) for name in IDENTIFIERS)


# Called once a plan knows each contact key's last row (a view in the state's workspace).
LastRowsHook = Callable[[duckdb.DuckDBPyConnection, str], None]


class PlanStore(Protocol):
    """What the plan needs of the state: a scratch workspace and its decisions."""

    path: Any

    def has_contacts(self, stream: str) -> bool: ...

    def workspace(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]: ...

    def changes_sql(
        self, relation: str, stream: str, run_id: str, *, checked: bool = True
    ) -> tuple[str, list[Any]]: ...

    def sent_in_run(self, run_id: str) -> bool: ...

    def forget_deferred_sql(self, relation: str, stream: str) -> tuple[str, list[Any]]: ...

    def identities_sql(
        self, relation: str, mapped: Sequence[str] = ...
    ) -> tuple[str, list[Any]]: ...

    def own_keys_sql(self, relation: str) -> str: ...

    def shared_keys_sql(self, relation: str, mapped: Sequence[str] = ...) -> str: ...

    def render_memory(self) -> AbstractContextManager[None]: ...

    @property
    def invalid_rows(self) -> InvalidRowMemory: ...

    def same_content(
        self, contacts: pa.Table, legacy_hash: Callable[[pa.ChunkedArray], pa.ChunkedArray]
    ) -> pa.Array: ...


@dataclass(frozen=True)
class Rendered:
    """Contacts decided and rendered (``RENDERED``, in row order)."""

    to_send: pa.Table
    unchanged: pa.Table  # rows whose JSON is the one last sent
    # Rows whose JSON is that of their send SendGrid refused for good: they wait for a
    # change of their data (found here when only their fingerprint changed).
    waits: pa.Table


@dataclass(frozen=True)
class PlanCounts:
    rows_read: int
    superseded: int  # rows replaced by a later row with the same contact key
    unchanged: int  # rows found unchanged by fingerprint (never rendered)
    to_render: int  # ok rows that the render must see
    # Of ``unchanged``: rows an earlier attempt of this run sent (dlt retried the file), which
    # that attempt counted already.
    sent_earlier: int = 0
    # Of ``unchanged``: rows whose last send SendGrid refused for good (a missing identifier,
    # a value it refuses): not sent again until their data changes.
    waiting_for_change: int = 0
    # Last rows of their contact flagged by the hard-delete column: neither sent nor refused.
    flagged: int = 0
    new: int = 0  # of ``to_render``: contacts the state has never sent (bulk imports count them)


class Plan:
    """A built plan; a context manager that drops its table on exit."""

    def __init__(
        self,
        store: PlanStore,
        sql: ContactSql,
        stream: str,
        run_id: str,
        rows: SourceRows,
        identifiers: IdentifierPolicy | None = None,
        on_last_rows: LastRowsHook | None = None,
    ) -> None:
        self._store = store
        # Shown each contact's last row (``contact_key``, ``flagged``) in the workspace.
        self._on_last_rows = on_last_rows
        # The checked rows that stand for their contact key (``_resolve_identifiers``).
        self._standing = _CHECKED
        self._shared_keys = False  # whether ``sg_shared_keys`` holds keys
        # Resolving rows against the identifiers SendGrid holds, when ``sql`` is compiled
        # for it (several identifiers in play).
        self._identifiers = identifiers if sql.identities else None
        self._sql = sql
        self._stream = stream
        self._run_id = run_id
        self._rows = rows
        # The rows the check read again, as read, when they are few (``_check_changed_rows``).
        self._checked_rows: pa.Table | None = None
        # The render's JSON is gathered in the state's memory: long values slice a batch.
        self._slices = SlicedQuery()
        self._exit = ExitStack()
        self._cur = self._exit.enter_context(store.workspace())
        self._exit.callback(self._cur.execute, f"DROP TABLE IF EXISTS {_TABLE}")

    @classmethod
    def build(
        cls,
        store: PlanStore,
        sql: ContactSql,
        stream: str,
        run_id: str,
        rows: SourceRows,
        identifiers: IdentifierPolicy | None = None,
        on_last_rows: LastRowsHook | None = None,
    ) -> Plan:
        """Plan ``rows`` of ``stream`` for run ``run_id`` (see the module docstring)."""
        plan = cls(store, sql, stream, run_id, rows, identifiers, on_last_rows)
        try:
            plan._build()
        except BaseException:
            plan.close()
            raise
        return plan

    def __enter__(self) -> Plan:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._exit.close()

    # -- building ----------------------------------------------------------------------------

    def _build(self) -> None:
        # With contacts of this table in the state, most rows of a load are usually unchanged:
        # find those by the fingerprint of their source values first, and check only the rest
        # (a second read of the source). A first load, or rows resolved against the identifiers
        # SendGrid holds, are checked whole in one pass.
        quick = self._identifiers is None and self._store.has_contacts(self._stream)
        self._scan_into(_CHECKED, self._sql.keys if quick else self._sql.check)
        if self._identifiers is not None:
            self._resolve_identifiers(self._identifiers)
        # A contact deferred by an earlier run that has a row in this load: the row decides.
        self._cur.execute(*self._store.forget_deferred_sql(self._standing, self._stream)).fetchall()
        superseded = self._find_duplicates()
        flagged = self._keep_last_rows(
            "c.row_number, c.contact_key, c.fingerprint" if quick else self._kept_columns()
        )
        sent_earlier = self._classify(quick=quick)
        if quick:
            self._check_changed_rows()
        ((kept_rows, to_render, waits, new),) = self._cur.execute(
            f"SELECT count(*) FILTER (WHERE NOT waits), count(*) FILTER (WHERE ok AND NOT waits), "
            "count(*) FILTER (WHERE waits), count(*) FILTER (WHERE ok AND NOT waits AND is_new) "
            f"FROM {_TABLE}"
        ).fetchall()
        rows_read = self._rows.rows_read
        self.counts = PlanCounts(
            rows_read,
            superseded,
            rows_read - superseded - int(kept_rows) - flagged,
            int(to_render),
            sent_earlier,
            int(waits),
            flagged,
            int(new),
        )
        self.rejects = self._rejects()
        self.invalid_rows = self._invalid_rows()
        with_problem = " OR ".join(f"{p} <> 0" for p in self._sql.problem_columns())
        self.omitted = self._problems(f"ok AND ({with_problem})")

    def _keep_last_rows(self, kept: str) -> int:
        """``sg_last``: the ``kept`` columns of each contact key's last row, unless the
        hard-delete column flags it; returns how many it flags. A row matching several
        contacts is kept beside them, never flagged: it is refused, standing for none."""
        cur = self._cur
        ambiguous = "c.ambiguous" if self._identifiers is not None else "false"
        cur.execute(
            f"CREATE OR REPLACE TEMP VIEW sg_final AS SELECT {kept}, "
            f"c.flagged AND NOT {ambiguous} AS flagged, {ambiguous} AS ambiguous "
            f"FROM {_CHECKED} c LEFT JOIN {_DUPLICATES} d ON d.contact_key = c.contact_key "
            f"WHERE d.last_row IS NULL OR c.row_number = d.last_row OR {ambiguous}"
        ).fetchall()
        # A contact whose last row the hard-delete column flags is neither sent nor refused:
        # it is deleted (``deletions``), like one whose row left a mirrored table.
        if self._on_last_rows is not None:
            present = "sg_final"
            if self._shared_keys:
                # Every contact an ambiguous row matches is present, flagged neither way (a
                # null flag): its own row, if any, decides whether its flag deletes it.
                present = "sg_present"
                cur.execute(
                    "CREATE OR REPLACE TEMP VIEW sg_present AS SELECT contact_key, "
                    "CASE WHEN NOT ambiguous THEN flagged END AS flagged FROM sg_final "
                    "UNION ALL SELECT contact_key, NULL FROM sg_shared_keys"
                ).fetchall()
            self._on_last_rows(cur, present)
        ((flagged,),) = cur.execute("SELECT count(*) FROM sg_final WHERE flagged").fetchall()
        cur.execute(
            "CREATE OR REPLACE TEMP VIEW sg_last AS SELECT * EXCLUDE (flagged, ambiguous) "
            "FROM sg_final WHERE NOT flagged"
        ).fetchall()
        return int(flagged)

    def _classify(self, *, quick: bool) -> int:
        """The plan table: the last rows the state does not find unchanged, and those that
        wait for a change of their data (few: kept to be counted, not rendered). Returns how
        many unchanged rows an earlier attempt of this run sent. ``quick``: the rows are not
        checked yet (their key stays, for ``_check_changed_rows``)."""
        cur = self._cur
        changes, params = self._store.changes_sql(
            "sg_last", self._stream, self._run_id, checked=not quick
        )
        dropped = "unchanged, this_run" if quick else "unchanged, this_run, contact_key"
        cur.execute(
            f"CREATE OR REPLACE TEMP TABLE {_TABLE} AS SELECT * EXCLUDE ({dropped}) "
            f"FROM ({changes}) WHERE NOT unchanged OR waits ORDER BY row_number",
            params,
        ).fetchall()
        sent_earlier = 0
        if self._store.sent_in_run(self._run_id):  # a retry: rarely worth a second join
            ((sent_earlier,),) = cur.execute(
                f"SELECT count(*) FROM ({changes}) WHERE unchanged AND this_run", params
            ).fetchall()
        cur.execute(
            "DROP VIEW sg_last; DROP VIEW IF EXISTS sg_present; DROP VIEW sg_final; "
            f"DROP VIEW IF EXISTS sg_standing; DROP TABLE {_CHECKED}; DROP TABLE {_DUPLICATES}"
        ).fetchall()
        return int(sent_earlier)

    def _scan_into(
        self,
        table: str,
        query: Callable[[str], str],
        only: np.ndarray | None = None,
        kept: list[pa.RecordBatch] | None = None,
    ) -> None:
        """``query`` (``ContactSql.check`` or ``keys``) over one read of the source, into
        ``table``; ``only``: the row numbers to read (sorted), else all; ``kept``: a list to
        which the rows read are added, as the query reads them."""
        reader = self._rows.reader(only)
        if kept is not None:
            reader = pa.RecordBatchReader.from_batches(reader.schema, _kept(reader, kept))
        self._cur.register("plan_src", reader)
        try:
            self._cur.execute(
                f"CREATE OR REPLACE TEMP TABLE {table} AS {query('plan_src')}"
            ).fetchall()
        finally:
            self._cur.unregister("plan_src")

    def _check_changed_rows(self) -> None:
        """Found by keys and fingerprints: check the plan's rows that are not waiting (the
        others are unchanged), and keep what the check says of them (``_refused_columns``).
        A row the check refused in the table's last run, unchanged since, is refused again
        with the problems found then (``state.invalid_rows``): not read nor checked again."""
        cur = self._cur
        problems = self._sql.problem_columns()
        remembered = self._remembered_refusals()
        todo = cur.sql(
            f"SELECT row_number FROM {_TABLE} WHERE NOT waits AND row_number NOT IN "
            f"(SELECT row_number FROM {remembered}) ORDER BY row_number"
        ).fetchnumpy()["row_number"]
        if len(todo):
            # Few enough to hold (no more than a read batch does): kept for the render.
            kept: list[pa.RecordBatch] | None = [] if len(todo) <= self._rows.batch_rows else None
            self._scan_into(_CHECKED, self._sql.check, np.asarray(todo, dtype=np.int64), kept)
            self._checked_rows = _as_read(kept)
            found = f"SELECT row_number, ok, contact_key, {', '.join(problems)} FROM {_CHECKED}"
        else:  # nothing to check, nor to read again
            masks = "".join(f", NULL::BIGINT AS {p}" for p in problems)
            found = (
                "SELECT NULL::BIGINT AS row_number, NULL::BOOLEAN AS ok, "
                f"NULL::VARCHAR AS contact_key{masks} WHERE false"
            )
        masks = "".join(f", r.masks[{i + 1}] AS {p}" for i, p in enumerate(problems))
        checked = (
            f"({found} UNION ALL SELECT r.row_number, false, t.contact_key{masks} "
            f"FROM {remembered} r JOIN {_TABLE} t ON t.row_number = r.row_number)"
        )
        # A waiting row was ok when it was sent, and its values have not changed since.
        cur.execute(
            f"CREATE OR REPLACE TEMP TABLE sg_planned AS SELECT t.row_number, "
            f"coalesce(c.ok, true) AS ok, t.fingerprint, {self._refused_columns()}, "
            "t.is_new, t.prev_hash, t.prev_sha256, t.pending, t.retry, t.refused_hash, t.waits "
            f"FROM {_TABLE} t LEFT JOIN {checked} c ON c.row_number = t.row_number "
            f"ORDER BY t.row_number; DROP TABLE IF EXISTS {_CHECKED}; DROP TABLE {_TABLE}; "
            f"ALTER TABLE sg_planned RENAME TO {_TABLE}; DROP TABLE IF EXISTS sg_remembered"
        ).fetchall()

    def _remembered_refusals(self) -> str:
        """A relation of the plan's rows (not waiting) that the check refused in the table's
        last run, unchanged since: ``row_number``, ``masks``."""
        matched = self._store.invalid_rows.match_sql(
            _TABLE, self._stream, self._sql.checks_digest()
        )
        if matched is None:
            return "(SELECT NULL::BIGINT AS row_number, NULL::BIGINT[] AS masks WHERE false)"
        sql, params = matched  # masks of these very checks: as many as ``problem_columns``
        self._cur.execute(
            f"CREATE OR REPLACE TEMP TABLE sg_remembered AS SELECT m.row_number, m.masks "
            f"FROM ({sql}) m JOIN {_TABLE} t ON t.row_number = m.row_number WHERE NOT t.waits",
            params,
        ).fetchall()
        return "sg_remembered"

    def _resolve_identifiers(self, policy: IdentifierPolicy) -> None:
        """Match the checked rows to the contacts whose identifiers SendGrid holds; the
        checked rows become the resolved ones (see ``identifiers``)."""
        matched, params = self._store.identities_sql(_CHECKED, list(policy.columns))
        self._cur.execute(f"CREATE OR REPLACE TEMP TABLE sg_known AS {matched}", params).fetchall()
        known = ", ".join(f"n.k_{name}" for name in IDENTIFIERS)
        self._cur.execute(
            f"CREATE OR REPLACE TEMP TABLE sg_matched AS SELECT r.*, n.known_key, {known}, "
            f"coalesce(n.matches, 0) AS matches FROM {_CHECKED} r "
            "LEFT JOIN sg_known n ON n.row_number = r.row_number; DROP TABLE sg_known"
        ).fetchall()
        ((ambiguous,),) = self._cur.execute(
            "SELECT count(*) FROM sg_matched WHERE matches > 1"
        ).fetchall()
        if ambiguous:  # rare (a data error): each such row keeps its own contact's key
            self._cur.execute(self._store.own_keys_sql("sg_matched")).fetchall()
            shared = self._store.shared_keys_sql("sg_matched", list(policy.columns))
            self._cur.execute(f"CREATE OR REPLACE TEMP TABLE sg_shared_keys AS {shared}").fetchall()
            self._exit.callback(self._cur.execute, "DROP TABLE IF EXISTS sg_shared_keys")
            self._shared_keys = True
        self._cur.execute(
            f"CREATE OR REPLACE TEMP TABLE sg_resolved AS {policy.resolve_sql('sg_matched')}"
        ).fetchall()
        self._cur.execute(
            f"DROP TABLE sg_matched; DROP TABLE {_CHECKED}; "
            f"ALTER TABLE sg_resolved RENAME TO {_CHECKED}; "
            f"CREATE OR REPLACE TEMP VIEW sg_standing AS SELECT * FROM {_CHECKED} "
            "WHERE NOT ambiguous"
        ).fetchall()
        self._standing = "sg_standing"
        self._exit.callback(self._cur.execute, "DROP VIEW IF EXISTS sg_standing")

    def _find_duplicates(self) -> int:
        """Keep each duplicated key's last row number; return how many rows they supersede.
        A row matching several contacts takes no part: it supersedes none, nor is
        superseded (its key is one of theirs, for its reject)."""
        self._cur.execute(
            f"CREATE OR REPLACE TEMP TABLE {_DUPLICATES} AS {duplicate_keys(self._standing)}"
        ).fetchall()
        ((superseded,),) = self._cur.execute(
            f"SELECT coalesce(sum(n - 1), 0) FROM {_DUPLICATES}"
        ).fetchall()
        return int(superseded)

    def _kept_columns(self) -> str:
        # The plan table stays resident through the render, beside the contacts being
        # recorded: an ok row keeps no key or problem masks (the render recomputes its key:
        # ~70 -> ~35 MB per 1M rows, within the state's cap); a refused row keeps them, as
        # ``refused_key``, for its rejects. ``contact_key`` is only for the state's join.
        kept = f"c.row_number, c.ok, c.fingerprint, c.contact_key, {self._refused_columns()}"
        if self._identifiers is None:
            return kept
        # The render cannot recompute a key resolved through another identifier, nor the
        # identifiers the state completes: ok rows keep them.
        return (
            f"{kept}, c.id_problem, c.id_column, "
            f"CASE WHEN c.ok THEN c.contact_key END AS resolved_key, {_FILLS}"
        )

    def _refused_columns(self) -> str:
        """``refused_key`` and the masks of checked rows ``c`` that are refused or have a
        problem (an ok row with a field omit_field leaves out: listed too); null for others."""
        flagged = " OR ".join(f"c.{p} <> 0" for p in self._sql.problem_columns())
        refused = ", ".join(
            f"CASE WHEN {flagged} THEN c.{p} END AS {p}" for p in self._sql.problem_columns()
        )
        return f"CASE WHEN NOT c.ok OR {flagged} THEN c.contact_key END AS refused_key, {refused}"

    def _problems(self, where: str) -> pa.Table:
        """``REJECTS`` rows (one per problem) of the plan's rows matching ``where``."""
        cur = self._cur
        masks = ", ".join(self._sql.problem_columns())
        bad = cur.sql(
            f"SELECT row_number, refused_key AS contact_key, {masks} "
            f"FROM {_TABLE} WHERE {where} ORDER BY row_number"
        ).to_arrow_table()
        if bad.num_rows == 0:
            return REJECTS.empty_table()
        cur.register("sg_bad", bad)
        cur.register("sg_checks", self._sql.checks_table())
        try:
            return cur.sql(self._sql.rejects("sg_bad", "sg_checks")).to_arrow_table().cast(REJECTS)
        finally:
            cur.unregister("sg_bad")
            cur.unregister("sg_checks")

    def _invalid_rows(self) -> pa.Table:
        """The rows the check refused (``contact_key``, ``fingerprint``, ``checks``,
        ``masks``), for the state to remember (``state.invalid_rows``); none with the
        identifier rule in play."""
        where = "NOT ok AND fingerprint IS NOT NULL" if self._identifiers is None else "false"
        masks = ", ".join(self._sql.problem_columns())
        return self._cur.sql(
            f"SELECT refused_key AS contact_key, fingerprint, {self._sql.checks_digest()}::BIGINT "
            f"AS checks, [{masks}]::BIGINT[] AS masks FROM {_TABLE} WHERE {where}"
        ).to_arrow_table()

    def _rejects(self) -> pa.Table:
        """The refused rows' problems: the check's, and the identifier rule's."""
        found = self._problems("NOT ok")
        if self._identifiers is None:
            return found
        broken = self._cur.sql(
            f'SELECT row_number, refused_key AS contact_key, id_column AS "column", '
            f"id_problem AS reason FROM {_TABLE} WHERE id_problem IS NOT NULL"
        ).to_arrow_table()
        if broken.num_rows == 0:
            return found
        return pa.concat_tables([found, broken.cast(REJECTS)]).sort_by("row_number")

    # -- rendering ---------------------------------------------------------------------------

    def rendered_batches(self) -> Iterator[Rendered]:
        """Each source batch's planned rows, rendered (nothing when no row needs it); the
        rows the plan kept from its check, if it did, without reading the source again."""
        if not self.counts.to_render:
            return
        if self._checked_rows is not None:
            checked, self._checked_rows = self._checked_rows, None  # held no longer than this
            yield self._render_checked(checked)
            return
        for batch, first_row in self._rows.batches():
            yield self.render(batch, first_row)

    def render(self, batch: pa.RecordBatch | pa.Table, first_row: int) -> Rendered:
        """Render this batch's planned rows (the batch's first row is ``first_row``)."""
        planned = self._planned(first_row, first_row + batch.num_rows)
        rows = pa.table(normalize_arrow(batch))  # before the filter: it has no view kernels
        if planned.num_rows != batch.num_rows:
            # A mask and filter, not take: a third faster over 12 columns (measured).
            keep = np.zeros(batch.num_rows, dtype=bool)
            keep[pc.subtract(planned["row_number"], first_row).to_numpy()] = True
            rows = rows.filter(pa.array(keep))
        # (Otherwise row numbers are distinct and in range, _planned checks: all, in order.)
        return self._rendered(planned, rows)

    def _render_checked(self, checked: pa.Table) -> Rendered:
        """Render the planned rows from the rows the check read (every planned row is one:
        the others were unchanged, waiting or refused)."""
        numbers = checked[ROW_COLUMN].to_numpy()
        planned = self._planned(int(numbers[0]), int(numbers[-1]) + 1)
        wanted = planned["row_number"].to_numpy()
        at = np.searchsorted(numbers, wanted)
        found = at < len(numbers)
        if planned.num_rows != self.counts.to_render or not (
            found.all() and np.array_equal(numbers[at], wanted)
        ):
            raise RuntimeError("The plan's rows to render are not the rows it checked (a bug).")
        rows = checked.drop_columns([ROW_COLUMN, BAD_TEXT_COLUMN]).take(pa.array(at))
        return self._rendered(planned, rows)

    def _rendered(self, planned: pa.Table, rows: pa.Table) -> Rendered:
        """The contacts of ``planned`` rows, whose source values are ``rows`` (aligned)."""
        if self._identifiers is not None:
            for name in IDENTIFIERS:  # aligned: both in row order
                rows = rows.append_column(fill_column(name), planned[fill_column(name)])
        rendered = self._render_rows(rows)
        key = planned["resolved_key"] if self._identifiers is not None else rendered["contact_key"]
        columns = {
            **{name: planned[name] for name in _PLANNED.split(", ")},
            "contact_key": key,
            **{
                name: rendered[name]
                for name in ("contact_json", "content_hash", "ids", "list_scope")
            },
        }
        return self._split_unchanged(pa.table(columns).select(RENDERED.names).cast(RENDERED))

    def decide_again(self, contacts: pa.Table) -> Rendered:
        """Classify rendered contacts again (``RENDERED``), now: what jobs settled since the
        plan was built (a held-back contact's earlier version, say) counts."""
        # Only the key and fingerprint go through DuckDB, the JSON stays in Arrow: sorting a
        # million held-back contacts' JSON ran out of the state's memory cap.
        cur = self._cur
        cur.register(
            "sg_again",
            pa.table(
                {
                    "sg_pos": np.arange(contacts.num_rows, dtype=np.int64),
                    "row_number": contacts["row_number"],
                    "contact_key": contacts["contact_key"],
                    "fingerprint": contacts["fingerprint"],
                }
            ),
        )
        try:
            changes, params = self._store.changes_sql(
                "sg_again", self._stream, self._run_id, checked=False
            )
            decided = cur.sql(
                f"SELECT sg_pos, {_DECIDED} FROM ({changes}) ORDER BY row_number, sg_pos",
                params=params,
            ).to_arrow_table()
        finally:
            cur.unregister("sg_again")
        if decided.num_rows != contacts.num_rows:  # a key twice in the state joins twice
            raise CorruptStateError.duplicate_contact(self._store.path)
        order = decided["sg_pos"].to_numpy()
        again = contacts if np.all(order[1:] > order[:-1]) else contacts.take(order)
        for name in _DECIDED.split(", "):  # in row order, as ``again``
            again = again.set_column(again.schema.get_field_index(name), name, decided[name])
        return self._split_unchanged(again.select(RENDERED.names).cast(RENDERED))

    def _split_unchanged(self, contacts: pa.Table) -> Rendered:
        # A fingerprint also differs when only DuckDB's hash did: same JSON, nothing to send;
        # nor when it is the JSON SendGrid refused for good (it would refuse it again).
        same = self._store.same_content(contacts, self._legacy_hash)
        refused = pc.fill_null(pc.equal(contacts["content_hash"], contacts["refused_hash"]), False)
        refused = pc.and_(refused, pc.invert(same))
        none = contacts.slice(0, 0)
        if not pc.any(same).as_py() and not pc.any(refused).as_py():
            return Rendered(contacts, none, none)
        send = pc.invert(pc.or_(same, refused))
        return Rendered(contacts.filter(send), contacts.filter(same), contacts.filter(refused))

    def _planned(self, first: int, end: int) -> pa.Table:
        """The plan's ok rows with ``first <= row_number < end``, in row order."""
        extra = f", resolved_key, {_FILLS}" if self._identifiers is not None else ""
        rows = self._cur.sql(
            f"SELECT {_PLANNED}{extra} FROM {_TABLE} WHERE ok AND NOT waits "
            "AND row_number >= ? AND row_number < ? ORDER BY row_number",
            params=[first, end],
        ).to_arrow_table()
        numbers = rows["row_number"].to_numpy()
        if len(numbers) > 1 and not np.all(np.diff(numbers) > 0):
            raise CorruptStateError.duplicate_contact(self._store.path)
        return rows

    def _render_rows(self, rows: pa.RecordBatch | pa.Table) -> pa.Table:
        """``contact_key``, ``contact_json`` and ``content_hash`` of checked rows, in order."""
        with self._store.render_memory():
            return self._slices.run(pa.table(rows), self._render_slice)

    def _render_slice(self, rows: pa.Table) -> pa.Table:
        self._cur.register("sg_render", chunked(rows))
        try:
            return self._cur.sql(self._sql.render("sg_render")).to_arrow_table()
        finally:
            self._cur.unregister("sg_render")

    def _legacy_hash(self, contact_json: pa.ChunkedArray) -> pa.ChunkedArray:
        self._cur.register("sg_legacy", pa.table({"contact_json": contact_json}))
        try:
            return self._cur.sql(self._sql.legacy_hash("sg_legacy")).to_arrow_table()["h"]
        finally:
            self._cur.unregister("sg_legacy")


def _kept(reader: pa.RecordBatchReader, kept: list[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for batch in reader:
        kept.append(batch)
        yield batch


def _as_read(kept: list[pa.RecordBatch] | None) -> pa.Table | None:
    """The rows kept from a read, if any. Their text was made valid UTF-8 for DuckDB
    (``with_row_numbers``), which no planned row needs: a row with such text is refused.
    Every column is taken as nullable: a batch whose column was replaced (text made valid, a
    far date clamped) says so, its neighbours may keep a NOT NULL column's field as written."""
    if not kept:
        return None
    schema = pa.schema([field.with_nullable(True) for field in kept[0].schema])
    return pa.Table.from_batches(
        [pa.RecordBatch.from_arrays(batch.columns, schema=schema) for batch in kept], schema
    )
