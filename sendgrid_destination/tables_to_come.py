"""The contacts the load's other tables are about to send, for a table that judges who left.

dlt loads a package's tables one after another. A contact that moves from table ``a`` to
table ``b`` in one load (a lead that became a customer) left ``a``; if ``a`` is loaded first,
the state does not know yet that ``b`` sends it, so a mirrored ``a`` deleted it and ``b`` then
created it again: a new contact ID, and whatever SendGrid held for it lost. So before a table
deletes, it reads the identifiers of the package's other tables' job files still to load
(``package_files.tables_to_come``) and takes their contacts for shared, as it does those
another table's earlier loads sent.

``keys_to_come(config, stream, cursor)``: every key those rows' contacts may be tracked under
(one per identifier a row has: ``ContactSql.identifier_keys``), with the row it comes from
(``row``: table and row number; ``RemovalLedger.tracked_as`` leaves out a row whose
identifiers belong to several contacts, which stands for none), leaving out rows that
table's ``hard_delete`` column flags (they ask for a deletion too). Only the
identifier columns (and that flag) are read. A table with no mapping here, or whose settings
or identifier columns are wrong, is skipped: it is not loaded (its own call says why).
"""

from __future__ import annotations

import logging

import duckdb
import pyarrow as pa

from sendgrid_destination.config import SendGridConfiguration
from sendgrid_destination.contact_model import IDENTIFIERS
from sendgrid_destination.contact_sql import ContactSql, literal
from sendgrid_destination.dispositions import TableIntent, hard_delete_column
from sendgrid_destination.errors import ConfigurationError
from sendgrid_destination.mapping import FieldMapping, bind_reserved, parse_mapping
from sendgrid_destination.package_files import package_table, tables_to_come
from sendgrid_destination.source_rows import SourceRows

logger = logging.getLogger(__name__)


KEYS_TO_COME = pa.schema([pa.field("row", pa.string()), pa.field("contact_key", pa.string())])


def keys_to_come(
    config: SendGridConfiguration, stream: str, cur: duckdb.DuckDBPyConnection
) -> pa.Table:
    """The contact keys the package's other tables still to load may send, with their rows
    (``KEYS_TO_COME``; module doc)."""
    found: list[pa.Table] = []
    for table, files in tables_to_come(stream).items():
        keys = _keys_of(config, table, files, cur)
        if keys is not None:
            found.append(keys)
    return pa.concat_tables(found) if found else KEYS_TO_COME.empty_table()


def _keys_of(
    config: SendGridConfiguration, table: str, files: list[str], cur: duckdb.DuckDBPyConnection
) -> pa.Table | None:
    try:
        settings = config.for_table(table)  # a table's wrong settings are its own error
        if settings is None:
            return None
        mapped = parse_mapping(settings.mapping).reserved
        identifiers = FieldMapping({f: c for f, c in mapped.items() if f in IDENTIFIERS}, {})
        # A row that table's hard_delete column flags asks for the contact's deletion too.
        column, boolean = hard_delete_column(table, package_table(table))
        read = [*identifiers.columns, *([column] if column else [])]
        rows = SourceRows.from_files(files, read, settings.read_batch_rows)
        flags = TableIntent(delete_column=column, delete_is_boolean=boolean)
        sql = ContactSql(
            bind_reserved(identifiers, rows.schema),
            deleted_sql=flags.deleted_sql(rows.schema.names),
        )
        cur.register("sg_to_come", rows.reader())
        try:
            keys = cur.sql(
                f"SELECT {literal(table + ':')} || row_number AS row, contact_key "
                f"FROM ({sql.identifier_keys('sg_to_come')})"
            ).to_arrow_table()
        finally:
            cur.unregister("sg_to_come")
    except (ConfigurationError, pa.ArrowException, duckdb.Error, OSError, KeyError) as exc:
        logger.debug("table %r skipped when looking ahead: %s", table, type(exc).__name__)
        return None
    return keys.cast(KEYS_TO_COME)
