"""What a table's load asks of SendGrid: dlt's write disposition and hints, and ``mode``.

``table_intent(config, table, items)`` reads the dlt table schema the sink is handed and
returns a ``TableIntent``, or refuses (``ConfigurationError``, before any request) what the
destination cannot honour:

=====================  ==========================================================
``append``, ``merge``  upsert (merge with a primary key: the last row of a contact wins,
                       as always here); ``mode`` applies
``replace``            the load is the whole table: as ``mode = "mirror"``
``hard_delete`` hint   a contact whose last row the column flags (``True``, or any value
                       for a column that is not boolean) is deleted if this sync created
                       it, and removed from this table's lists otherwise; never sent
merge ``scd2``,        refused: an upsert keeps no history, always updates, and keeps the
``insert-only``,       last row of a contact
``dedup_sort``,
``merge_key``
=====================  ==========================================================

``mode``: ``upsert`` (the default: contacts are added and updated; a row's lists are its
contact's lists), ``membership`` (also: contacts whose rows left the table leave the lists
this table put them in) and ``mirror`` (also: those this sync created are deleted; see
``deletions``). The last two, and ``replace``, judge absence, so they need every row of the
table in each load (``batch_size > 0``, where no call sees a whole job file, is refused for
every table by the settings), so an incremental resource (its column hint ``incremental``) is
refused unless the load is a full refresh (dlt's ``refresh``) or nothing was sent for the
table before (``check_source``, once the state is open). A table dlt split over several job
files is judged once its last file is loaded (``last_file``; ``package_files``).

``refuse_variants(stream, table, mapped, files)``: when a column's values change type, dlt
keeps the column's first type and puts the new values in a variant column (``age▶v_double``)
that no mapping names: those values would be left out, the field sent without them. A mapped
column whose variant holds values in this load's files is refused, naming both.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sendgrid_destination import package_files
from sendgrid_destination.contact_sql import ident
from sendgrid_destination.errors import ConfigurationError
from sendgrid_destination.source_rows import count_values

Mode = Literal["upsert", "membership", "mirror"]
MODES: tuple[Mode, ...] = ("upsert", "membership", "mirror")


@dataclass(frozen=True)
class TableIntent:
    mode: Mode = "upsert"
    disposition: str = "append"
    delete_column: str | None = None
    delete_is_boolean: bool = True
    # This call carries the table's last job file of the load (absence is judged then).
    last_file: bool = True
    file_key: str = ""
    extra_columns: tuple[str, ...] = field(default=())
    # The resource's incremental cursor, when the load is not a full refresh: the load may
    # hold only the rows that changed (see ``check_source``).
    incremental_cursor: str | None = None

    @property
    def whole_source(self) -> bool:
        """Rows absent from the load left the table (``membership``, ``mirror``)."""
        return self.mode != "upsert"

    @property
    def may_delete(self) -> bool:
        return self.mode == "mirror" or self.delete_column is not None

    @property
    def records_keys(self) -> bool:
        return self.whole_source or self.delete_column is not None

    @property
    def why_whole(self) -> str:
        """What asks for the whole table, for messages."""
        return "write_disposition replace" if self.disposition == "replace" else f"mode {self.mode}"

    def check_source(self, stream: str, tracked_before: Callable[[], int]) -> None:
        """Refuse to judge absence from an incremental load while contacts that earlier
        loads sent (``tracked_before()``) could look gone; a first load removes nothing."""
        if not (self.whole_source and self.incremental_cursor and tracked_before()):
            return
        raise ConfigurationError(
            f"Table {stream!r} ({self.why_whole}) needs every row of the table in each load, "
            f"but its resource is incremental (cursor {self.incremental_cursor}): contacts whose "
            "rows did not change would look gone and be removed. Load it without incremental "
            "(dlt keeps the cursor's hint in the pipeline's schema: the first load without it "
            "needs pipeline.run(..., refresh='drop_resources') once), or with a full refresh "
            "each time, or use mode = 'upsert' with append or merge."
        )

    def deleted_sql(self, columns: Sequence[str] | None = None) -> str:
        """SQL over the source: the row is flagged by the hard-delete column. A column absent
        from the load's ``columns`` (dlt leaves out a column with no type and no value)
        flags nothing."""
        if self.delete_column is None or (
            columns is not None and self.delete_column not in columns
        ):
            return "false"
        column = ident(self.delete_column)
        return column if self.delete_is_boolean else f"{column} IS NOT NULL"


def table_intent(
    config: Any,
    table: Mapping[str, Any],
    items: object,
    package: Mapping[str, Any] | None,
    together: Sequence[str] = (),
) -> TableIntent:
    """The intent of this sink call (see the module docstring). ``package`` is dlt's load
    package state (None outside a load); ``together``: the table's other job files this call
    loads with its own (``package_files.table_files``)."""
    stream = str(table.get("name"))
    disposition = str(table.get("write_disposition") or "append")
    _refuse_unhonoured(stream, disposition, table)
    mode: Mode = "mirror" if disposition == "replace" else config.mode
    column, boolean = hard_delete_column(stream, table)
    columns: Mapping[str, Any] = table.get("columns") or {}
    cursor = [name for name, col in columns.items() if col.get("incremental")]
    intent = TableIntent(
        mode=mode,
        disposition=disposition,
        delete_column=column,
        delete_is_boolean=boolean,
        last_file=(
            package_files.last_file(stream, [items, *together]) if isinstance(items, str) else True
        ),
        file_key=package_files.file_key(items) if isinstance(items, str) else "batch",
        extra_columns=tuple(c for c in (config.list_column, column) if c),
        incremental_cursor=", ".join(cursor) if cursor and not _full_refresh(package) else None,
    )
    return intent


def _refuse_unhonoured(stream: str, disposition: str, table: Mapping[str, Any]) -> None:
    if disposition not in ("append", "merge", "replace"):
        raise ConfigurationError(
            f"Table {stream!r} has write_disposition {disposition!r}, which this destination "
            "cannot honour: use append, merge or replace."
        )
    strategy = table.get("x-merge-strategy")
    if disposition == "merge" and strategy in ("scd2", "insert-only"):
        raise ConfigurationError(
            f"Table {stream!r} asks for the {strategy!r} merge strategy, which SendGrid cannot "
            "honour (an upsert keeps no history and always updates an existing contact): use "
            "the default merge strategy or append."
        )
    columns: Mapping[str, Any] = table.get("columns") or {}
    for hint in ("dedup_sort", "merge_key"):
        named = [name for name, col in columns.items() if col.get(hint)]
        if named and disposition == "merge":
            raise ConfigurationError(
                f"Table {stream!r} has the {hint!r} hint on {', '.join(named)}, which this "
                "destination cannot honour: of several rows of one contact the last one "
                "wins, and contacts are matched by their identifiers. Remove the hint."
            )


def hard_delete_column(stream: str, table: Mapping[str, Any]) -> tuple[str | None, bool]:
    """The column dlt's ``hard_delete`` hint names, if any, and whether it is boolean (else
    any value flags a row); several such columns are refused."""
    columns: Mapping[str, Any] = table.get("columns") or {}
    flagged = [name for name, col in columns.items() if col.get("hard_delete")]
    if len(flagged) > 1:
        raise ConfigurationError(
            f"Table {stream!r} has the hard_delete hint on several columns "
            f"({', '.join(flagged)}); keep it on one."
        )
    if not flagged:
        return None, True
    return flagged[0], columns[flagged[0]].get("data_type") in (None, "bool")


def _full_refresh(package: Mapping[str, Any] | None) -> bool:
    """The load is a full refresh (dlt's ``refresh``: the resources it extracted started
    again from their initial state, so it holds every row)."""
    return bool(package and package.get("refresh"))


def refuse_variants(
    stream: str, table: Mapping[str, Any], mapped: Sequence[str], files: Sequence[str]
) -> None:
    """Refuse a mapped column whose values went to a dlt variant column in this load (module
    doc); a variant that holds none here (an earlier load's) is no matter."""
    columns: Mapping[str, Any] = table.get("columns") or {}
    for name, column in columns.items():
        if not column.get("variant"):
            continue
        base = next(
            (c for c in mapped if name.startswith(c) and _VARIANT.fullmatch(name[len(c) :])), None
        )
        if base is None or not count_values(files, name):
            continue
        raise ConfigurationError(
            f"Column {base!r} of table {stream!r} now holds values of another type, which dlt "
            f"put in its variant column {name!r} ({column.get('data_type')}), and this load "
            "would leave them out. Give the source column one type (cast it), or, if the new "
            "type is meant to stay, drop the table from the pipeline's schema once "
            "(pipeline.run(..., refresh='drop_resources'))."
        )


# What dlt appends to a column's name for a variant: its path separator ("▶" in the direct
# naming, "__" in snake_case), then "v_" and the type.
_VARIANT = re.compile(r"(▶|__)v_[a-z0-9_]+")
