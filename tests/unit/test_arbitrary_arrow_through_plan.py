"""Arbitrary Arrow through the mapping, the plan and the render (issue 13's proof).

Hypothesis draws Arrow schemas and values: text with any code point, bytes that are not UTF-8,
nulls, ``large_string``, ``string_view``, dictionary-encoded text, integers of every width,
floats of every width with NaN and infinities, decimals up to 76 digits, booleans, dates and
timestamps of every unit with and without zones and at the extremes of their ranges, lists of
text, and types no field takes (binary, times, durations, structs, lists of numbers). Over
them it draws mappings: identifiers, reserved fields and custom fields of every type on any
column. Each case goes through ``tests.planning.plan_rows`` (the real bind, plan and render).

Properties:

* nothing crashes: a pairing the README's rules refuse is a ``ConfigurationError`` naming the
  column, raised before any row is read; every other mapping plans and renders;
* every row is rendered, or rejected with a non-empty reason, or superseded by a later row of
  its contact key; never two of these;
* every rendered contact is valid against the official spec's ``ContactRequest``, carries an
  identifier, and holds each custom field as its type asks (Text: a string of at most 1,000
  characters; Number: a finite JSON number; Date: a date the emulator's job accepts);
* every rendered value is the source value, converted as the README says (text copied,
  emails trimmed and lower-cased, integers and decimals digit for digit, dates and timestamps
  as the same UTC instant), and a value that cannot be sent (a date outside years 1 to 9999,
  NaN) rejects its row rather than being sent as something else.

The fast test draws 50 cases; the slow one (``make test-slow``) 1,000. What the property
found is pinned at the end of this module, one example per bug, named after the behaviour
the README promises. Column names DuckDB cannot tell apart (equal but for case, holding a
NUL, starting with ``__sg_``) are refused naming them, before any row is read.

The spec lives outside the repository (``../shared/sendgrid-openapi/``, or
``SENDGRID_OPENAPI_DIR``): without it the spec check is skipped with the reason, unless
``SENDGRID_DESTINATION_REQUIRE_OPENAPI=1``, which makes it a failure.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from sendgrid_destination.arrow_utils import with_row_numbers
from sendgrid_destination.contact_model import E164_RE, EMAIL_RE, IDENTIFIERS
from sendgrid_destination.emulator.rules import is_valid_date
from sendgrid_destination.errors import ConfigurationError
from sendgrid_destination.state import StateStore
from tests.emulator.support import spec_dir
from tests.planning import Planned, contact_sql, one_batch, plan_rows

# -- the specs -----------------------------------------------------------------------------

CONTACTS_SPEC = "tsg_mc_contacts_v3.json"
# Reserved fields the API accepts that ContactRequest does not list (docs/emulator.md).
UNLISTED_FIELDS = ("phone_number", "whatsapp", "line", "facebook", "unique_name")


class Spec:
    """The spec's ContactRequest: ``validate(contact)`` and its ``fields``."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.validator = Draft202012Validator(schema)
        self.fields = set(schema["properties"])

    def validate(self, contact: Any) -> None:
        self.validator.validate(contact)

    def __repr__(self) -> str:  # Hypothesis prints it with every falsifying example
        return "Spec(ContactRequest)"


@cache
def contact_request() -> Spec | str:
    """The spec's ContactRequest, or why it cannot be had."""
    path = spec_dir() / CONTACTS_SPEC
    if not path.is_file():
        return f"the SendGrid OpenAPI spec is not at {path} (set SENDGRID_OPENAPI_DIR)"
    return Spec(json.loads(path.read_text())["components"]["schemas"]["ContactRequest"])


@pytest.fixture(scope="module")
def spec() -> Spec:
    found = contact_request()
    if isinstance(found, str):
        if os.environ.get("SENDGRID_DESTINATION_REQUIRE_OPENAPI") == "1":
            pytest.fail(found + " and SENDGRID_DESTINATION_REQUIRE_OPENAPI=1")
        pytest.skip(found)
    return found


# -- Arrow columns -------------------------------------------------------------------------

UTC = dt.UTC
EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
# What each documented target takes (README, "How values are sent"), in the test's own terms.
TEXT_KINDS = {"text"}
SCALAR_KINDS = {"text", "integer", "floating", "decimal", "boolean", "date", "timestamp", "time"}
TAKES = {
    "email": TEXT_KINDS,
    "alternate_emails": {"text", "text_list"},
    "identifier": {"text", "integer", "decimal"},
    "Text": SCALAR_KINDS,
    "Number": {"integer", "floating", "decimal", "text"},
    "Date": {"date", "timestamp", "text"},
}
TIME_UNITS = ("s", "ms", "us", "ns")
PER_SECOND = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}
ZONES = (None, "UTC", "Europe/Paris", "+05:30", "America/St_Johns", "-11:00")
INT_TYPES = (
    pa.int8(), pa.int16(), pa.int32(), pa.int64(),
    pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64(),
)  # fmt: skip


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # text, text_list, integer, floating, decimal, boolean, date, timestamp, other
    array: pa.Array
    values: list[Any]  # the Python values (bytes: text that is not UTF-8; ints for dates)


def _text_array(values: list[Any], arrow_type: pa.DataType) -> pa.Array:
    """Text of ``arrow_type``; bytes values become text that is not valid UTF-8."""
    raw = [v.encode() if isinstance(v, str) else v for v in values]
    binary = {
        pa.string(): pa.binary(),
        pa.large_string(): pa.large_binary(),
    }.get(arrow_type) or (pa.binary_view() if hasattr(pa, "binary_view") else pa.binary())
    return pa.array(raw, binary).view(arrow_type)


DATE_TEXT = (
    r"[0-9]{4,5}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2})?)?"
    r"( ?(Z|[+-][0-9]{2}:?[0-9]{2}))?"
)
NOT_UTF8 = st.sampled_from([b"\xff", b"a\xc3", b"\xed\xa0\x80x", b"\xc0\xaf", b"ok\x80"])
SPACES = st.sampled_from(["", " ", "  ", "\t", "\u00a0", "\n"])


@st.composite
def emails(draw: st.DrawFn) -> str:
    local = draw(st.from_regex(r"[a-zA-Z0-9._%+'-]{1,12}", fullmatch=True))
    domain = draw(st.from_regex(r"[a-zA-Z0-9-]{1,10}(\.[a-zA-Z]{2,6}){1,2}", fullmatch=True))
    return draw(SPACES) + f"{local}@{domain}" + draw(SPACES)


PLAIN = st.from_regex(r"[A-Za-z][A-Za-z0-9 .'-]{0,15}", fullmatch=True)
TEXTS = st.one_of(
    PLAIN,
    PLAIN,
    PLAIN,
    st.text(max_size=12),
    emails(),
    st.sampled_from(["\u212aate@example.com", "\u0130nfo@example.com", "a@b", "", " "]),
    st.from_regex(r"\+[0-9]{1,16}", fullmatch=True),
    st.from_regex(r" ?[+-]?[0-9]{0,25}(\.[0-9]{0,12})?([eE][+-]?[0-9]{1,4})? ?", fullmatch=True),
    st.sampled_from(["nan", "-inf", "Infinity", "1_000", "0x1F", "1e400", "epoch", "infinity"]),
    st.from_regex(DATE_TEXT, fullmatch=True),
    st.integers(40, 60).map(lambda n: "n" * n),  # around the 50-character limits
    st.integers(995, 1005).map(lambda n: "t" * n),  # around Text custom fields' 1,000
    st.text(alphabet="a,@. bB\u212a", max_size=30),  # alternate emails as text
)


def text_columns() -> st.SearchStrategy[tuple[pa.DataType, st.SearchStrategy[Any]]]:
    types = [pa.string(), pa.large_string()]
    if hasattr(pa, "string_view"):
        types.append(pa.string_view())
    values = st.one_of(st.none(), TEXTS, TEXTS, TEXTS, NOT_UTF8)
    return st.tuples(st.sampled_from(types), st.just(values))


@st.composite
def columns(draw: st.DrawFn, name: str, rows: int) -> Column:
    kind = draw(
        st.sampled_from(
            [
                *("text", "text", "text", "dictionary", "integer", "floating", "decimal"),
                *("boolean", "date", "timestamp", "timestamp", "text_list", "null", "other"),
            ]
        )
    )
    return draw(_BUILDERS[kind](name, rows))


def _values(draw: st.DrawFn, rows: int, values: st.SearchStrategy[Any]) -> list[Any]:
    return draw(st.lists(st.one_of(st.none(), values, values), min_size=rows, max_size=rows))


@st.composite
def _text(draw: st.DrawFn, name: str, rows: int) -> Column:
    arrow_type, strategy = draw(text_columns())
    values = draw(st.lists(strategy, min_size=rows, max_size=rows))
    return Column(name, "text", _text_array(values, arrow_type), values)


@st.composite
def _dictionary(draw: st.DrawFn, name: str, rows: int) -> Column:
    values = _values(draw, rows, st.one_of(TEXTS, NOT_UTF8))
    value_type = draw(st.sampled_from([pa.string(), pa.large_string()]))
    index_type = draw(st.sampled_from([pa.int8(), pa.int16(), pa.int32(), pa.uint8()]))
    encoded = _text_array(values, value_type).dictionary_encode()
    array = encoded.cast(pa.dictionary(index_type, value_type))
    return Column(name, "text", array, values)


@st.composite
def _integer(draw: st.DrawFn, name: str, rows: int) -> Column:
    arrow_type = draw(st.sampled_from(INT_TYPES))
    # Not to_pandas_dtype(): pyarrow 18 imports pandas for it, and pandas is no dependency.
    sign = "uint" if pa.types.is_unsigned_integer(arrow_type) else "int"
    info = np.iinfo(f"{sign}{arrow_type.bit_width}")
    values = _values(draw, rows, st.integers(int(info.min), int(info.max)))
    return Column(name, "integer", pa.array(values, arrow_type), values)


@st.composite
def _floating(draw: st.DrawFn, name: str, rows: int) -> Column:
    width: Literal[16, 32, 64] = draw(st.sampled_from([16, 32, 64]))
    values = _values(draw, rows, st.floats(width=width))
    arrow_type = {16: pa.float16(), 32: pa.float32(), 64: pa.float64()}[width]
    dtype = {16: np.float16, 32: np.float32, 64: np.float64}[width]
    filled = np.array([0.0 if v is None else v for v in values], dtype)
    array = pa.array(filled, arrow_type, mask=np.array([v is None for v in values], bool))
    return Column(name, "floating", array, values)


@st.composite
def _decimal(draw: st.DrawFn, name: str, rows: int) -> Column:
    wide = draw(st.booleans())
    precision = draw(st.integers(1, 76 if wide else 38))
    scale = draw(st.integers(0, precision))
    digits = _values(draw, rows, st.integers(-(10**precision) + 1, 10**precision - 1))
    values = [None if d is None else Decimal(f"{d}E-{scale}") for d in digits]
    arrow_type = (pa.decimal256 if wide else pa.decimal128)(precision, scale)
    return Column(name, "decimal", pa.array(values, arrow_type), values)


@st.composite
def _boolean(draw: st.DrawFn, name: str, rows: int) -> Column:
    values = _values(draw, rows, st.booleans())
    return Column(name, "boolean", pa.array(values, pa.bool_()), values)


@st.composite
def _date(draw: st.DrawFn, name: str, rows: int) -> Column:
    # Days (date32) or milliseconds (date64) since the epoch: typical years, and the extremes.
    if draw(st.booleans()):
        days = st.one_of(
            st.integers(-719_162, 2_932_896),  # years 1 to 9999
            st.integers(-(2**31), 2**31 - 1),
            st.sampled_from([-719_163, 2_932_897, 110_000_000, -(2**31), 2**31 - 1]),
        )
        values = _values(draw, rows, days)
        return Column(name, "date", pa.array(values, pa.int32()).cast(pa.date32()), values)
    ms = st.one_of(
        st.integers(-719_162, 2_932_896).map(lambda d: d * 86_400_000),
        st.integers(-(2**63), 2**63 - 1),
        st.sampled_from([2**62, 2**63 - 1, -(2**63), 10**16, -(10**16)]),
    )
    values = [None if v is None else v for v in _values(draw, rows, ms)]
    array = pa.array(values, pa.int64()).cast(pa.date64())
    return Column(name, "date", array, [None if v is None else ("ms", v) for v in values])


@st.composite
def _timestamp(draw: st.DrawFn, name: str, rows: int) -> Column:
    unit = draw(st.sampled_from(TIME_UNITS))
    zone = draw(st.sampled_from(ZONES))
    per = PER_SECOND[unit]
    low, high = -(2**63), 2**63 - 1
    ticks = st.one_of(
        # years 1 to 9999, as far as 64 bits of the unit reach
        st.integers(max(low, -62_135_596_800 * per), min(high, 253_402_300_799 * per)),
        st.integers(low, high),
        # past what 64-bit microseconds hold (Long.MAX_VALUE ms is a common "never")
        st.sampled_from([2**62, high, low, 9_223_372_036_854_775, 10**15]),
    )
    values = _values(draw, rows, ticks)
    array = pa.array(values, pa.int64()).cast(pa.timestamp(unit, zone))
    return Column(name, "timestamp", array, [None if v is None else (unit, v) for v in values])


@st.composite
def _text_list(draw: st.DrawFn, name: str, rows: int) -> Column:
    item = st.one_of(st.none(), emails(), TEXTS)
    values = _values(draw, rows, st.lists(item, max_size=7))
    text_lists = [pa.list_, pa.large_list, pa.list_view, pa.large_list_view]
    arrow_type = draw(st.sampled_from(text_lists))(pa.string())
    return Column(name, "text_list", pa.array(values, arrow_type), values)


def _null(name: str, rows: int) -> st.SearchStrategy[Column]:
    return st.just(Column(name, "text", pa.nulls(rows), [None] * rows))


@st.composite
def _other(draw: st.DrawFn, name: str, rows: int) -> Column:
    choices: list[tuple[pa.DataType, st.SearchStrategy[Any]]] = [
        (pa.binary(), st.binary(max_size=6)),
        (pa.large_binary(), st.binary(max_size=6)),
        (pa.time32("s"), st.integers(0, 86_399).map(lambda s: dt.time(s // 3600, s // 60 % 60))),
        (pa.time64("us"), st.times()),
        (pa.duration("ms"), st.timedeltas(max_value=dt.timedelta(days=999))),
        (pa.list_(pa.int64()), st.lists(st.integers(-5, 5), max_size=3)),
        (pa.struct([("a", pa.int32())]), st.fixed_dictionaries({"a": st.integers(0, 9)})),
        (pa.map_(pa.string(), pa.int8()), st.dictionaries(st.text(max_size=2), st.integers(0, 9))),
        (pa.binary(3), st.binary(min_size=3, max_size=3)),
    ]
    arrow_type, strategy = draw(st.sampled_from(choices))
    values = _values(draw, rows, strategy)
    if pa.types.is_map(arrow_type):
        values = [None if v is None else list(v.items()) for v in values]
    kind = "time" if pa.types.is_time(arrow_type) else "other"  # Text takes a time of day
    return Column(name, kind, pa.array(values, arrow_type), values)


_BUILDERS = {
    "text": _text,
    "dictionary": _dictionary,
    "integer": _integer,
    "floating": _floating,
    "decimal": _decimal,
    "boolean": _boolean,
    "date": _date,
    "timestamp": _timestamp,
    "text_list": _text_list,
    "null": _null,
    "other": _other,
}

# Column names: ordinary, odd, and the names the compiled SQL uses for itself.
NAMES = st.one_of(
    st.text(min_size=1, max_size=8),
    st.sampled_from(
        [
            *("email", "Email", "EMAIL", "row_number", "contact_key", "ok", "v0", "s0", "p0"),
            *("bad_text", "__sg_bad_text"),
            *("__sg_row", 'a"b', "x'y", "semi; DROP TABLE t", "日本 名", "UPPER", "fingerprint"),
        ]
    ),
)


# -- mappings ------------------------------------------------------------------------------

OTHER_FIELDS = [
    "first_name", "last_name", "address_line_1", "address_line_2", "city",
    "state_province_region", "postal_code", "country", "phone_number", "whatsapp", "line",
    "facebook", "unique_name", "alternate_emails",
]  # fmt: skip
CUSTOM_TYPES = {"Text": "T", "Number": "N", "Date": "D"}


@dataclass(frozen=True)
class Case:
    columns: dict[str, Column]
    rows: int
    mapping: dict[str, Any]
    types: dict[str, str]
    ids: dict[str, str]

    def table(self) -> pa.Table:
        return pa.table({name: c.array for name, c in self.columns.items()})

    def targets(self) -> list[tuple[str, str, str, str | None]]:
        """(field, rule, column, custom field ID) for every mapped field."""
        found: list[tuple[str, str, str, str | None]] = []
        for field, column in self.mapping.items():
            if field == "custom_fields":
                continue
            rule = "email" if field == "email" else "identifier" if field in IDENTIFIERS else None
            if rule is None:
                rule = "alternate_emails" if field == "alternate_emails" else "Text"
            found.append((field, rule, column, None))
        for name, column in self.mapping.get("custom_fields", {}).items():
            found.append((name, self.types[name], column, self.ids[name]))
        return found

    def refused_columns(self) -> set[str]:
        """Columns whose kind a field they feed cannot take (README's rules; a decimal wider
        than 38 digits is taken by none)."""
        return {
            c
            for _, rule, c, _ in self.targets()
            if self.columns[c].kind not in TAKES[rule] or _wide_decimal(self.columns[c].array.type)
        }

    def clashing_names(self) -> set[str]:
        """Column names the SQL cannot tell apart (README: refused naming them): equal but
        for case, holding a NUL, or starting with the destination's own prefix ``__sg_``."""
        lowered = [name.lower() for name in self.columns]
        return {
            name
            for name in self.columns
            if lowered.count(name.lower()) > 1 or "\x00" in name or name.lower().startswith("__sg_")
        }


def _wide_decimal(data_type: pa.DataType) -> bool:
    return bool(pa.types.is_decimal256(data_type) and data_type.precision > 38)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    rows = draw(st.integers(0, 8))
    names = draw(st.lists(NAMES, min_size=1, max_size=6, unique=True))
    built = {name: draw(columns(name, rows)) for name in names}
    if draw(st.integers(0, 9)) < 7:  # mostly a column of addresses to key the rows by
        key = draw(NAMES.filter(lambda n: n not in built))
        values = draw(
            st.lists(st.one_of(emails(), emails(), emails(), TEXTS), min_size=rows, max_size=rows)
        )
        built[key] = Column(key, "text", pa.array(values, pa.string()), values)
    identifiers = draw(st.lists(st.sampled_from(IDENTIFIERS), min_size=1, max_size=4, unique=True))
    others = draw(st.lists(st.sampled_from(OTHER_FIELDS), max_size=5, unique=True))
    custom = draw(
        st.lists(st.sampled_from(list(CUSTOM_TYPES)), max_size=4).map(
            lambda kinds: {f"cf_{i}_{k.lower()}": k for i, k in enumerate(kinds)}
        )
    )
    rules = {f: "email" if f == "email" else "identifier" for f in identifiers}
    rules |= {f: "alternate_emails" if f == "alternate_emails" else "Text" for f in others}
    mapping: dict[str, Any] = {f: draw(_column_for(built, rule)) for f, rule in rules.items()}
    if custom:
        mapping["custom_fields"] = {n: draw(_column_for(built, k)) for n, k in custom.items()}
    ids = {name: f"e{i + 1}_{CUSTOM_TYPES[k]}" for i, (name, k) in enumerate(custom.items())}
    return Case(built, rows, mapping, custom, ids)


def _column_for(built: dict[str, Column], rule: str) -> st.SearchStrategy[str]:
    """Mostly a column the rule takes (so that rows get planned), sometimes any column."""
    fitting = sorted(name for name, c in built.items() if c.kind in TAKES[rule])
    anything = st.sampled_from(sorted(built))
    return (
        st.one_of(st.sampled_from(fitting), st.sampled_from(fitting), anything)
        if fitting
        else anything
    )


# -- the oracle: what a rendered value must be ---------------------------------------------

BLANKS = " \t\n\r\f\v\u00a0"
_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ASCII_LOWER = str.maketrans(_UPPER, _UPPER.lower())
NUMBER_TEXT = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
DATE_ONLY = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
RENDERED_TIME = re.compile(r"(-?[0-9]+)-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")
MISSING = object()  # the field is omitted from the contact
REFUSE = object()  # the row cannot be sent: it must be rejected, never rendered
ANY = object()  # the oracle does not say (the spec and type checks still apply)


class Unsendable(AssertionError):
    """A rendered row holds a value the rules say cannot be sent (its row must be rejected)."""


def expected_value(rule: str, column: Column, row: int, *, custom: bool = False) -> Any:
    """What the rendered contact must hold for this field of this row (or MISSING, REFUSE,
    ANY, or a list of acceptable values); ``custom``: a custom field (README: its text loses
    only trailing whitespace, a reserved field's loses both ends)."""
    value = column.values[row]
    if value is None:
        return MISSING
    if isinstance(value, bytes):
        return REFUSE  # text that is not UTF-8
    if rule == "email":
        return _email(value)
    if rule == "alternate_emails":
        return _alternate_emails(column, value)
    if rule == "identifier":
        return _identifier(column, value)
    if rule == "Text":
        return _text_value(column, value, custom)
    return {"Number": _number, "Date": _date_value}[rule](column, value)


def _email(value: str) -> Any:
    cleaned = value.strip(BLANKS).translate(ASCII_LOWER)
    if not cleaned:
        return MISSING
    return cleaned if EMAIL_RE.fullmatch(cleaned) and len(cleaned) <= 254 else REFUSE


def _alternate_emails(column: Column, value: Any) -> Any:
    items = value.split(",") if column.kind == "text" else value
    if any(isinstance(item, bytes) for item in items):
        return REFUSE
    cleaned = [i.strip(BLANKS).translate(ASCII_LOWER) for i in items if i is not None]
    cleaned = [i for i in cleaned if i]
    if not cleaned:
        return MISSING
    valid = all(EMAIL_RE.fullmatch(i) and len(i) <= 254 for i in cleaned)
    return cleaned if valid and len(cleaned) <= 5 else REFUSE


def _identifier(column: Column, value: Any) -> Any:
    if column.kind == "integer":
        return str(value)
    if column.kind == "decimal":
        return _decimal_text(column, value)
    return value.strip(BLANKS) or MISSING


def _decimal_text(column: Column, value: Decimal) -> str:
    return format(value, f".{column.array.type.scale}f")


def _text_value(column: Column, value: Any, custom: bool) -> Any:
    kind = column.kind
    if kind == "text":
        return (value.rstrip(BLANKS) if custom else value.strip(BLANKS)) or MISSING
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "integer":
        return str(value)
    if kind == "decimal":
        return _decimal_text(column, value)
    if kind == "floating":
        return ("float", column.array.type, value)
    if kind == "time":
        return ("time of day", value)
    instants = _instants(column, value)
    if not instants:
        return ANY  # outside what Python's datetime holds: any text will do for Text
    if kind == "date":
        return [("date", i.date()) for i in instants]
    return [("time", i) for i in instants]


def _number(column: Column, value: Any) -> Any:
    kind = column.kind
    if kind == "integer":
        return value
    if kind == "decimal":
        return value
    if kind == "floating":
        return ("float", column.array.type, value) if math.isfinite(value) else REFUSE
    text = value.strip(BLANKS)
    if not text:
        return MISSING
    if not NUMBER_TEXT.fullmatch(text) or not math.isfinite(float(text)):
        return REFUSE
    return Decimal(text)


def _date_value(column: Column, value: Any) -> Any:
    if column.kind == "text":
        text = value.strip(BLANKS)
        if not text:
            return MISSING
        found = DATE_ONLY.fullmatch(text)
        if found is None:
            return ANY  # parsed by DuckDB; the rendered date is checked for validity only
        try:
            year, month, day = map(int, found.groups())
            return [("time", dt.datetime(year, month, day, tzinfo=UTC))]
        except ValueError:
            return REFUSE
    instants = _instants(column, value)
    return [("time", i) for i in instants] if instants else REFUSE


def _instants(column: Column, value: Any) -> list[dt.datetime]:
    """The UTC instants a date or timestamp value may be read as, at second precision (an
    empty list when outside years 1 to 9999). Sub-second ticks before 1970 may be cut toward
    zero (Arrow's cast to microseconds) or down (the true floor): both are accepted."""
    if column.kind == "date" and not isinstance(value, tuple):
        candidates = [value * 86_400]
    else:
        unit, ticks = value if isinstance(value, tuple) else ("ms", value)
        per = 86_400_000 if column.kind == "date" else PER_SECOND[unit]
        whole = 86_400 if column.kind == "date" else 1
        floor = ticks // per
        toward_zero = -(-ticks // per) if ticks < 0 else floor
        candidates = sorted({floor * whole, toward_zero * whole})
    found = []
    for seconds in candidates:
        try:
            found.append(EPOCH + dt.timedelta(seconds=seconds))
        except OverflowError:
            continue
    return found


def matches(expected: Any, got: Any) -> bool:
    if isinstance(expected, list) and expected and isinstance(expected[0], tuple):
        return any(matches(e, got) for e in expected)
    if isinstance(expected, tuple) and expected[0] == "float":
        _, arrow_type, value = expected
        return _same_float(arrow_type, value, got)
    if isinstance(expected, tuple) and expected[0] == "time of day":
        return isinstance(got, str) and _time_of_day(got) == expected[1]
    if isinstance(expected, tuple) and expected[0] in ("date", "time"):
        return _same_moment(expected, got)
    if isinstance(expected, Decimal):
        return isinstance(got, int | Decimal) and Decimal(got) == expected
    if isinstance(expected, int) and not isinstance(expected, bool):
        return isinstance(got, int) and not isinstance(got, bool) and got == expected
    return bool(got == expected)


def _time_of_day(text: str) -> dt.time | None:
    """``HH:MM:SS``, with the fraction of a second when there is one (README)."""
    try:
        return (
            dt.time.fromisoformat(text) if re.fullmatch(r"\d\d:\d\d:\d\d(\.\d+)?", text) else None
        )
    except ValueError:
        return None


def _same_float(arrow_type: pa.DataType, value: float, got: Any) -> bool:
    if isinstance(got, str):  # a float into Text: DuckDB's spelling of the same number
        try:
            got = float(got)
        except ValueError:
            return False
    if isinstance(got, bool) or not isinstance(got, int | float | Decimal):
        return False
    if math.isnan(value):
        return math.isnan(float(got))
    narrow = {pa.float16(): np.float16, pa.float32(): np.float32}.get(arrow_type, np.float64)
    return bool(narrow(float(got)) == narrow(value))


def _same_moment(expected: tuple[str, Any], got: Any) -> bool:
    kind, moment = expected
    if not isinstance(got, str):
        return False
    if kind == "date":
        day = re.fullmatch(r"(-?[0-9]+)-([0-9]{2})-([0-9]{2})", got)
        wanted: tuple[int, ...] = (moment.year, moment.month, moment.day)
        return day is not None and tuple(map(int, day.groups())) == wanted
    time = RENDERED_TIME.fullmatch(got)
    wanted = (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)
    return time is not None and tuple(map(int, time.groups())) == wanted


# -- the properties ------------------------------------------------------------------------


def keys_by_row(case: Case, table: pa.Table) -> list[str | None]:
    """Each row's contact key, as the compiled check computes it."""
    sql = contact_sql(case.mapping, table.schema, case.types, case.ids)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("src", with_row_numbers(one_batch(table), 0))
        rows = con.sql(
            f"SELECT row_number, contact_key FROM ({sql.check('src')}) ORDER BY row_number"
        ).fetchall()
    finally:
        con.close()
    return [key for _, key in rows]


def check_rows_accounted_for(case: Case, table: pa.Table, planned: Planned) -> None:
    rendered = planned.contacts["row_number"].to_pylist()
    reasons: dict[int, list[str]] = {}
    for reject in planned.rejects.to_pylist():
        reasons.setdefault(reject["row_number"], []).append(reject["reason"])
    keys = keys_by_row(case, table)
    last = {key: row for row, key in enumerate(keys) if key is not None}
    superseded = {row for row, key in enumerate(keys) if key is not None and last[key] != row}

    assert len(rendered) == len(set(rendered)), "a row rendered twice"
    assert not set(rendered) & set(reasons), "a row both rendered and rejected"
    assert not superseded & (set(rendered) | set(reasons)), "a superseded row went on"
    assert set(rendered) | set(reasons) | superseded == set(range(case.rows)), "a row lost"
    assert planned.counts.superseded == len(superseded)
    assert all(reason for rs in reasons.values() for reason in rs), "a reject without reason"
    assert planned.contacts["contact_key"].to_pylist() == [keys[row] for row in rendered]


def _no_constant(name: str) -> Any:
    raise AssertionError(f"{name} is not JSON")


def check_contact(case: Case, spec: Spec, row: int, key: str, cell: str) -> None:
    assert cell.endswith(","), "a contact_json cell is an object followed by one comma"
    contact = json.loads(cell[:-1], parse_float=Decimal, parse_constant=_no_constant)
    spec.validate(json.loads(cell[:-1]))
    listed = spec.fields | set(UNLISTED_FIELDS)
    assert set(contact) <= listed, f"fields SendGrid does not know: {set(contact) - listed}"
    for field in UNLISTED_FIELDS:
        assert field not in contact or isinstance(contact[field], str)
    for field in ("phone_number_id", "phone_number"):
        assert field not in contact or E164_RE.fullmatch(contact[field])
    first = next((f for f in IDENTIFIERS if contact.get(f)), None)
    assert first is not None, "a contact without an identifier"
    assert key == f"{first}:{contact[first]}", "the contact key is not its first identifier"
    assert contact.get("custom_fields") != {}, "an empty custom_fields object"
    custom = contact.get("custom_fields", {})
    for field_id, value in custom.items():
        _check_custom_value(field_id, value)
    for field, rule, column, field_id in case.targets():
        got = custom.get(field_id, MISSING) if field_id else contact.get(field, MISSING)
        want = expected_value(rule, case.columns[column], row, custom=field_id is not None)
        if want is REFUSE:
            raise Unsendable(f"row {row}: {field} from {column!r} cannot be sent, got {got!r}")
        if want is ANY:
            continue
        if want is MISSING:
            assert got is MISSING, f"row {row}: {field} should be omitted, got {got!r}"
            continue
        assert matches(want, got), f"row {row}: {field} from {column!r}: want {want!r}, got {got!r}"


def _check_custom_value(field_id: str, value: Any) -> None:
    kind = field_id.rsplit("_", 1)[-1]
    if kind == "T":
        assert isinstance(value, str) and len(value) <= 1_000, f"{field_id}: {value!r}"
    elif kind == "N":
        assert isinstance(value, int | Decimal) and not isinstance(value, bool), value
        assert math.isfinite(float(value)), f"{field_id}: {value!r}"
    else:
        assert isinstance(value, str) and is_valid_date(value), f"{field_id}: {value!r}"
        assert 1 <= int(value[:4]) <= 9999


class Stores:
    """One state store for many examples, opened afresh when a DuckDB fatal error has
    invalidated it (that example fails; the next ones must not fail because of it)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._opened = 0
        self._stack = ExitStack()
        self._store: StateStore | None = None

    def current(self) -> StateStore:
        if self._store is not None:
            try:
                self._store.con.execute("SELECT 1")
            except duckdb.Error:
                self._store = None
        if self._store is None:
            self._opened += 1
            path = self.root / f"state-{self._opened}.duckdb"
            self._store = self._stack.enter_context(StateStore.open(path))
        return self._store

    def close(self) -> None:
        with suppress(duckdb.Error):
            self._stack.close()


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    opened = Stores(tmp_path_factory.mktemp("arrow-states"))
    yield opened
    opened.close()


def check_case(case: Case, spec: Spec, store: StateStore) -> None:
    """The properties (module docstring) for one drawn case."""
    table = case.table()
    refused = case.refused_columns()
    try:
        sql = contact_sql(case.mapping, table.schema, case.types, case.ids)
    except ConfigurationError as exc:
        event("mapping refused")
        assert refused, f"a pairing the README allows was refused: {exc}"
        assert any(repr(c) in str(exc) for c in refused), f"no column named: {exc}"
        return
    assert not refused, f"columns {sorted(refused)} were accepted for fields that refuse them"

    clashing = case.clashing_names()
    try:
        planned = plan_rows(sql, table, store=store)
    except ConfigurationError as exc:
        event("column names refused")
        assert clashing, f"refused without a clash of column names: {exc}"
        assert any(repr(c) in str(exc) for c in clashing), f"no column named: {exc}"
        return
    assert not clashing, f"columns {sorted(clashing)} were read though the SQL confuses them"

    check_rows_accounted_for(case, table, planned)
    event("rows rendered", "some" if planned.contacts.num_rows else "none")
    assert planned.unchanged.num_rows == 0  # a fresh stream: nothing was sent before
    for row, key, cell in zip(
        planned.contacts["row_number"].to_pylist(),
        planned.contacts["contact_key"].to_pylist(),
        planned.contacts["contact_json"].to_pylist(),
        strict=True,
    ):
        check_contact(case, spec, row, key, cell)


_SETTINGS = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@settings(_SETTINGS, max_examples=50)
@given(case=cases())
def test_arbitrary_arrow_is_refused_by_column_or_each_row_is_rendered_to_spec_or_rejected(
    case: Case, spec: Spec, stores: Stores
) -> None:
    check_case(case, spec, stores.current())


@pytest.mark.slow
@pytest.mark.timeout(1200)
@settings(_SETTINGS, max_examples=1_000)
@given(case=cases())
def test_arbitrary_arrow_at_length_is_refused_by_column_or_rendered_to_spec_or_rejected(
    case: Case, spec: Spec, stores: Stores
) -> None:
    check_case(case, spec, stores.current())


# -- what the property found, one example each, kept as regressions ---------------------------


def _plan(mapping: dict[str, Any], table: pa.Table, **custom: str) -> Planned:
    """``table`` planned and rendered under ``mapping``; ``custom`` gives custom field types."""
    ids = {name: f"e{i + 1}_{CUSTOM_TYPES[kind]}" for i, (name, kind) in enumerate(custom.items())}
    sql = contact_sql(mapping, table.schema, custom, ids)
    with tempfile.TemporaryDirectory() as tmp, StateStore.open(Path(tmp) / "s.duckdb") as store:
        return plan_rows(sql, table, store=store)


def _contacts(planned: Planned) -> list[dict[str, Any]]:
    return [json.loads(cell[:-1]) for cell in planned.contacts["contact_json"].to_pylist()]


def _reasons(planned: Planned) -> list[str]:
    return [str(r["reason"]) for r in planned.rejects.to_pylist()]


def test_a_batch_of_no_rows_with_a_dictionary_encoded_column_plans_nothing() -> None:
    # SourceRows.reader() normalizes an empty *table* for a batch of no rows: normalize_arrow
    # then calls dictionary_decode on a ChunkedArray, which has none (AttributeError).
    emails = pa.array([], pa.string()).dictionary_encode()
    planned = _plan({"email": "email"}, pa.table({"email": emails}))

    assert planned.contacts.num_rows == planned.rejects.num_rows == 0


def test_a_string_view_column_is_rendered_like_a_string_column() -> None:
    # arrow_kind takes string_view as text; the render's filter has no string_view kernel.
    emails = pa.array(["ann@example.com", "not an email"], pa.string_view())
    planned = _plan({"email": "email"}, pa.table({"email": emails}))

    assert _contacts(planned) == [{"email": "ann@example.com"}]
    assert _reasons(planned) == ["email: not a valid email address"]


@pytest.mark.parametrize("views", [pa.ListViewArray, pa.LargeListViewArray])
def test_a_list_view_column_keeps_every_value_whatever_the_order_of_its_views(views) -> None:
    # pyarrow casts list_view to list as empty lists, silently: the alternate emails were lost.
    values = pa.array(["b2@example.com", "a2@example.com", "a1@example.com"])
    offset = pa.int64() if views is pa.LargeListViewArray else pa.int32()
    alts = views.from_arrays(pa.array([1, 0, 0], offset), pa.array([2, 1, 0], offset), values)
    table = pa.table({"email": ["a@example.com", "b@example.com", "c@example.com"], "alts": alts})
    planned = _plan({"email": "email", "alternate_emails": "alts"}, table)

    assert _contacts(planned) == [
        {"email": "a@example.com", "alternate_emails": ["a2@example.com", "a1@example.com"]},
        {"email": "b@example.com", "alternate_emails": ["b2@example.com"]},
        {"email": "c@example.com"},
    ]


def test_text_that_is_not_utf8_in_a_string_view_column_rejects_its_row() -> None:
    # valid_text checks string and large_string only, so DuckDB meets the bytes: in a key
    # column it fails fatally ("Invalid UTF-8", the whole database invalidated: in a load, the
    # state file's connection); here it rendered '"first_name":}', a body that is not JSON.
    names = _text_array(["Ann", b"B\xff\xfeb"], pa.string_view())
    table = pa.table({"email": ["a@example.com", "b@example.com"], "name": names})
    planned = _plan({"email": "email", "first_name": "name"}, table)

    assert _contacts(planned) == [{"email": "a@example.com", "first_name": "Ann"}]
    assert _reasons(planned) == ["first_name: not valid UTF-8 text"]


def test_a_decimal_wider_than_38_digits_is_sent_digit_for_digit_or_refused_naming_its_column() -> (
    None
):
    # DuckDB reads no decimal256 wider than 38 digits ("Unsupported Internal Arrow Type").
    wide = pa.array([Decimal("1234567890123456789012345678901234567890.5")], pa.decimal256(41, 1))
    table = pa.table({"email": ["a@example.com"], "amount": wide})
    try:
        planned = _plan(
            {"email": "email", "custom_fields": {"amount": "amount"}}, table, amount="Number"
        )
    except ConfigurationError as refused:
        assert "'amount'" in str(refused)
        return
    (contact,) = [
        json.loads(c[:-1], parse_float=Decimal)
        for c in planned.contacts["contact_json"].to_pylist()
    ]
    assert contact["custom_fields"]["e1_N"] == Decimal("1234567890123456789012345678901234567890.5")


def test_a_half_float_column_is_sent_as_a_number_or_refused_naming_its_column() -> None:
    # arrow_kind takes float16 as floating; DuckDB cannot scan it ("Unsupported Internal
    # Arrow Type e").
    scores = pa.array(np.array([1.5], np.float16))
    table = pa.table({"email": ["a@example.com"], "score": scores})
    try:
        planned = _plan(
            {"email": "email", "custom_fields": {"score": "score"}}, table, score="Number"
        )
    except ConfigurationError as refused:
        assert "'score'" in str(refused)
        return
    assert _contacts(planned) == [{"email": "a@example.com", "custom_fields": {"e1_N": 1.5}}]


def test_a_column_no_field_reads_never_stops_the_plan_whatever_its_type() -> None:
    # With batch_size > 0 the sink is handed every column of dlt's RecordBatch, mapped or not.
    table = pa.table({"email": ["a@example.com"], "unused": pa.array(np.array([1.5], np.float16))})
    planned = _plan({"email": "email"}, table)

    assert _contacts(planned) == [{"email": "a@example.com"}]


def test_two_columns_whose_names_differ_only_in_case_are_refused_naming_both() -> None:
    # DuckDB resolves identifiers case-insensitively: "email" named the column "Email" too,
    # so the first name was sent as the email address (silently wrong data). Refused now.
    table = pa.table({"Email": ["ann@example.com"], "email": ["Ann"]})

    with pytest.raises(ConfigurationError) as refused:
        _plan({"email": "Email", "first_name": "email"}, table)

    assert "'Email' and 'email' differ only in case" in str(refused.value)


def test_a_source_column_named_like_the_plans_own_columns_is_refused_never_a_lost_row() -> None:
    # The plan appends "__sg_row" (row numbers); a source column "__SG_ROW" took its place
    # in DuckDB and the row was numbered null: neither sent nor rejected. Refused now.
    for name in ("__SG_ROW", "__sg_bad_text", "__sg_anything"):
        with pytest.raises(ConfigurationError) as refused:
            _plan({"email": name}, pa.table({name: ["ann@example.com"]}))

        assert repr(name) in str(refused.value)


def test_a_column_name_with_a_nul_character_is_read_or_refused_naming_it() -> None:
    table = pa.table({"e\x00mail": ["ann@example.com"]})
    try:
        planned = _plan({"email": "e\x00mail"}, table)
    except ConfigurationError as refused:
        assert repr("e\x00mail") in str(refused)
        return
    assert _contacts(planned) == [{"email": "ann@example.com"}]


def test_a_decimal_without_integer_digits_keeps_its_leading_zero_as_text() -> None:
    # DuckDB casts DECIMAL(p, p) to VARCHAR without the leading zero: 0.5 became ".5".
    ratios = pa.array([Decimal("0.5"), Decimal("-0.25")], pa.decimal128(2, 2))
    table = pa.table({"email": ["a@example.com", "b@example.com"], "ratio": ratios})
    planned = _plan({"email": "email", "external_id": "ratio", "city": "ratio"}, table)

    assert [(c["external_id"], c["city"]) for c in _contacts(planned)] == [
        ("0.50", "0.50"),
        ("-0.25", "-0.25"),
    ]


@pytest.mark.parametrize(
    ("unit", "ticks"),
    [("ms", 2**63 - 1), ("s", 2**62), ("ms", -(2**63)), ("s", 9_223_372_036_854_775)],
)
def test_a_timestamp_beyond_what_microseconds_hold_is_rejected_never_sent_as_another_date(
    unit: str, ticks: int
) -> None:
    # normalize_arrow casts to microseconds with safe=False: the overflow wraps, and
    # Long.MAX_VALUE milliseconds (a common "never expires") was sent as 1969-12-31T23:59:59Z.
    stamps = pa.array([ticks], pa.int64()).cast(pa.timestamp(unit))
    table = pa.table({"email": ["a@example.com"], "until": stamps})
    planned = _plan({"email": "email", "custom_fields": {"until": "until"}}, table, until="Date")

    assert planned.contacts.num_rows == 0
    assert _reasons(planned) == ["until: a date outside years 1 to 9999"]


@pytest.mark.parametrize("days", [110_000_000, -(2**31)])
def test_a_date_beyond_what_a_timestamp_holds_is_rejected_not_a_failed_load(days: int) -> None:
    # CAST(date AS TIMESTAMP) raises a ConversionException past year 294247: the whole load
    # failed (and a pending package would fail every later run) instead of one reject.
    dates = pa.array([days], pa.int32()).cast(pa.date32())
    table = pa.table({"email": ["a@example.com"], "since": dates})
    planned = _plan({"email": "email", "custom_fields": {"since": "since"}}, table, since="Date")

    assert planned.contacts.num_rows == 0
    assert _reasons(planned) == ["since: a date outside years 1 to 9999"]


def test_nulls_beside_a_date_beyond_what_a_timestamp_holds_stay_null() -> None:
    # Clamping the far date made its null neighbours the bound (pyarrow's element-wise min
    # and max skip nulls by default): they were sent as year -144169.
    far = pa.array([None, 4_611_685_968_000_001, None], pa.int64()).cast(pa.date64())
    table = pa.table({"email": ["a@example.com", "b@example.com", "c@example.com"], "d": far})
    planned = _plan({"email": "email", "custom_fields": {"d": "d"}}, table, d="Text")

    assert _contacts(planned)[0] == {"email": "a@example.com"}
    assert _contacts(planned)[-1] == {"email": "c@example.com"}
