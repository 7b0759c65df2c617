"""The hot path: an Arrow batch becomes validated, de-duplicated, hashed contact JSON, in SQL.

``Transformer(bindings, ...)`` compiles the bindings once into DuckDB SQL; ``run(batch,
first_row)`` executes it over one ``pyarrow.RecordBatch`` (or Table) with no per-row Python
and returns a ``TransformResult``:

* ``contacts``: one row per contact key, in source order of its last occurrence, with
  ``contact_key`` (``"<identifier>:<value>"``), ``row_number`` (0-based position in the job's
  source rows of the last occurrence), ``contact_json`` (the contact object's UTF-8 JSON
  followed by one ``,``, so that a run of rows is a ready-made JSON array body) and
  ``content_hash`` (hex SHA-256 of the list scope plus the contact JSON: stable across runs,
  processes and library versions).
* ``rejects``: one row per problem of each refused row: ``row_number``, ``contact_key`` (may be
  null), ``column``, ``reason``. Reasons never contain the value.

Rules (documented in the README): nulls and empty strings are omitted, never sent; emails and
identifiers are trimmed, emails lower-cased; Numbers are JSON numbers (NaN and infinity are
refused); Dates are formatted in UTC (naive timestamps are taken as UTC); duplicates of a key
within the batch merge field by field, later rows winning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sendgrid_destination.fields import E164_PATTERN, EMAIL_PATTERN, MAX_ALTERNATE_EMAILS
from sendgrid_destination.mapping import Binding

DEFAULT_DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
ROW_COLUMN = "__sg_row"


@dataclass(frozen=True)
class TransformResult:
    contacts: pa.Table
    rejects: pa.Table


@dataclass(frozen=True)
class _Check:
    column: str
    condition: str  # SQL, true when the row is bad
    reason: str


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

    # -- compilation -------------------------------------------------------------------------

    def _value_expr(self, b: Binding, src: str) -> str:
        if b.kind == "identifier":
            text = f"nullif(trim(CAST({src} AS VARCHAR)), '')"
            return f"lower({text})" if b.field == "email" else text
        if b.kind == "alternate_emails":
            items = src if b.arrow_kind == "string_list" else f"string_split({src}, ',')"
            cleaned = (
                f"list_filter(list_transform({items}, lambda x: lower(trim(x))), lambda x: x <> '')"
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
        # Timestamp columns arrive naive in UTC (see _naive_utc). Text is parsed as TIMESTAMPTZ
        # so an explicit offset is honoured, on a connection whose TimeZone is UTC.
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
            return [
                _Check(
                    col,
                    f"{v} IS NULL AND nullif(trim({src}), '') IS NOT NULL",
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
        whens = [
            f"WHEN v{i} IS NOT NULL THEN {_lit(b.field + ':')} || v{i}"
            for i, b in enumerate(self.bindings)
            if b.kind == "identifier"
        ]
        return f"CASE {' '.join(whens)} END"

    def _compile(self) -> str:
        # One pass over the batch. Problems are a bitmask (bit i = self._checks[i]) because
        # building a list per row cost more than everything else together; the few rejected
        # rows are expanded into (column, reason) rows afterwards.
        bits = [
            f"CASE WHEN coalesce({c.condition}, false) THEN {1 << i} ELSE 0 END"
            for i, c in enumerate(self._checks)
        ]
        problems = " | ".join(bits) if bits else "0"
        return (
            f"SELECT row_number, contact_key, hash(contact_key) AS key_hash, problems, "
            f"CASE WHEN problems = 0 THEN {self._json_expr()} END AS contact_json FROM ("
            f"SELECT *, ({problems}) AS problems FROM ("
            f"SELECT *, {self._key_expr()} AS contact_key FROM (SELECT "
            f"{ROW_COLUMN} AS row_number, {self._values_sql}, "
            f"{', '.join(f'{_ident(b.column)} AS s{i}' for i, b in enumerate(self.bindings))} "
            f"FROM src)))"
        )

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

    def run(self, batch: pa.RecordBatch | pa.Table, first_row: int = 0) -> TransformResult:
        """Transform one batch whose first row is source row ``first_row`` of the job."""
        rows = pa.array(np.arange(first_row, first_row + batch.num_rows, dtype=np.int64))
        src = _naive_utc(batch).append_column(ROW_COLUMN, rows)
        cur = self._con.cursor()
        try:
            cur.register("src", src)
            checked = cur.sql(self._sql).to_arrow_table()
            cur.unregister("src")
            good = pc.equal(checked["problems"], 0)
            contacts = self._finish_contacts(cur, checked.filter(good))
            rejects = self._expand_rejects(cur, checked.filter(pc.invert(good)))
        finally:
            cur.close()
        return TransformResult(contacts, rejects)

    def _finish_contacts(self, cur: duckdb.DuckDBPyConnection, good: pa.Table) -> pa.Table:
        key_hash = good["key_hash"].to_numpy()
        good = keep_last_per_key(
            good.select(["contact_key", "row_number", "contact_json"]), key_hash
        )
        cur.register("good", good)
        hashed = cur.sql(
            f"SELECT contact_key, row_number, contact_json, "
            f"sha256({_lit(self.scope + chr(10))} || contact_json) AS content_hash FROM good"
        ).to_arrow_table()
        cur.unregister("good")
        return hashed.combine_chunks()

    def _expand_rejects(self, cur: duckdb.DuckDBPyConnection, bad: pa.Table) -> pa.Table:
        checks = pa.table(
            {
                "bit": [1 << i for i in range(len(self._checks))],
                "column": [c.column for c in self._checks],
                "reason": [c.reason for c in self._checks],
            }
        )
        cur.register("bad", bad.select(["row_number", "contact_key", "problems"]))
        cur.register("checks", checks)
        rejects = cur.sql(
            "SELECT b.row_number, b.contact_key, c.column, c.reason FROM bad b JOIN checks c "
            "ON (b.problems & c.bit) <> 0 ORDER BY b.row_number, c.bit"
        ).to_arrow_table()
        cur.unregister("bad")
        cur.unregister("checks")
        return rejects


def keep_last_per_key(table: pa.Table, key_hash: np.ndarray | None = None) -> pa.Table:
    """Drop all but the last row of each ``contact_key`` (rows are in source order).

    With ``key_hash`` (DuckDB's 64-bit ``hash`` of each key), a numpy sort finds the rows that
    may repeat a key and the exact group-by runs on those alone: the common case, no
    duplicates, costs one sort. The exact comparison means a hash collision never merges two
    different contacts.
    """
    if table.num_rows < 2:
        return table
    candidates = np.arange(table.num_rows)
    if key_hash is not None:
        order = np.argsort(key_hash, kind="stable")
        repeated = key_hash[order][1:] == key_hash[order][:-1]
        if not repeated.any():
            return table
        in_run = np.zeros(len(order), dtype=bool)
        in_run[1:] |= repeated
        in_run[:-1] |= repeated
        candidates = order[in_run]
    groups = pa.table({"key": table["contact_key"].take(candidates), "pos": candidates})
    last = groups.group_by("key").aggregate([("pos", "max")])["pos_max"].to_numpy()
    keep = np.ones(table.num_rows, dtype=bool)
    keep[np.setdiff1d(candidates, last)] = False
    return table.filter(pa.array(keep))


def _naive_utc(batch: pa.RecordBatch | pa.Table) -> pa.RecordBatch | pa.Table:
    """Drop time zones from timestamp columns; Arrow stores them as UTC instants already.

    DuckDB formats a plain TIMESTAMP several times faster than a TIMESTAMPTZ, and naive source
    timestamps are documented as UTC, so both end up formatted the same way.
    """
    for i, field in enumerate(batch.schema):
        if pa.types.is_timestamp(field.type) and field.type.tz is not None:
            naive = batch.column(i).cast(pa.timestamp(field.type.unit))
            batch = batch.set_column(i, field.name, naive)
    return batch


def _json_str(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _new_connection() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    # Dates are rendered in UTC whatever the machine's zone.
    con.execute("SET TimeZone = 'UTC'")
    return con
