"""Custom field names in the mapping become the account's custom field IDs.

SendGrid addresses custom fields by ID (``e1_T``), never by name, and IDs differ per account,
so names are resolved at the start of every run from ``GET /v3/marketing/field_definitions``
(case-insensitively, as SendGrid compares names). Unknown names stop the run before any upsert;
with ``create_missing_custom_fields`` they are created with the type inferred from the column,
and the sender then waits until upserts accept them (a new field is refused for a while).
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.contact_model import FieldType
from sendgrid_destination.errors import ConfigurationError
from sendgrid_destination.mapping import FieldMapping, infer_custom_type


@dataclass(frozen=True)
class ResolvedFields:
    """Per mapped custom field name: its ID and type; ``created``: the names this run
    created (``create_missing_custom_fields``)."""

    ids: dict[str, str]
    types: dict[str, FieldType]
    created: tuple[str, ...] = ()


def resolve_custom_fields(
    client: SendGridClient, mapping: FieldMapping, schema: pa.Schema, *, create_missing: bool
) -> ResolvedFields:
    if not mapping.custom:
        return ResolvedFields({}, {})
    existing = client.field_definitions().custom_by_name()
    ids: dict[str, str] = {}
    types: dict[str, FieldType] = {}
    missing = [name for name in mapping.custom if name.lower() not in existing]
    if missing and not create_missing:
        raise ConfigurationError(
            f"Custom field(s) not defined in this SendGrid account: {', '.join(missing)}. "
            "Create them in SendGrid (Marketing > Custom Fields), fix the names in "
            "[destination.sendgrid.mapping.custom_fields], or set "
            "create_missing_custom_fields = true."
        )
    for name, column in mapping.custom.items():
        if name in missing:
            definition = client.create_custom_field(
                name, infer_custom_type(schema.field(column).type)
            )
        else:
            definition = existing[name.lower()]
        ids[name] = definition.id
        types[name] = _field_type(name, definition.field_type)
    return ResolvedFields(ids, types, tuple(missing))


def _field_type(name: str, raw: str) -> FieldType:
    known: dict[str, FieldType] = {"text": "Text", "number": "Number", "date": "Date"}
    if raw.lower() in known:
        return known[raw.lower()]
    raise ConfigurationError(
        f"Custom field {name!r} has type {raw!r}, which this destination does not know how to "
        "fill (Text, Number and Date are supported)."
    )
