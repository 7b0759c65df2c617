"""The column mapping: which source column feeds which SendGrid contact field.

Input is the user's dict (from arguments or ``[destination.sendgrid.mapping]`` in TOML)::

    {"email": "email", "first_name": "given_name", "custom_fields": {"plan_tier": "plan"}}

``parse_mapping`` checks what can be checked without data (field names exist and are
writable, at least one identifier); ``bind_reserved`` checks it against the rows' Arrow schema
(columns exist, types can feed the reserved fields) before any request, and ``bind_custom``,
once custom field names are resolved to IDs and types, completes the ``Binding`` list that
``contact_sql`` compiles (``bind_mapping`` does both). Every error
names the column, its Arrow type and the field, lists every refused column at once (not the
first), and is raised before any upsert. Which table the mapping belongs to is the caller's to
say (``destination`` prefixes the table's name).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from sendgrid_destination.contact_model import (
    CUSTOM_FIELD_NAME_RE,
    IDENTIFIERS,
    MAX_CUSTOM_TEXT_LENGTH,
    READ_ONLY_FIELDS,
    RESERVED_BY_NAME,
    WRITABLE_FIELDS,
    FieldType,
)
from sendgrid_destination.errors import ConfigurationError

ArrowKind = Literal[
    "string",
    "integer",
    "floating",
    "decimal",
    "boolean",
    "date",
    "timestamp",
    "time",
    "string_list",
    "other",
]
BindingKind = Literal["identifier", "reserved", "alternate_emails", "custom"]


@dataclass(frozen=True)
class FieldMapping:
    """The parsed mapping: SendGrid field -> source column, custom field name -> column."""

    reserved: dict[str, str]
    custom: dict[str, str]

    @property
    def columns(self) -> list[str]:
        return [*self.reserved.values(), *self.custom.values()]

    @property
    def identifiers(self) -> list[str]:
        """Mapped identifier fields, in SendGrid's priority order (email first)."""
        return [name for name in IDENTIFIERS if name in self.reserved]


@dataclass(frozen=True)
class Binding:
    """One mapped field, ready to compile: where its value comes from and how it is checked."""

    field: str
    column: str
    kind: BindingKind
    arrow_kind: ArrowKind
    field_type: FieldType
    max_length: int | None = None
    custom_field_id: str | None = None

    @property
    def json_key(self) -> str:
        return (
            self.custom_field_id if self.kind == "custom" and self.custom_field_id else self.field
        )


def parse_mapping(raw: AbcMapping[str, object] | None) -> FieldMapping:
    """Validate the mapping's shape and field names; no data is needed for this."""
    if not raw:
        raise ConfigurationError(
            "No mapping configured: set [destination.sendgrid.mapping] in .dlt/config.toml or "
            'the sync file (for example email = "email"), or pass mapping={...} to sendgrid(); '
            "for one table of several, under [destination.sendgrid.tables.<table>.mapping]."
        )
    reserved: dict[str, str] = {}
    custom: dict[str, str] = {}
    for field, column in raw.items():
        if field == "custom_fields":
            custom = _parse_custom(column)
            continue
        _check_reserved_field(field, column)
        reserved[field] = _column_name(field, column)
    mapping = FieldMapping(reserved, custom)
    if not mapping.identifiers:
        raise ConfigurationError(
            "The mapping has no identifier: map at least one of "
            f"{', '.join(IDENTIFIERS)} to a source column (SendGrid needs one to find the contact)."
        )
    return mapping


def _parse_custom(raw: object) -> dict[str, str]:
    if not isinstance(raw, AbcMapping):
        raise ConfigurationError(
            "mapping.custom_fields must be a table of custom field name = source column."
        )
    custom: dict[str, str] = {}
    lowered: set[str] = set()
    for name, column in raw.items():
        if not CUSTOM_FIELD_NAME_RE.match(str(name)):
            raise ConfigurationError(
                f"Custom field name {name!r} is not valid: SendGrid allows letters, digits and "
                "underscores, starting with a letter or underscore, at most 100 characters."
            )
        if name.lower() in RESERVED_BY_NAME:
            fix = (
                "SendGrid sets it itself and no mapping can: use another name"
                if name.lower() in READ_ONLY_FIELDS or name.lower() in ("id", "contact_id")
                else "map it at the top level of the mapping instead of under custom_fields"
            )
            raise ConfigurationError(
                f"Custom field {name!r} has the name of a reserved field: {fix}."
            )
        if name.lower() in lowered:
            raise ConfigurationError(
                f"Custom field {name!r} is mapped twice (names are case-insensitive in SendGrid)."
            )
        lowered.add(name.lower())
        custom[str(name)] = _column_name(f"custom_fields.{name}", column)
    return custom


def _check_reserved_field(field: str, column: object) -> None:
    if field in READ_ONLY_FIELDS or field in ("id", "contact_id"):
        raise ConfigurationError(
            f"Field {field!r} is read-only in SendGrid and cannot be set; remove it (fed by "
            f"column {column!r}) from the mapping."
        )
    if field not in WRITABLE_FIELDS:
        close = difflib.get_close_matches(field, WRITABLE_FIELDS, n=1)
        raise ConfigurationError(
            f"Unknown SendGrid field {field!r} (mapped from column {column!r})"
            + (f"; did you mean {close[0]!r}?" if close else ".")
            + " Writable fields are: "
            f"{', '.join(WRITABLE_FIELDS)}; custom fields go under [mapping.custom_fields]."
        )


def _column_name(field: str, column: object) -> str:
    if not isinstance(column, str) or not column:
        raise ConfigurationError(
            f"mapping.{field} must name a source column (a non-empty string), got {column!r}."
        )
    return column


def arrow_kind(data_type: pa.DataType) -> ArrowKind:
    """Classify an Arrow type into the families the coercion rules distinguish."""
    t = pa.types
    if t.is_dictionary(data_type):
        return arrow_kind(data_type.value_type)
    if t.is_string(data_type) or t.is_large_string(data_type) or t.is_string_view(data_type):
        return "string"
    if t.is_null(data_type):  # an all-null column: every value is omitted
        return "string"
    # DuckDB reads decimals of up to 38 digits; a wider decimal256 has no exact path.
    wide = t.is_decimal256(data_type) and data_type.precision > 38
    checks: list[tuple[ArrowKind, bool]] = [
        ("integer", t.is_integer(data_type)),
        ("floating", t.is_floating(data_type)),
        ("decimal", t.is_decimal(data_type) and not wide),
        ("boolean", t.is_boolean(data_type)),
        ("date", t.is_date(data_type)),
        ("timestamp", t.is_timestamp(data_type)),
        ("time", t.is_time(data_type)),
    ]
    for kind, matches in checks:
        if matches:
            return kind
    # List views too: arrow_utils.normalize_arrow turns them into plain lists, value for value.
    lists = (t.is_list, t.is_large_list, t.is_list_view, t.is_large_list_view)
    is_a_list = any(is_list(data_type) for is_list in lists)
    if is_a_list and arrow_kind(data_type.value_type) == "string":
        return "string_list"
    return "other"


# Which Arrow families can feed which target. Text takes every scalar that has one obvious
# spelling (a time of day as HH:MM:SS); bytes (bytea), durations (interval) and nested values
# have none, so they are refused. Number refuses booleans and dates; Date refuses numbers (an
# epoch is ambiguous and made contacts vanish: sendgrid-go#366).
_ALLOWED: dict[str, set[ArrowKind]] = {
    "Text": {"string", "integer", "floating", "decimal", "boolean", "date", "timestamp", "time"},
    "Number": {"integer", "floating", "decimal", "string"},
    "Date": {"date", "timestamp", "string"},
    "identifier": {"string", "integer", "decimal"},
    "email": {"string"},
    "alternate_emails": {"string", "string_list"},
}


def bind_mapping(
    mapping: FieldMapping,
    schema: pa.Schema,
    custom_types: AbcMapping[str, FieldType],
    custom_ids: AbcMapping[str, str] | None = None,
) -> list[Binding]:
    """Check the mapping against the data's schema; return the bindings to compile."""
    return bind_reserved(mapping, schema) + bind_custom(mapping, schema, custom_types, custom_ids)


def bind_reserved(mapping: FieldMapping, schema: pa.Schema) -> list[Binding]:
    """Every mapped column exists and every reserved field can take its column: all that can
    be checked before the account's custom fields are known (so before any request). A custom
    field's column that no custom field type could take (bytes, say) is refused here too."""
    _check_columns_exist(mapping, schema)
    refusals: list[str] = []
    bindings = [_reserved_binding(f, c, schema, refusals) for f, c in mapping.reserved.items()]
    any_type = _ALLOWED["Text"] | _ALLOWED["Number"] | _ALLOWED["Date"]
    for name, column in mapping.custom.items():
        data_type = schema.field(column).type
        if arrow_kind(data_type) not in any_type:
            refusals.append(_refusal(f"custom field {name!r}", column, data_type, "Text"))
    _raise_refusals(refusals)
    return bindings


def bind_custom(
    mapping: FieldMapping,
    schema: pa.Schema,
    custom_types: AbcMapping[str, FieldType],
    custom_ids: AbcMapping[str, str] | None = None,
) -> list[Binding]:
    """The custom fields' bindings, once their SendGrid types (``custom_types``, from the
    account's field definitions) and IDs are known."""
    bindings = []
    refusals: list[str] = []
    for name, column in mapping.custom.items():
        data_type = schema.field(column).type
        kind = arrow_kind(data_type)
        field_type = custom_types[name]
        if kind not in _ALLOWED[field_type]:
            target = f"custom field {name!r} ({field_type})"
            refusals.append(_refusal(target, column, data_type, field_type))
        max_length = MAX_CUSTOM_TEXT_LENGTH if field_type == "Text" else None
        field_id = (custom_ids or {}).get(name)
        bindings.append(Binding(name, column, "custom", kind, field_type, max_length, field_id))
    _raise_refusals(refusals)
    return bindings


def _check_columns_exist(mapping: FieldMapping, schema: pa.Schema) -> None:
    names = set(schema.names)
    missing = sorted({c for c in mapping.columns if c not in names})
    if not missing:
        return
    message = (
        f"Mapped column(s) not found in the source table: {', '.join(missing)}. "
        f"Available columns: {', '.join(schema.names)}. "
    )
    if len(missing) == len(set(mapping.columns)):
        # Not one mapped column: this is another table, not a typo.
        message += (
            "None of the mapped columns is in this table: give it its own mapping under "
            "[destination.sendgrid.tables.<table>], or list only the tables to sync there "
            "(a table it does not name is skipped)."
        )
    else:
        close = [
            f"{c!r} -> {match[0]!r}"
            for c in missing
            if (match := difflib.get_close_matches(c, schema.names, n=1))
        ]
        message += (f"Did you mean {', '.join(close)}? " if close else "") + (
            "If the column exists in the source, it may have had no type and no value in this "
            "first load (an all-null Arrow column, or SELECT NULL): dlt leaves such columns "
            "out, so cast it in the source query or give the resource a column hint, e.g. "
            f"columns={{{missing[0]!r}: {{'data_type': 'text'}}}}."
        )
    raise ConfigurationError(message)


def _reserved_binding(field: str, column: str, schema: pa.Schema, refusals: list[str]) -> Binding:
    data_type = schema.field(column).type
    kind = arrow_kind(data_type)
    spec = RESERVED_BY_NAME[field]
    binding_kind: BindingKind = "reserved"
    rule = "Text"
    if field == "alternate_emails":
        rule = binding_kind = "alternate_emails"
    elif field in IDENTIFIERS:
        binding_kind = "identifier"
        rule = "email" if field == "email" else "identifier"
    if kind not in _ALLOWED[rule]:
        refusals.append(_refusal(f"field {field!r}", column, data_type, rule))
    return Binding(field, column, binding_kind, kind, "Text", spec.max_length)


def _refusal(target: str, column: str, data_type: pa.DataType, rule: str) -> str:
    allowed = ", ".join(sorted(_ALLOWED[rule]))
    return f"Column {column!r} ({data_type}) cannot feed {target}: it takes {allowed} columns."


def _raise_refusals(refusals: list[str]) -> None:
    if refusals:
        raise ConfigurationError(
            " ".join(refusals) + " Cast each column in the source query to a kind its field "
            "takes, or map it to another field."
        )


def infer_custom_type(data_type: pa.DataType) -> FieldType:
    """The SendGrid type to create for a custom field fed by a column of this Arrow type."""
    kind = arrow_kind(data_type)
    if kind in ("integer", "floating", "decimal"):
        return "Number"
    if kind in ("date", "timestamp"):
        return "Date"
    return "Text"
