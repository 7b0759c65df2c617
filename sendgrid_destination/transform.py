"""The hot path: Arrow rows become validated, de-duplicated, hashed contact JSON, in SQL.

``Transformer(bindings, ...)`` compiles the bindings once into DuckDB SQL with no per-row
Python, in two steps, so that rows which have not changed since the last run are never
rendered:

* the check (``check_sql(source)``, run by the plan next to the state's tables): per source
  row its ``contact_key`` (``"<identifier>:<value>"``), one problem bitmask per 63 checks,
  ``ok``, and for ok rows a ``fingerprint``: DuckDB's 64-bit ``hash`` of the coerced values
  and of everything else that shapes the JSON. It is cheap (a fraction of the JSON's cost)
  but only as stable as DuckDB's hash, so it serves as a shortcut: a row whose fingerprint
  matches the state is unchanged; any other row is rendered and compared by content hash.
* the render (``render(rows)``): ``contact_key`` (as the check computes it), ``contact_json``
  (the contact object's UTF-8 JSON followed by one ``,``, so that a run of rows is a
  ready-made JSON array body) and ``content_hash`` (hex MD5 of the list scope plus the contact
  JSON: stable across runs, processes and library versions). MD5 because it detects changes,
  it does not defend against anyone (the state file is the user's own), and DuckDB computes it
  in about half SHA-256's time (SHA-256 was 45% of the render's time, measured at 1M rows).
  ``legacy_hash(json)`` is the SHA-256 that state files before schema 5 hold.

``run(batch, first_row)`` does both over one batch and returns a ``TransformResult``:
``contacts`` (one row per contact key, in source order of its last occurrence, with
``contact_key``, ``row_number`` (0-based position in the job's source rows), ``fingerprint``,
``contact_json`` and ``content_hash``) and ``rejects`` (one row per problem of each refused
row: ``row_number``, ``contact_key`` (may be null), ``column``, ``reason``; reasons never
contain the value).

Rules (documented in the README): nulls and empty strings are omitted, never sent; emails and
identifiers are trimmed, emails lower-cased; Numbers are JSON numbers (NaN and infinity are
refused); Dates are formatted in UTC (naive timestamps are taken as UTC). Of several rows with
the same contact key in a job file (or in a batch, when no file-wide list is given), the last
row wins whole: earlier ones are dropped before validation, and if the last one is invalid it
is rejected and nothing is sent for that key.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sendgrid_destination.fields import (
    E164_PATTERN,
    EMAIL_PATTERN,
    IDENTIFIERS,
    MAX_ALTERNATE_EMAILS,
)
from sendgrid_destination.mapping import Binding

DEFAULT_DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
ROW_COLUMN = "__sg_row"


@dataclass(frozen=True)
class TransformResult:
    contacts: pa.Table
    rejects: pa.Table
    superseded: int = 0  # rows dropped because a later row has the same key


@dataclass(frozen=True)
class _Check:
    column: str
    condition: str  # SQL, true when the row is bad
    reason: str


# Spaces, tabs, line breaks and no-break spaces around identifiers are copy-paste noise.
_BLANKS = " \t\n\r\f\v\u00a0"


def _trim(sql: str) -> str:
    return f"trim({sql}, {_lit(_BLANKS)})"


def _lit(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Transformer:
    """Compiled SQL for one mapping; thread-safe (each run uses its own DuckDB cursor)."""

    def __init__(
        self,
        bindings: Sequence[Binding],
        *,
        list_ids: Sequence[str] = (),
        date_format: str = DEFAULT_DATE_FORMAT,
        connection: duckdb.DuckDBPyConnection | None = None,
    ) -> None:
        self.bindings = list(bindings)
        self.date_format = date_format
        self.scope = ",".join(sorted(list_ids))
        self._con = connection or _new_connection()
        self._values_sql, self._checks = self._compile_values()
        self._sql = self._compile()
        self._render_sql = self._compile_render()
        self._superseded_sql = self._compile_superseded()

    # -- compilation -------------------------------------------------------------------------

    def _value_expr(self, b: Binding, src: str) -> str:
        if b.kind == "identifier":
            text = f"nullif({_trim(f'CAST({src} AS VARCHAR)')}, '')"
            return f"lower({text})" if b.field == "email" else text
        if b.kind == "alternate_emails":
            items = src if b.arrow_kind == "string_list" else f"string_split({src}, ',')"
            cleaned = (
                f"list_filter(list_transform({items}, lambda x: lower({_trim('x')})), "
                "lambda x: x <> '')"
            )
            return f"CASE WHEN len({cleaned}) > 0 THEN {cleaned} END"
        if b.field_type == "Number":
            if b.arrow_kind == "string":
                return f"TRY_CAST(nullif(trim({src}), '') AS DOUBLE)"
            return src
        if b.field_type == "Date":
            return self._date_expr(b, src)
        return f"nullif({self._text_expr(b, src)}, '')"

    def _text_expr(self, b: Binding, src: str) -> str:
        if b.arrow_kind == "boolean":
            return f"CASE WHEN {src} THEN 'true' WHEN NOT {src} THEN 'false' END"
        if b.arrow_kind == "date":
            return f"strftime({src}, '%Y-%m-%d')"
        if b.arrow_kind == "timestamp":
            return f"strftime({src}, {_lit(self.date_format)})"
        return f"CAST({src} AS VARCHAR)"

    def _date_expr(self, b: Binding, src: str) -> str:
        # Timestamp columns arrive naive in UTC (normalize_arrow). Text is parsed as TIMESTAMPTZ
        # so an explicit offset is honoured, on cursors whose TimeZone is UTC (utc_cursor).
        if b.arrow_kind == "string":
            ts = f"TRY_CAST(nullif(trim({src}), '') AS TIMESTAMPTZ)"
        elif b.arrow_kind == "date":
            ts = f"CAST({src} AS TIMESTAMP)"
        else:
            ts = src
        return f"strftime({ts}, {_lit(self.date_format)})"

    def _binding_checks(self, b: Binding, v: str, src: str) -> list[_Check]:
        col = b.column
        checks: list[_Check] = []
        if b.field == "email":
            checks.append(
                _Check(
                    col,
                    f"NOT regexp_full_match({v}, {_lit(EMAIL_PATTERN)})",
                    "email: not a valid email address",
                )
            )
        # Both phone fields must be E.164 (SendGrid's contact docs), not only the identifier.
        if b.field in ("phone_number_id", "phone_number"):
            checks.append(
                _Check(
                    col,
                    f"NOT regexp_full_match({v}, {_lit(E164_PATTERN)})",
                    f"{b.field}: not an E.164 number like +14155550100",
                )
            )
        if b.kind == "alternate_emails":
            checks += [
                _Check(
                    col,
                    f"len({v}) > {MAX_ALTERNATE_EMAILS}",
                    f"alternate_emails: more than {MAX_ALTERNATE_EMAILS} addresses",
                ),
                _Check(
                    col,
                    f"len(list_filter({v}, lambda x: NOT regexp_full_match(x, "
                    f"{_lit(EMAIL_PATTERN)}) OR length(x) > 254)) > 0",
                    "alternate_emails: contains an invalid email address",
                ),
            ]
        elif b.max_length is not None:
            checks.append(
                _Check(
                    col,
                    f"length({v}) > {b.max_length}",
                    f"{b.field}: longer than {b.max_length} characters",
                )
            )
        checks += self._typed_checks(b, v, src)
        return checks

    def _typed_checks(self, b: Binding, v: str, src: str) -> list[_Check]:
        col, name = b.column, b.field
        if b.field_type == "Number" and b.arrow_kind == "string":
            return [
                _Check(
                    col,
                    f"{v} IS NULL AND nullif(trim({src}), '') IS NOT NULL",
                    f"{name}: not a number",
                ),
                _Check(col, f"NOT isfinite({v})", f"{name}: not a finite number"),
            ]
        if b.field_type == "Number" and b.arrow_kind == "floating":
            return [
                _Check(col, f"NOT isfinite({v})", f"{name}: not a finite number (NaN or infinity)")
            ]
        if b.field_type == "Date" and b.arrow_kind == "string":
            # DuckDB parses 'infinity' as a timestamp; SendGrid has no such date.
            return [
                _Check(
                    col,
                    f"({v} IS NULL AND nullif(trim({src}), '') IS NOT NULL) OR "
                    f"NOT isfinite(TRY_CAST(nullif(trim({src}), '') AS TIMESTAMPTZ))",
                    f"{name}: not a date or timestamp",
                )
            ]
        return []

    def _compile_values(self) -> tuple[str, list[_Check]]:
        exprs, checks = [], []
        for i, b in enumerate(self.bindings):
            src = _ident(b.column)
            exprs.append(f"{self._value_expr(b, src)} AS v{i}")
            checks += self._binding_checks(b, f"v{i}", f"s{i}")
        id_columns = ", ".join(
            dict.fromkeys(b.column for b in self.bindings if b.kind == "identifier")
        )
        checks.append(
            _Check(
                id_columns,
                "contact_key IS NULL",
                "no identifier: every mapped identifier column is empty",
            )
        )
        return ", ".join(exprs), checks

    def _key_expr(self) -> str:
        # The key is the first non-empty identifier in SendGrid's priority order (email
        # first), whatever order the mapping lists them in.
        position = {name: i for i, name in enumerate(IDENTIFIERS)}
        identifiers = sorted(
            ((i, b) for i, b in enumerate(self.bindings) if b.kind == "identifier"),
            key=lambda ib: position[ib[1].field],
        )
        whens = [
            f"WHEN v{i} IS NOT NULL THEN {_lit(b.field + ':')} || v{i}" for i, b in identifiers
        ]
        return f"CASE {' '.join(whens)} END"

    def _problem_groups(self) -> list[str]:
        """One BIGINT bitmask per group of checks (bit j of group g = check g*63+j).

        A bitmask because building a list per row cost more than everything else together;
        groups because one BIGINT holds 63 checks and a mapping may hold hundreds of fields.
        """
        groups = []
        for g in range(0, len(self._checks), _BITS):
            bits = [
                f"CASE WHEN coalesce({c.condition}, false) THEN {1 << j} ELSE 0 END"
                for j, c in enumerate(self._checks[g : g + _BITS])
            ]
            groups.append("(" + " | ".join(bits) + ")::BIGINT")
        return groups

    def _compile(self) -> str:
        """The check: per source row its key, problem masks, ``ok`` and fingerprint."""
        groups = self._problem_groups()
        ok = " AND ".join(f"p{g} = 0" for g in range(len(groups)))
        sources = ", ".join(f"{_ident(b.column)} AS s{i}" for i, b in enumerate(self.bindings))
        values = ", ".join(f"v{i}" for i in range(len(self.bindings)))
        return (
            f"SELECT row_number, contact_key, "
            f"{', '.join(f'p{g}' for g in range(len(groups)))}, ({ok}) AS ok, "
            f"CASE WHEN ({ok}) THEN hash({_lit(self._signature())}, {values}) END "
            f"AS fingerprint FROM ("
            f"SELECT *, {', '.join(f'{e} AS p{g}' for g, e in enumerate(groups))} FROM ("
            f"SELECT *, {self._key_expr()} AS contact_key FROM (SELECT "
            f"{ROW_COLUMN} AS row_number, {self._values_sql}, {sources} FROM src)))"
        )

    def _compile_render(self) -> str:
        """The render: per (already checked) row its contact JSON and content hash."""
        return (
            f"SELECT contact_key, contact_json, {self._content_hash('md5')} AS content_hash "
            f"FROM (SELECT {self._key_expr()} AS contact_key, {self._json_expr()} AS "
            f"contact_json FROM (SELECT {self._values_sql} FROM src))"
        )

    def _content_hash(self, function: str) -> str:
        # What a content hash covers, whatever the function: the list scope and the JSON.
        return f"{function}({_lit(self.scope + chr(10))} || contact_json)"

    def _signature(self) -> str:
        # Everything besides the values that shapes a contact's JSON: a fingerprint taken
        # under another mapping, list scope or rendering version never matches.
        keys = [b.json_key + ("/custom" if b.kind == "custom" else "") for b in self.bindings]
        return json.dumps([FINGERPRINT_VERSION, self.scope, keys])

    def _json_expr(self) -> str:
        # `||` with NULL is NULL and concat_ws skips NULLs: omitted fields cost no CASE.
        def piece(i: int, b: Binding) -> str:
            return f"{_lit(_json_str(b.json_key) + ':')} || to_json(v{i})"

        top = [piece(i, b) for i, b in enumerate(self.bindings) if b.kind != "custom"]
        custom = [piece(i, b) for i, b in enumerate(self.bindings) if b.kind == "custom"]
        if custom:
            top.append(
                "'\"custom_fields\":{' || nullif(concat_ws(',', " + ", ".join(custom) + "), '')"
                " || '}'"
            )
        return "'{' || concat_ws(',', " + ", ".join(top) + ") || '},'"

    # -- execution ---------------------------------------------------------------------------

    def superseded_rows(self, batch: pa.RecordBatch | pa.Table) -> pa.Array:
        """Row numbers (0-based in ``batch``) that a later row with the same contact key
        replaces (last row wins). A job file's rows are resolved file-wide by the plan."""
        cur = utc_cursor(self._con)
        try:
            rows = pa.array(np.arange(batch.num_rows, dtype=np.int64))
            cur.register("batch_src", normalize_arrow(batch).append_column(ROW_COLUMN, rows))
            return (
                cur.sql(self._superseded_sql.replace("{source}", "batch_src"))
                .to_arrow_table()["row_number"]
                .combine_chunks()
            )
        finally:
            cur.close()

    def _compile_superseded(self) -> str:
        identifiers = [(i, b) for i, b in enumerate(self.bindings) if b.kind == "identifier"]
        values = ", ".join(
            f"{self._value_expr(b, _ident(b.column))} AS v{i}" for i, b in identifiers
        )
        return (
            f"WITH keyed AS (SELECT row_number, {self._key_expr()} AS contact_key FROM "
            f"(SELECT {ROW_COLUMN} AS row_number, {values} FROM {{source}})), "
            f"dups AS ({duplicate_keys_sql('keyed')}) "
            "SELECT k.row_number FROM keyed k JOIN dups d USING (contact_key) "
            "WHERE k.row_number < d.last_row ORDER BY k.row_number"
        )

    def check_sql(self, source: str) -> str:
        """The check over relation ``source`` (with a ``__sg_row`` column): one row per source
        row with ``row_number``, ``contact_key``, the problem masks ``p0..``, ``ok`` and, for ok
        rows, ``fingerprint``; to run on any DuckDB connection (the plan runs it beside the
        state's tables)."""
        return self._sql.replace("FROM src)", f"FROM {source})")

    def run(
        self,
        batch: pa.RecordBatch | pa.Table,
        first_row: int = 0,
        superseded: pa.Array | None = None,
    ) -> TransformResult:
        """Check and render one batch whose first row is source row ``first_row`` of the job.

        ``superseded`` lists the job's row numbers that a later row of the same key replaces
        (found over more than this batch); without it, duplicates are resolved within the
        batch. The loader does not call this: its plan does the same over a whole job file.
        """
        if superseded is None:
            superseded = pc.add(self.superseded_rows(batch), first_row)
        src = with_row_numbers(batch, first_row)
        if len(superseded):
            src = src.filter(pc.invert(pc.is_in(src[ROW_COLUMN], value_set=superseded)))
        cur = utc_cursor(self._con)
        try:
            cur.register("src", _chunked(src))
            checked = cur.sql(self._sql).to_arrow_table()
            cur.unregister("src")
        finally:
            cur.close()
        ok = checked["ok"]
        all_ok = bool(pc.all(ok).as_py()) if checked.num_rows else True
        good = checked if all_ok else checked.filter(ok)
        rendered = self.render(src if all_ok else src.filter(ok))
        contacts = good.select(["contact_key", "row_number", "fingerprint"])
        for name in ("contact_json", "content_hash"):
            contacts = contacts.append_column(name, rendered[name])
        rejects = _EMPTY_REJECTS if all_ok else self.expand_rejects(checked.filter(pc.invert(ok)))
        return TransformResult(contacts, rejects, batch.num_rows - src.num_rows)

    def render(self, rows: pa.RecordBatch | pa.Table) -> pa.Table:
        """``contact_key``, ``contact_json`` and ``content_hash`` of checked rows, in their
        order (the key as the check computes it).

        ``contact_json`` is the contact object's UTF-8 JSON followed by one ``,`` (a run of
        cells is a ready-made array body); ``content_hash`` is hex MD5 of the list scope
        and the JSON: stable across runs, processes and library versions.
        """
        cur = utc_cursor(self._con)
        try:
            cur.register("src", _chunked(pa.table(normalize_arrow(rows))))
            rendered = cur.sql(self._render_sql).to_arrow_table()
            cur.unregister("src")
        finally:
            cur.close()
        return rendered

    def legacy_hash(self, contact_json: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
        """Hex SHA-256 of the list scope and each rendered ``contact_json``: the content hash
        of state files before schema 5, compared once when such a contact is rendered."""
        cur = utc_cursor(self._con)
        try:
            cur.register("legacy", pa.table({"contact_json": contact_json}))
            return cur.sql(
                f"SELECT {self._content_hash('sha256')} AS h FROM legacy"
            ).to_arrow_table()["h"]
        finally:
            cur.close()

    def problem_columns(self) -> list[str]:
        """The check's problem masks, ``p0``, ``p1``..., one per 63 checks."""
        return [f"p{g}" for g in range(0, (len(self._checks) + _BITS - 1) // _BITS)]

    def expand_rejects(self, bad: pa.Table) -> pa.Table:
        """One row per problem of each refused row: ``row_number``, ``contact_key``, ``column``,
        ``reason``, from the check's rows that are not ok."""
        if bad.num_rows == 0:
            return _EMPTY_REJECTS
        groups = self.problem_columns()
        checks = pa.table(
            {
                "grp": [i // _BITS for i in range(len(self._checks))],
                "bit": [1 << (i % _BITS) for i in range(len(self._checks))],
                "ord": list(range(len(self._checks))),
                "column": [c.column for c in self._checks],
                "reason": [c.reason for c in self._checks],
            }
        )
        cur = utc_cursor(self._con)
        try:
            cur.register("bad", bad.select(["row_number", "contact_key", *groups]))
            cur.register("checks", checks)
            masks = ", ".join(groups)
            return cur.sql(
                "SELECT b.row_number, b.contact_key, c.column, c.reason FROM "
                f"(SELECT row_number, contact_key, unnest([{masks}]) AS mask, "
                f"unnest(range({len(groups)})) AS grp FROM bad) b "
                "JOIN checks c ON c.grp = b.grp AND (b.mask & c.bit) <> 0 "
                "ORDER BY b.row_number, c.ord"
            ).to_arrow_table()
        finally:
            cur.close()


def duplicate_keys_sql(relation: str) -> str:
    """Per contact key occurring more than once in ``relation`` (columns ``row_number``,
    ``contact_key``): ``contact_key``, ``last_row`` (the row that wins) and ``n`` (its rows)."""
    # Grouping 64-bit hashes first, then only the keys whose hash repeats, halves the time
    # of grouping every key (and its memory); a hash collision only makes a key a
    # candidate, the keys themselves decide.
    return (
        f"SELECT contact_key, max(row_number) AS last_row, count(*) AS n FROM {relation} "
        f"WHERE hash(contact_key) IN (SELECT hash(contact_key) AS h FROM {relation} "
        "WHERE contact_key IS NOT NULL GROUP BY h HAVING count(*) > 1) "
        "AND contact_key IS NOT NULL GROUP BY contact_key HAVING count(*) > 1"
    )


def with_row_numbers(batch: pa.RecordBatch | pa.Table, first_row: int) -> pa.Table:
    """The batch, normalized for DuckDB, with its job-file row numbers as ``__sg_row``."""
    rows = pa.array(np.arange(first_row, first_row + batch.num_rows, dtype=np.int64))
    return pa.table(normalize_arrow(batch)).append_column(ROW_COLUMN, rows)


def _chunked(table: pa.Table) -> pa.Table:
    # DuckDB scans one Arrow chunk per thread: split the table so every core works.
    return pa.Table.from_batches(table.to_batches(max_chunksize=_SCAN_CHUNK_ROWS), table.schema)


TRANSFORM_MEMORY_LIMIT = "256MB"
# Bump when the rendering of a contact changes, so every stored fingerprint stops matching.
FINGERPRINT_VERSION = 1
_BITS = 63
_SCAN_CHUNK_ROWS = 16_384
_EMPTY_REJECTS = pa.table(
    {
        "row_number": pa.array([], pa.int64()),
        "contact_key": pa.array([], pa.string()),
        "column": pa.array([], pa.string()),
        "reason": pa.array([], pa.string()),
    }
)


def keep_last_per_key(table: pa.Table) -> pa.Table:
    """Drop all but the last row of each ``contact_key`` (rows are in source order)."""
    if table.num_rows < 2:
        return table
    positions = pa.array(np.arange(table.num_rows))
    groups = pa.table({"key": table["contact_key"], "pos": positions})
    last = groups.group_by("key").aggregate([("pos", "max")])["pos_max"]
    return table.filter(pc.is_in(positions, value_set=last))


def normalize_arrow(batch: pa.RecordBatch | pa.Table) -> pa.RecordBatch | pa.Table:
    """Arrow types DuckDB scans poorly or not at all, turned into equivalents it handles.

    * timestamps: time zone dropped (Arrow stores UTC instants already; naive source timestamps
      are documented as UTC) and unit made microseconds, since DuckDB formats a plain
      TIMESTAMP several times faster and cannot widen second-precision year-9999 values;
    * dictionary-encoded columns: decoded; all-null columns: typed as text;
    * decimal256: narrowed to decimal128 when it fits (DuckDB reads no decimal256).
    """
    for i, field in enumerate(batch.schema):
        target = _scannable_type(field.type)
        if target is not None:
            column = batch.column(i)
            if pa.types.is_dictionary(field.type):
                column = column.dictionary_decode()
            batch = batch.set_column(i, field.name, column.cast(target, safe=False))
    return batch


def _scannable_type(data_type: pa.DataType) -> pa.DataType | None:
    t = pa.types
    if t.is_dictionary(data_type):
        return _scannable_type(data_type.value_type) or data_type.value_type
    if t.is_timestamp(data_type) and (data_type.tz is not None or data_type.unit != "us"):
        return pa.timestamp("us")
    if t.is_null(data_type):
        return pa.string()
    if t.is_decimal256(data_type) and data_type.precision <= 38:
        return pa.decimal128(data_type.precision, data_type.scale)
    return None


def _json_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def utc_cursor(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    """A cursor of ``con`` whose time zone is UTC. A cursor is a new DuckDB session: it starts
    in the machine's zone, not in whatever an earlier ``SET`` chose, and Dates parsed from text
    with an offset are rendered in the session's zone."""
    cur = con.cursor()
    try:
        cur.execute("SET TimeZone = 'UTC'")
    except BaseException:
        cur.close()
        raise
    return cur


def _new_connection() -> duckdb.DuckDBPyConnection:
    # For a Transformer used on its own: a memory cap makes DuckDB spill to disk rather than
    # grow (a file-wide duplicate scan of 10M rows held 1.8 GiB without it); the spill goes to
    # a private temporary directory, not the current one.
    spill = tempfile.mkdtemp(prefix="sendgrid-destination-")
    con = duckdb.connect(config={"memory_limit": TRANSFORM_MEMORY_LIMIT, "temp_directory": spill})
    weakref.finalize(con, shutil.rmtree, spill, ignore_errors=True)
    return con
