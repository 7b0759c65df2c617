"""Per-row list membership: a column of list names puts each contact in those lists.

``list_column = "segments"`` names a source column of list names: an Arrow list of strings,
or text holding names separated by commas, or a JSON array of names (how dlt hands over a
PostgreSQL ``text[]``). Names are trimmed, empty ones ignored, and matched
to the account's lists exactly (case included, as SendGrid keeps them). A contact's lists are
the static ones (``list_ids`` and ``lists``) and those its row names; a null or empty cell
names none. SendGrid's upsert takes ``list_ids`` per request, not per contact, so this scope
is what bodies are grouped by (``packing.GroupedPacker``), and what a contact's content hash
covers: a contact whose lists change is sent again.

* ``bind_lists(client, config, rows)``: all of the below, before the first upsert;
* ``check_list_column(schema, column)``: the column exists and holds names (no network);
* ``distinct_names(rows, column)``: every name the load's rows use, one DuckDB pass over that
  column alone, so that names resolve to IDs (``lists.resolve_lists``) before any upsert;
* ``ListColumn``: the column bound to those IDs; ``scope_sql`` is a row's list scope (sorted
  IDs, comma-separated: the same text for the same set, whatever order the row names them).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.contact_sql import ident, literal, text_list
from sendgrid_destination.errors import ConfigurationError
from sendgrid_destination.lists import resolve_lists
from sendgrid_destination.mapping import arrow_kind
from sendgrid_destination.source_rows import SourceRows

logger = logging.getLogger("sendgrid_destination.lists")


def check_list_column(schema: pa.Schema, column: str) -> str:
    """The column's kind (``string`` or ``string_list``); ConfigurationError naming it if it
    is missing or holds something else."""
    if column not in schema.names:
        raise ConfigurationError(
            f"list_column {column!r} is not a column of the source table (its columns: "
            f"{', '.join(schema.names)}). Name the column that holds each row's list names."
        )
    kind = arrow_kind(schema.field(column).type)
    if kind not in ("string", "string_list"):
        raise ConfigurationError(
            f"list_column {column!r} holds {schema.field(column).type}: it must be a list of "
            "names (an array of text) or text with names separated by commas."
        )
    return kind


def _names_sql(column: str, kind: str) -> str:
    """A row's list names, trimmed, without empty ones (a SQL list)."""
    raw = ident(column) if kind == "string_list" else text_list(ident(column))
    return (
        f"list_filter(list_transform(coalesce({raw}, []), lambda x: trim(x)), "
        "lambda x: x IS NOT NULL AND x <> '')"
    )


def distinct_names(rows: SourceRows, column: str, kind: str) -> list[str]:
    """Every list name the rows use, sorted."""
    con = duckdb.connect()
    try:
        con.register("names_src", rows.reader())
        found = con.execute(
            f"SELECT DISTINCT unnest({_names_sql(column, kind)}) AS name FROM names_src "
            "ORDER BY name"
        ).fetchall()
    finally:
        con.close()
    return [str(r[0]) for r in found if r[0] is not None]


@dataclass(frozen=True)
class ListColumn:
    """The list column bound to the account: each name's list ID."""

    column: str
    kind: str  # "string" or "string_list"
    ids_by_name: Mapping[str, str]

    def scope_sql(self, static_ids: Sequence[str]) -> str:
        """A row's list scope: ``static_ids`` and the IDs of the names its column holds,
        sorted, distinct, comma-separated."""
        static = "[" + ", ".join(literal(i) for i in static_ids) + "]::VARCHAR[]"
        if not self.ids_by_name:
            return literal(",".join(sorted(set(static_ids))))
        # A map lookup, not a CASE of one WHEN per list: with 1,000 lists the CASE cost 3-8 s
        # per million rows, the map about a fifth of that (measured).
        ids = ", ".join(
            f"{literal(name)}: {literal(list_id)}"
            for name, list_id in sorted(self.ids_by_name.items())
        )
        named = (
            f"list_filter(list_transform({_names_sql(self.column, self.kind)}, "
            f"lambda x: MAP {{{ids}}}[x]), lambda x: x IS NOT NULL)"
        )
        return f"array_to_string(list_sort(list_distinct(list_concat({static}, {named}))), ',')"


def bind_lists(
    client: SendGridClient, config: Any, rows: SourceRows
) -> tuple[tuple[str, ...], ListColumn | None]:
    """Every contact's list IDs (``list_ids`` and ``lists``), and the list column bound to
    the IDs of the names the rows use: checked, read and resolved before any upsert."""
    column = config.list_column
    kind = check_list_column(rows.schema, column) if column else ""
    names = distinct_names(rows, column, kind) if column else []
    resolved = resolve_lists(
        client,
        list_ids=config.list_ids or [],
        names=config.lists or [],
        column_names=names,
        create_missing=config.create_missing_lists,
    )
    if resolved.created:
        done = "would create (a plan)" if config.plan else "created"
        logger.info("%s %d list(s) named in the settings or the rows", done, len(resolved.created))
    bound = ListColumn(column, kind, resolved.ids_by_name or {}) if column else None
    return resolved.static_ids, bound
