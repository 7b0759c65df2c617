"""Mapping entries from nested environment variables, on top of the mapping dlt resolved.

dlt resolves a ``dict`` setting as one value: ``DESTINATION__SENDGRID__MAPPING`` holding a JSON
object, or the ``[destination.sendgrid.mapping]`` table of a TOML file. It never looks at
``DESTINATION__SENDGRID__MAPPING__EMAIL``: only the fields of a configspec get their own keys,
and a mapping's keys (custom field names above all) are not known in advance. So after dlt has
resolved the mapping, ``overlay_mapping`` applies every variable below it, the most specific
last (``DESTINATION__<NAME>__MAPPING__…``, then ``<PIPELINE>__DESTINATION__<NAME>__MAPPING__…``)::

    DESTINATION__SENDGRID__MAPPING__EMAIL=email             -> mapping["email"] = "email"
    DESTINATION__SENDGRID__MAPPING__CUSTOM_FIELDS__PLAN=plan -> mapping["custom_fields"]["plan"]
    DESTINATION__SENDGRID__MAPPING__CUSTOM_FIELDS='{"PlanTier": "plan"}'  (JSON: merged)
    DESTINATION__SENDGRID__MAPPING__PHONE_NUMBER=            -> the entry is removed

A variable wins over the same entry from any other source, an argument of ``sendgrid(...)``
included: the spec cannot tell an argument from a config file, and a deployment that sets a
variable means it. Names come lower-cased (environment names are upper case by convention;
SendGrid matches custom field names case-insensitively), so a custom field to be created with
capitals is given through the JSON form. Values (the column names) are kept as written.
Unknown field names are left for ``parse_mapping`` to refuse, naming them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from sendgrid_destination.errors import ConfigurationError

CUSTOM_FIELDS = "custom_fields"


def mapping_prefixes(destination_name: str, pipeline_name: str | None) -> list[str]:
    """Environment prefixes of the mapping's entries, least specific first."""
    base = f"DESTINATION__{destination_name}__MAPPING__".upper()
    return [base] + ([f"{pipeline_name}__{base}".upper()] if pipeline_name else [])


def overlay_mapping(
    mapping: Mapping[str, Any] | None,
    prefixes: list[str],
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    """A copy of ``mapping`` with the entries of the variables under ``prefixes`` applied in
    order (``None`` stays ``None`` when no such variable is set)."""
    env = os.environ if environ is None else environ
    entries = [(n[len(p) :], env[n]) for p in prefixes for n in sorted(env) if _under(n, p)]
    if not entries:
        return None if mapping is None else dict(mapping)
    merged: dict[str, Any] = dict(mapping or {})
    custom = merged.get(CUSTOM_FIELDS) or {}
    if not isinstance(custom, Mapping):
        raise ConfigurationError(
            "mapping.custom_fields must be a table of custom field name = source column."
        )
    merged[CUSTOM_FIELDS] = dict(custom)
    for key, value in entries:
        _apply(merged, key, value)
    if not merged[CUSTOM_FIELDS]:
        del merged[CUSTOM_FIELDS]
    return merged


def _under(name: str, prefix: str) -> bool:
    return name.startswith(prefix) and len(name) > len(prefix)


def _apply(merged: dict[str, Any], key: str, value: str) -> None:
    custom: dict[str, Any] = merged[CUSTOM_FIELDS]
    if key == CUSTOM_FIELDS.upper():
        custom.update(_json_object(value, key))
    elif key.startswith(CUSTOM_FIELDS.upper() + "__"):
        _set(custom, key[len(CUSTOM_FIELDS) + 2 :].lower(), value)
    else:
        _set(merged, key.lower(), value)


def _set(target: dict[str, Any], name: str, column: str) -> None:
    if column.strip():
        target[name] = column
    else:
        target.pop(name, None)


def _json_object(value: str, key: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise ConfigurationError(
            f"The environment variable …MAPPING__{key} must hold a JSON object of custom field "
            'names to columns, such as {"plan_tier": "plan"}.'
        )
    return parsed
