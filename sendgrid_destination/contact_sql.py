"""The SQL compiler: a mapping's bindings become DuckDB SQL that checks and renders contacts.

``ContactSql(bindings, list_ids=..., date_format=..., on_invalid_value=...)`` compiles once;
every query takes the relation it reads as a parameter (a name registered on the cursor that
runs it), so a column name is only ever quoted, never searched and rewritten:

* ``check(relation)``: per row of ``relation`` (the source columns and ``ROW_COLUMN``) its
  ``row_number``, ``contact_key`` (``"<identifier>:<value>"``), one problem bitmask per 63
  checks (``p0``, ``p1``...), ``ok``, ``flagged`` (the hard-delete column flags it:
  ``deleted_sql``) and, for ok rows, a ``fingerprint``: a 64-bit digest of the source values
  as they arrive (and their types), the row's lists and everything else that shapes the JSON
  or the checks (``_fingerprint``). An equal fingerprint is the last word (the row is taken
  for unchanged, never checked or rendered); a different one only sends the row to the render,
  where the content hash decides (DuckDB may change its ``hash`` between versions).
* ``keys(relation)``: the same ``row_number``, ``contact_key``, ``flagged`` and fingerprint (of
  every row), cleaning only the identifiers: a third of the check's cost, for a plan that
  looks for unchanged rows first and checks only the others.
* ``identifier_keys(relation)``: every key a row's contact may be tracked under, one per
  identifier it has (what other tables of a load will send: ``tables_to_come``).
* ``render(relation)``: per (checked) row its ``contact_key`` (as the check computes it),
  ``contact_json`` (the contact object's UTF-8 JSON followed by one ``,``, so that a run of
  rows is a ready-made JSON array body), ``list_scope`` (the row's list IDs, sorted, comma-
  separated: the static ones and, with a ``membership.ListColumn``, those its row names) and
  ``content_hash`` (the first 64 bits of the MD5 of the list scope and the JSON, a UBIGINT:
  stable across runs, processes and library versions). MD5 because it detects changes; it
  defends against nobody (the state file is the user's own), and DuckDB computes it in about
  half SHA-256's time (SHA-256 was 45% of the render, measured at 1M rows). 64 bits because a
  changed contact goes unnoticed only if its new digest equals its last one (2^-64), and a
  number costs the state far less to write than 32 hex digits.
* ``legacy_hash(relation)``: the SHA-256 that state files before schema 5 hold, of the same text.
* ``rejects(relation, checks)``: one row per problem of each refused row (``REJECTS``), from the
  check's rows that are not ok and the table ``checks_table()`` registered as ``checks``.
* ``duplicate_keys(relation)``: last row wins, defined once (see its docstring).

Rules (documented in the README): nulls and empty strings are omitted, never sent; emails,
identifiers and reserved text fields are trimmed of surrounding whitespace, custom Text fields
of trailing whitespace (the padding of char(n)), before the length and empty checks; emails
are lower-cased; a JSON array in text (dlt's form of a PostgreSQL array) is a list for
``alternate_emails``, other text is split on commas; Numbers are JSON numbers and NaN and
infinity are refused for Number and Text fields alike; Dates are formatted in UTC (naive
timestamps are taken as UTC).

``on_invalid_value``: with ``"reject_row"`` (the default) a row failing any check is refused
whole (``ok`` is false). With ``"omit_field"`` only the identifier checks (and text that is not
UTF-8, which DuckDB must never scan) refuse a row; a row failing only a field's checks is ok,
and ``render`` leaves that field out of its JSON (it recomputes those checks: the plan keeps no
masks for the rows it sends). Its problems are the same bits of the same masks, so the plan
lists the omitted fields with ``rejects`` as it lists a refused row's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import pyarrow as pa

from sendgrid_destination.arrow_utils import (
    BAD_TEXT_COLUMN,
    OWN_COLUMN_PREFIX,
    ROW_COLUMN,
    bad_text_marker,
)
from sendgrid_destination.contact_model import (
    BLANKS,
    E164_PATTERN,
    EMAIL_PATTERN,
    IDENTIFIERS,
    MAX_ALTERNATE_EMAILS,
)
from sendgrid_destination.mapping import Binding

if TYPE_CHECKING:
    from sendgrid_destination.membership import ListColumn

DEFAULT_DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# Bump when the rendering or the checks of a contact change, so every stored fingerprint stops
# matching (its contacts are then compared by content hash once: nothing is resent). 2: the
# fingerprint is of the source values as they arrive, no longer of the cleaned ones. 3: text
# goes through MD5 (DuckDB's hash of text missed changes: see _fingerprint). 4: the signature
# names the source columns and the list column (text that is not UTF-8 is refused for the
# field its column feeds: the same values under another wiring are refused otherwise).
FINGERPRINT_VERSION = 4
# Values whose DuckDB hash is weak (text: see _fingerprint), digested with MD5 instead.
_TEXT_KINDS = ("string", "string_list")
_BITS = 63


@dataclass(frozen=True)
class _Check:
    column: str
    condition: str  # SQL, true when the row is bad
    reason: str
    # Whether leaving the field out fixes it; text that is not UTF-8 never is (see above).
    of_value: bool = True
    # With omit_field: the binding whose value is left out when this check fails (else None,
    # and a failure refuses the row).
    omits: int | None = None


def ident(name: str) -> str:
    """A quoted SQL identifier (a column or relation name, whatever characters it holds)."""
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def json_key(text: str) -> str:
    """``text`` as a JSON string (every control character escaped), for a key of the JSON."""
    return json.dumps(text, ensure_ascii=False)


def _trim(sql: str) -> str:
    # trim() with a set of characters costs about three times a test of both ends, and most
    # values have nothing to trim: trim only those that may.
    trimmed = f"trim({sql}, {literal(BLANKS)})"
    return f"CASE WHEN {_may_start_blank(sql)} OR {_ends_blank(sql)} THEN {trimmed} ELSE {sql} END"


def _may_start_blank(sql: str) -> str:
    # Every blank is at most U+0020 but the no-break space: a superset of the blanks (other
    # control characters), which only costs them a trim that finds nothing. With the suffixes,
    # under the regular expression's time on names, addresses and emails (measured; long
    # non-ASCII values, 200 characters, about 7% over).
    return f"(ascii({sql}) <= 32 OR ascii({sql}) = 160)"


def _ends_blank(sql: str) -> str:
    # Byte suffixes, exact (the no-break space's two bytes can only end a character): about
    # half the time of regexp_matches(x, '[...]$') (measured).
    return "(" + " OR ".join(f"suffix({sql}, {literal(b)})" for b in BLANKS) + ")"


def _bad_text(column: str) -> str:
    """Whether ``column`` held bytes that are not UTF-8 in this row (arrow_utils)."""
    # Nearly every row has no such column: the null test spares them the search.
    return f"(bad_text IS NOT NULL AND contains(bad_text, {literal(bad_text_marker(column))}))"


def fill_column(identifier: str) -> str:
    """The column of a rendered relation that holds an identifier the state completes."""
    return f"{OWN_COLUMN_PREFIX}fill_{identifier}"


def _ids_expr() -> str:
    """The identifiers a contact is sent with, as a JSON object, when there are several (a
    contact with one identifier can never miss another; a row that gains one finds such a
    contact by its key: ``StateStore.identities_sql``)."""
    present = " + ".join(f"(x_{name} IS NOT NULL)::INTEGER" for name in IDENTIFIERS)
    pairs = ", ".join(f"'{name}', x_{name}" for name in IDENTIFIERS)
    return f"CASE WHEN {present} >= 2 THEN CAST(json_object({pairs}) AS VARCHAR) END"


def _ascii_lower(sql: str) -> str:
    """Lower-cased ASCII letters only: ``lower`` folds look-alikes (the Kelvin sign, a dotted
    capital I) into ASCII, so a refused address would take someone else's contact key."""
    # translate() is about three times slower than lower(), which is right for pure ASCII
    # (as many bytes as characters): only other text takes translate.
    upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return (
        f"CASE WHEN strlen({sql}) = length({sql}) THEN lower({sql}) "
        f"ELSE translate({sql}, '{upper}', '{upper.lower()}') END"
    )


# A number as text: digits, one optional point, an optional exponent. DuckDB's own cast also
# reads "1_000", "inf" and hexadecimal, and goes through DOUBLE, rounding away digits.
_NUMBER_TEXT = r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?"
# ISO 8601 dates and date-times, with an optional zone (UTC-14 to +14; RFC 3339 allows a
# lowercase "t" and "z"). DuckDB's cast also reads "epoch", "infinity" and years beyond four
# digits, and refuses a zone after a blank or after a date alone: _timestamp mends those.
_DATE_TEXT = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}([Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?"
    r" ?([Zz]|[+-](0[0-9]|1[0-3])(:?[0-5][0-9])?|[+-]14(:?00)?)?"
)


def _number_text(src: str) -> str:
    """The JSON number a numeric text spells, digit for digit (``+007.50e3`` -> ``7.50e3``)."""
    s = _trim(src)
    body = f"ltrim({s}, '+-')"
    whole = f"coalesce(nullif(ltrim(regexp_extract({body}, '^[0-9]*'), '0'), ''), '0')"
    fraction = f"regexp_extract({body}, '\\.([0-9]+)', 1)"
    exponent = f"regexp_extract({body}, '[eE]([+-]?[0-9]+)$', 1)"
    return (
        f"CASE WHEN regexp_full_match({s}, {literal(_NUMBER_TEXT)}) THEN "
        f"(CASE WHEN starts_with({s}, '-') THEN '-' ELSE '' END) || {whole} || "
        f"(CASE WHEN {fraction} <> '' THEN '.' || {fraction} ELSE '' END) || "
        f"(CASE WHEN {exponent} <> '' THEN 'e' || {exponent} ELSE '' END) END"
    )


def text_list(src: str) -> str:
    """A list from text: a JSON array as its items (how dlt hands over a PostgreSQL array:
    ``'["a@x.co","b@x.co"]'``), anything else split on commas."""
    text = f"trim({src}, {literal(BLANKS)})"
    return (
        f"CASE WHEN starts_with({text}, '[') AND json_valid({text}) "
        f"AND json_type({text}) = 'ARRAY' THEN from_json({text}, '[\"VARCHAR\"]') "
        f"ELSE string_split({src}, ',') END"
    )


def _is_number_text(b: Binding) -> bool:
    return b.field_type == "Number" and b.arrow_kind == "string"


def _as_text(b: Binding, src: str) -> str:
    if b.arrow_kind == "decimal":
        # DuckDB spells a DECIMAL(p, p) without its leading zero (".50"): put it back.
        return f"regexp_replace(CAST({src} AS VARCHAR), '^(-?)\\.', '\\10.')"
    return f"CAST({src} AS VARCHAR)"


def _timestamp(b: Binding, src: str) -> str:
    """A Date field's value as a timestamp in UTC (null when absent or unreadable)."""
    # Timestamp columns arrive naive in UTC (normalize_arrow). Text is parsed as TIMESTAMPTZ
    # so an explicit offset is honoured, on cursors whose TimeZone is UTC (utc_cursor).
    if b.arrow_kind == "string":
        text = _trim(src)
        # "t"/"z" upper-cased, no blank before the zone, midnight for a date with a zone.
        cast = (
            "regexp_replace(regexp_replace(upper(" + text + "), ' ([Z+-])', '\\1'), "
            "'^([0-9]{4}-[0-9]{2}-[0-9]{2})([Z+-])', '\\1T00:00:00\\2')"
        )
        return (
            f"CASE WHEN regexp_full_match({text}, {literal(_DATE_TEXT)}) "
            f"THEN TRY_CAST({cast} AS TIMESTAMPTZ) END"
        )
    if b.arrow_kind == "date":
        return f"CAST({src} AS TIMESTAMP)"
    return src


def first_64_bits(hex_digest: str) -> str:
    # Of hex text, not DuckDB's md5_number_lower, which took twice md5's time (measured).
    return f"('0x' || left({hex_digest}, 16))::UBIGINT"


def duplicate_keys(relation: str) -> str:
    """Last row wins, defined once: per contact key occurring more than once in ``relation``
    (columns ``row_number``, ``contact_key``), ``contact_key``, ``last_row`` (the row that
    wins) and ``n`` (its rows)."""
    # Grouping 64-bit hashes first, then only the keys whose hash repeats, halves the time
    # of grouping every key (and its memory); a hash collision only makes a key a
    # candidate, the keys themselves decide.
    rel = ident(relation)
    return (
        f"SELECT contact_key, max(row_number) AS last_row, count(*) AS n FROM {rel} "
        f"WHERE hash(contact_key) IN (SELECT hash(contact_key) AS h FROM {rel} "
        "WHERE contact_key IS NOT NULL GROUP BY h HAVING count(*) > 1) "
        "AND contact_key IS NOT NULL GROUP BY contact_key HAVING count(*) > 1"
    )


class ContactSql:
    """Compiled SQL for one mapping; immutable, so one instance serves every thread."""

    def __init__(
        self,
        bindings: Sequence[Binding],
        *,
        list_ids: Sequence[str] = (),
        date_format: str = DEFAULT_DATE_FORMAT,
        identities: bool = False,
        on_invalid_value: str = "reject_row",
        list_column: ListColumn | None = None,
        deleted_sql: str = "false",
    ) -> None:
        self.bindings = list(bindings)
        self.date_format = date_format
        self.omit_fields = on_invalid_value == "omit_field"
        # The static lists (every contact's); a list column adds each row's own.
        self.scope = ",".join(sorted(list_ids))
        self.list_column = list_column
        self._scope_sql = (
            list_column.scope_sql(sorted(set(list_ids))) if list_column else literal(self.scope)
        )
        # True for a row the hard-delete column flags (see ``dispositions``); over the source.
        self.deleted_sql = deleted_sql
        # The identifier rule is in play (the mapping has several identifiers, or the account
        # has contacts with several): the check also gives each row's identifiers
        # (``i_<identifier>``), and the render takes identifiers the state completes
        # (``fill_column(name)``) and gives the identifiers sent (``ids``).
        self.identities = identities
        self._values = ", ".join(
            f"{self._value_expr(b, ident(b.column))} AS v{i}" for i, b in enumerate(self.bindings)
        )
        self._checks = self._compile_checks()

    # -- queries -----------------------------------------------------------------------------

    def check(self, relation: str) -> str:
        groups = self._problem_groups()
        ok = " AND ".join(self._group_ok(g) for g in range(len(groups)))
        masks = ", ".join(f"{e} AS p{g}" for g, e in enumerate(groups))
        given = "".join(f", {self._identifier(name)} AS i_{name}" for name in IDENTIFIERS)
        return (
            f"SELECT row_number, contact_key, {', '.join(self.problem_columns())}, "
            f"({ok}) AS ok{given if self.identities else ''}, flagged, "
            f"{self._fingerprint()} AS fingerprint FROM (SELECT *, {masks} FROM ("
            f"SELECT *, {self._key_expr()} AS contact_key FROM "
            f"({self._scan(relation, self._values)})))"
        )

    def keys(self, relation: str) -> str:
        """Per row of ``relation``: ``row_number``, ``contact_key``, ``flagged`` and the
        ``fingerprint`` the check gives it, without cleaning or checking any value but the
        identifiers: enough to find the rows unchanged since their last send (a fingerprint
        the state holds is of a row that was ok, and the same source values under the same
        signature are ok again) and those the check refused last time (``state.invalid_rows``).
        """
        keyed = ", ".join(
            f"{self._value_expr(b, ident(b.column))} AS v{i}"
            for i, b in enumerate(self.bindings)
            if b.kind == "identifier"
        )
        return (
            f"SELECT row_number, {self._key_expr()} AS contact_key, flagged, "
            f"{self._fingerprint()} AS fingerprint FROM ({self._scan(relation, keyed)})"
        )

    def identifier_keys(self, relation: str) -> str:
        """Over ``relation``, ``row_number`` and ``contact_key``: for each row the hard-delete
        column does not flag, one per identifier it has (``<identifier>:<value>``, as a key of
        that identifier would be), so every key the row's contact may be tracked under."""
        ids = [(i, b) for i, b in enumerate(self.bindings) if b.kind == "identifier"]
        if not ids:
            return "SELECT NULL::BIGINT AS row_number, NULL::VARCHAR AS contact_key WHERE false"
        values = ", ".join(f"{self._value_expr(b, ident(b.column))} AS v{i}" for i, b in ids)
        keys = ", ".join(f"{literal(b.field + ':')} || v{i}" for i, b in ids)
        return (
            f"SELECT row_number, unnest(list_filter([{keys}], lambda k: k IS NOT NULL)) "
            f"AS contact_key FROM ({self._scan(relation, values)}) WHERE NOT flagged"
        )

    def _scan(self, relation: str, values: str) -> str:
        """The rows of ``relation`` with ``values`` (``v0``...), their source values (``s0``...)
        and what every query over them uses."""
        sources = ", ".join(f"{ident(b.column)} AS s{i}" for i, b in enumerate(self.bindings))
        return (
            f"SELECT {ident(ROW_COLUMN)} AS row_number, {values}, {sources}, "
            f"{ident(BAD_TEXT_COLUMN)} AS bad_text, {self._scope_sql} AS list_scope, "
            f"coalesce({self.deleted_sql}, false) AS flagged FROM {ident(relation)}"
        )

    def render(self, relation: str) -> str:
        """Per row: ``contact_key``, ``contact_json``, ``content_hash``, ``ids`` and
        ``list_scope``."""
        passed = [(self._scope_sql, "list_scope")]
        source = self._rendered_values(relation, passed)
        ids = "NULL::VARCHAR"
        if self.identities:
            completed = ", ".join(
                f"coalesce({self._identifier(name)}, {ident(fill_column(name))}) AS x_{name}"
                for name in IDENTIFIERS
            )
            passed += [(ident(fill_column(name)), fill_column(name)) for name in IDENTIFIERS]
            source = f"SELECT *, {completed} FROM ({self._rendered_values(relation, passed)})"
            ids = _ids_expr()
        return (
            f"SELECT contact_key, contact_json, "
            f"{first_64_bits(self._content_hash('md5', 'list_scope'))} AS "
            f"content_hash, ids, list_scope FROM (SELECT {self._key_expr()} AS contact_key, "
            f"{self._json_expr()} AS contact_json, {ids} AS ids, list_scope FROM ({source}))"
        )

    def _identifier(self, name: str) -> str:
        """The row's (cleaned) value of identifier ``name``, or NULL when it is not mapped."""
        at = next(
            (i for i, b in enumerate(self.bindings) if b.kind == "identifier" and b.field == name),
            None,
        )
        return "NULL::VARCHAR" if at is None else f"v{at}"

    def _rendered_values(self, relation: str, passed: Sequence[tuple[str, str]] = ()) -> str:
        """``v0``, ``v1``...: the values to send; with omit_field, null where a check fails.
        ``passed``: (expression over ``relation``, name) of more columns to carry along."""
        inner = "".join(f", {expr} AS {ident(name)}" for expr, name in passed)
        names = "".join(f", {ident(name)}" for _, name in passed)
        omitted: dict[int, list[str]] = {}
        for c in self._checks:
            if c.omits is not None:
                omitted.setdefault(c.omits, []).append(f"coalesce({c.condition}, false)")
        if not omitted:
            return f"SELECT {self._values}{inner} FROM {ident(relation)}"
        values = ", ".join(
            f"CASE WHEN {' OR '.join(omitted[i])} THEN NULL ELSE v{i} END AS v{i}"
            if i in omitted
            else f"v{i}"
            for i in range(len(self.bindings))
        )
        sources = ", ".join(f"{ident(b.column)} AS s{i}" for i, b in enumerate(self.bindings))
        return (
            f"SELECT {values}{names} FROM (SELECT {self._values}, {sources}{inner} "
            f"FROM {ident(relation)})"
        )

    def legacy_hash(self, relation: str) -> str:
        """``h``: per row of ``relation`` (column ``contact_json``), the schema-4 SHA-256."""
        return f"SELECT {self._content_hash('sha256', literal(self.scope))} AS h FROM " + (
            ident(relation)
        )

    def rejects(self, relation: str, checks: str) -> str:
        masks = ", ".join(self.problem_columns())
        return (
            "SELECT b.row_number, b.contact_key, c.column, c.reason FROM "
            f"(SELECT row_number, contact_key, unnest([{masks}]) AS mask, "
            f"unnest(range({len(self.problem_columns())})) AS grp FROM {ident(relation)}) b "
            f"JOIN {ident(checks)} c ON c.grp = b.grp AND (b.mask & c.bit) <> 0 "
            "ORDER BY b.row_number, c.ord"
        )

    def checks_table(self) -> pa.Table:
        """The checks, for ``rejects``: the bit of each in its group's mask, column, reason
        (a check that omits a field with omit_field is one bit like any other)."""
        return pa.table(
            {
                "grp": [i // _BITS for i in range(len(self._checks))],
                "bit": [1 << (i % _BITS) for i in range(len(self._checks))],
                "ord": list(range(len(self._checks))),
                "column": [c.column for c in self._checks],
                "reason": [c.reason for c in self._checks],
            }
        )

    def problem_columns(self) -> list[str]:
        """The check's problem masks, ``p0``, ``p1``..., one per 63 checks."""
        return [f"p{g}" for g in range(0, (len(self._checks) + _BITS - 1) // _BITS)]

    # -- values ------------------------------------------------------------------------------

    def _value_expr(self, b: Binding, src: str) -> str:
        if b.kind == "identifier":
            text = f"nullif({_trim(_as_text(b, src))}, '')"
            return _ascii_lower(text) if b.field == "email" else text
        if b.kind == "alternate_emails":
            items = src if b.arrow_kind == "string_list" else text_list(src)
            cleaned = (
                f"list_filter(list_transform({items}, lambda x: {_ascii_lower(_trim('x'))}), "
                "lambda x: x <> '')"
            )
            return f"CASE WHEN len({cleaned}) > 0 THEN {cleaned} END"
        if b.field_type == "Number":
            return _number_text(src) if b.arrow_kind == "string" else src
        if b.field_type == "Date":
            return self._date_expr(b, src)
        return f"nullif({self._text_expr(b, src)}, '')"

    def _text_expr(self, b: Binding, src: str) -> str:
        if b.arrow_kind != "string":
            return self._scalar_text(b, src)
        # Whitespace around a name or an address is noise (and char(n) pads with blanks,
        # which would overwrite the contact's value and break the length limits); a custom
        # Text value keeps leading blanks, which may mean something, and loses the padding.
        if b.kind == "custom":
            padded = _ends_blank(src)  # guarded as in _trim
            return f"CASE WHEN {padded} THEN rtrim({src}, {literal(BLANKS)}) ELSE {src} END"
        return _trim(src)

    def _scalar_text(self, b: Binding, src: str) -> str:
        if b.arrow_kind == "boolean":
            return f"CASE WHEN {src} THEN 'true' WHEN NOT {src} THEN 'false' END"
        if b.arrow_kind == "date":
            return f"strftime({src}, '%Y-%m-%d')"
        if b.arrow_kind == "timestamp":
            return f"strftime({src}, {literal(self.date_format)})"
        return _as_text(b, src)

    def _date_expr(self, b: Binding, src: str) -> str:
        return f"strftime({_timestamp(b, src)}, {literal(self.date_format)})"

    def _key_expr(self) -> str:
        # The key is the first non-empty identifier in SendGrid's priority order (email
        # first), whatever order the mapping lists them in.
        position = {name: i for i, name in enumerate(IDENTIFIERS)}
        identifiers = sorted(
            ((i, b) for i, b in enumerate(self.bindings) if b.kind == "identifier"),
            key=lambda ib: position[ib[1].field],
        )
        whens = [
            f"WHEN v{i} IS NOT NULL THEN {literal(b.field + ':')} || v{i}" for i, b in identifiers
        ]
        return f"CASE {' '.join(whens)} END"

    # -- checks ------------------------------------------------------------------------------

    def _compile_checks(self) -> list[_Check]:
        checks: list[_Check] = []
        for i, b in enumerate(self.bindings):
            omits = i if self.omit_fields and b.kind != "identifier" else None
            checks += [
                replace(c, omits=omits if c.of_value else None)
                for c in self._binding_checks(b, f"v{i}", f"s{i}")
            ]
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
        if self.list_column is not None:  # its lists would silently be lost
            col = self.list_column.column
            checks.append(
                _Check(
                    col,
                    _bad_text(col),
                    "list_column: not valid UTF-8 text",
                )
            )
        return checks

    def _binding_checks(self, b: Binding, v: str, src: str) -> list[_Check]:
        col = b.column
        checks: list[_Check] = []
        if b.arrow_kind in ("string", "string_list"):
            # Bytes that are not UTF-8 were made null before DuckDB saw them (arrow_utils).
            checks.append(
                _Check(
                    col,
                    _bad_text(col),
                    f"{b.field}: not valid UTF-8 text",
                    of_value=False,
                )
            )
        if b.field == "email":
            checks.append(
                _Check(
                    col,
                    f"NOT regexp_full_match({v}, {literal(EMAIL_PATTERN)})",
                    "email: not a valid email address",
                )
            )
        # Both phone fields must be E.164 (SendGrid's contact docs), not only the identifier.
        if b.field in ("phone_number_id", "phone_number"):
            checks.append(
                _Check(
                    col,
                    f"NOT regexp_full_match({v}, {literal(E164_PATTERN)})",
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
                    f"{literal(EMAIL_PATTERN)}) OR length(x) > 254)) > 0",
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
        return checks + self._typed_checks(b, v, src)

    def _typed_checks(self, b: Binding, v: str, src: str) -> list[_Check]:
        col, name = b.column, b.field
        given = f"nullif({_trim(src)}, '') IS NOT NULL"
        if b.field_type == "Number" and b.arrow_kind == "string":
            spelled = f"regexp_full_match(lower({_trim(src)}), '[+-]?(nan|inf|infinity)')"
            return [
                _Check(col, f"{v} IS NULL AND {given} AND NOT {spelled}", f"{name}: not a number"),
                _Check(
                    col,
                    f"{spelled} OR NOT isfinite(TRY_CAST({v} AS DOUBLE))",
                    f"{name}: not a finite number",
                ),
            ]
        if b.arrow_kind == "floating" and b.field_type in ("Number", "Text"):
            # As text they would go out as "nan" and "inf": refused for Text as for Number.
            return [
                _Check(
                    col, f"NOT isfinite({src})", f"{name}: not a finite number (NaN or infinity)"
                )
            ]
        if b.field_type == "Date":
            ts = _timestamp(b, src)
            # SendGrid's dates are years 1 to 9999; beyond, its job fails the contact and every
            # run would send it again. The last second of 9999 is in range, its fractions too
            # (psycopg2 reads PostgreSQL's 'infinity' as 9999-12-31 23:59:59.999999).
            out_of_range = (
                f"NOT ({ts} BETWEEN TIMESTAMP '0001-01-01' "
                "AND TIMESTAMP '9999-12-31 23:59:59.999999')"
            )
            if b.arrow_kind != "string":
                return [_Check(col, out_of_range, f"{name}: a date outside years 1 to 9999")]
            return [
                _Check(col, f"{ts} IS NULL AND {given}", f"{name}: not a date or timestamp"),
                _Check(col, out_of_range, f"{name}: a date outside years 1 to 9999"),
            ]
        return []

    def _group_ok(self, g: int) -> str:
        """SQL: group ``g``'s mask has no check that refuses the row set."""
        group = self._checks[g * _BITS : (g + 1) * _BITS]
        refusing = sum(1 << j for j, c in enumerate(group) if c.omits is None)
        if refusing == (1 << len(group)) - 1:
            return f"p{g} = 0"
        return f"(p{g} & {refusing}) = 0" if refusing else "true"

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

    # -- JSON and hashes ---------------------------------------------------------------------

    def _json_expr(self) -> str:
        # `||` with NULL is NULL and concat_ws skips NULLs: omitted fields cost no CASE.
        def piece(i: int, b: Binding) -> str:
            # A Number read from text is already its JSON text (every digit kept).
            value = f"v{i}" if _is_number_text(b) else f"to_json(v{i})"
            if self.identities and b.kind == "identifier":
                value = f"to_json(x_{b.field})"  # the row's, or the one the state completes
            return f"{literal(json_key(b.json_key) + ':')} || {value}"

        top = [piece(i, b) for i, b in enumerate(self.bindings) if b.kind != "custom"]
        if self.identities:  # identifiers the mapping lacks but the contact has
            mapped = {b.field for b in self.bindings if b.kind == "identifier"}
            top += [
                f"{literal(json_key(name) + ':')} || to_json(x_{name})"
                for name in IDENTIFIERS
                if name not in mapped
            ]
        custom = [piece(i, b) for i, b in enumerate(self.bindings) if b.kind == "custom"]
        if custom:
            top.append(
                "'\"custom_fields\":{' || nullif(concat_ws(',', " + ", ".join(custom) + "), '')"
                " || '}'"
            )
        return "'{' || concat_ws(',', " + ", ".join(top) + ") || '},'"

    @staticmethod
    def _content_hash(function: str, scope: str) -> str:
        # What a content hash covers, whatever the function: the list scope and the JSON.
        return f"{function}({scope} || {literal(chr(10))} || contact_json)"

    def _fingerprint(self) -> str:
        """The fingerprint of a row: a 64-bit digest of its source values as they arrive,
        before any cleaning (so that finding a row unchanged costs no cleaning or checking),
        with their types (``hash`` of DECIMAL 1.5 and of DECIMAL 0.15 is the same: both are
        the integer 15), the text that was not UTF-8, the row's lists and the signature.

        Text (and lists of it) goes through MD5, as one JSON object: DuckDB's ``hash`` of a
        string mixes it 8 bytes at a time, so two strings of one length that differ only in
        the last byte of such blocks ("Apt 1200" and "Apt 1207") collide about once in 256,
        and an equal fingerprint is taken as "unchanged" (the change never sent, a value made
        invalid never checked). Fixed-width values keep ``hash``, which is a bijection of each
        value, mixed in order; a float adds its sign, since ``hash`` folds -0.0 into 0.0."""
        n = len(self.bindings)
        types = "concat_ws(',', " + ", ".join(f"typeof(s{i})" for i in range(n)) + ")"
        text = [f"s{i} := s{i}" for i, b in enumerate(self.bindings) if b.arrow_kind in _TEXT_KINDS]
        text += ["bad := bad_text", "lists := list_scope"]
        digest = first_64_bits(f"md5(CAST(to_json(struct_pack({', '.join(text)})) AS VARCHAR))")
        values = "".join(
            f", s{i}" + (f", signbit(s{i})" if b.arrow_kind == "floating" else "")
            for i, b in enumerate(self.bindings)
            if b.arrow_kind not in _TEXT_KINDS
        )
        return f"hash({literal(self._signature())}, {types}, {digest}{values})"

    def _signature(self) -> str:
        # Everything besides the values that shapes a contact's JSON or decides whether a
        # row is ok, and how: a fingerprint taken under another mapping (fields, or the
        # columns feeding them), field type, list scope or list column, date format, policy
        # or rendering version never matches.
        fields = [
            [b.json_key, b.kind, b.field, b.field_type, b.arrow_kind, b.max_length, b.column]
            for b in self.bindings
        ]
        policy = "omit_field" if self.omit_fields else "reject_row"
        lists = None if self.list_column is None else self.list_column.column
        return json.dumps(
            [FINGERPRINT_VERSION, self.scope, lists, fields, self.date_format, policy]
        )

    def checks_digest(self) -> int:
        """A 64-bit digest of the checks and their order, which give a problem mask its
        meaning (``rejects``): masks kept under other checks are never read under these."""
        layout = [[c.column, c.reason, c.omits is not None] for c in self._checks]
        return int(hashlib.md5(json.dumps(layout).encode()).hexdigest()[:15], 16)
