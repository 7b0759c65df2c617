"""The CSV file of a contact import, built column-wise from rendered contacts, gzip-compressed.

SendGrid's CSV import (``PUT /v3/marketing/contacts/imports``) maps each CSV column to a field
definition ID. ``CsvLayout.of(bindings, reserved_ids)`` decides the columns: every custom
field, and every reserved field the account's ``field_definitions`` gives an ID (``email``
is the only identifier that has one). A contact that carries a field without a column
(``external_id``, say, mapped or completed from the state) or has no email cannot go by CSV:
``eligible`` leaves it to the upserts. The layout is ``None`` when email itself has no ID.

``CsvFile(layout, cursor, spill_dir)`` is one file being built: ``room(contacts)`` says how
many of these contacts still fit (at most ``max_contacts`` rows and ``max_bytes`` of CSV:
SendGrid takes up to 1,000,000 contacts or 5 GB per file), ``add(contacts)`` appends their
rows and ``finish()`` returns the ``ImportFile``: the gzip file, and a temporary table of the
contacts it carries (what the state records once the upload is accepted; ``file_contacts``
reads it).

The cells come from each contact's JSON, the bytes whose hash the state keeps, so the file
says exactly what an upsert would: DuckDB extracts the values (one parse per contact, all
paths at once), Numbers are cut out of the JSON text as written (parsing them would round
digits the upsert keeps), Dates are read back and written as the day in ``csv_date_format``
(``MM/DD/YYYY``: the only CSV form SendGrid documents), and pyarrow writes and quotes the CSV.
No Python runs per contact.
An empty cell leaves a field as it is, as an omitted field does in an upsert.
"""

from __future__ import annotations

import re
import tempfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from sendgrid_destination.contact_model import MAX_IMPORT_BYTES, MAX_IMPORT_CONTACTS
from sendgrid_destination.contact_sql import DEFAULT_DATE_FORMAT, ident, json_key, literal
from sendgrid_destination.mapping import Binding
from sendgrid_destination.sliced_query import SlicedQuery

# gzip level 1 made a 1M-contact file 15% of the upserts' JSON bytes (level 6: 12%, for 3.5x
# the CPU time): well within the bytes an import saves, at a third of the cost.
_GZIP_LEVEL = 1
_GZIP_WBITS = 31  # zlib's gzip container
# SendGrid documents only M/D/YYYY forms for a CSV's Date cells, and that another format fails
# silently; the upserts' JSON takes ISO-8601 (notes: "Value formats").
DEFAULT_CSV_DATE_FORMAT = "%m/%d/%Y"
# What the state records of each contact a file carried (``StateStore.record_sent``).
FILE_CONTACTS = (
    "contact_key",
    "content_hash",
    "fingerprint",
    "is_new",
    "retry",
    "ids",
    "list_scope",
)


@dataclass(frozen=True)
class Column:
    """One CSV column: its header, the field definition ID it maps to, and its cell's SQL."""

    header: str
    field_id: str
    cell: str
    custom: bool = False


@dataclass(frozen=True)
class CsvLayout:
    columns: tuple[Column, ...]
    outside: tuple[str, ...]  # JSON keys of mapped fields without a column
    paths: tuple[str, ...]  # JSON paths extracted in one parse; cells ``v[i]`` index them

    @classmethod
    def of(
        cls,
        bindings: Sequence[Binding],
        reserved_ids: Mapping[str, str],
        *,
        date_format: str = DEFAULT_DATE_FORMAT,
        csv_date_format: str = DEFAULT_CSV_DATE_FORMAT,
    ) -> CsvLayout | None:
        """The columns for these bindings, or None when email has no field definition ID.
        Date cells are the rendered value (``date_format``) read back and written in
        ``csv_date_format``."""
        if not reserved_ids.get("email") or not any(b.field == "email" for b in bindings):
            return None
        columns: list[Column] = []
        outside: list[str] = []
        paths: list[str] = []
        for b in bindings:
            field_id = b.custom_field_id if b.kind == "custom" else reserved_ids.get(b.field)
            if not field_id:
                outside.append(b.json_key)
                continue
            cell = _cell(b, paths)
            if b.field_type == "Date":
                read = f"strptime({cell}, {literal(date_format)})"
                cell = f"strftime({read}, {literal(csv_date_format)})"
            columns.append(Column(b.field, field_id, cell, b.kind == "custom"))
        return cls(tuple(columns), tuple(outside), tuple(paths))

    @property
    def field_mappings(self) -> list[str | None]:
        return [c.field_id for c in self.columns]

    def eligible(self, contacts: pa.Table) -> pa.ChunkedArray:
        """Per contact (``RENDERED``): new, identified by email alone, carrying no field that
        has no column, and no NUL character (JSON escapes it; CSV readers refuse the whole
        file)."""
        keep = pc.and_(contacts["is_new"], pc.starts_with(contacts["contact_key"], "email:"))
        # ``ids`` is set when a contact goes with several identifiers, mapped or completed
        # from the state (the identifier rule, even for a table that maps only email): a CSV
        # carries email alone, so SendGrid would fail it for good ("missing existing
        # identifier(s)").
        keep = pc.and_(keep, pc.is_null(contacts["ids"]))
        keep = pc.and_(keep, pc.invert(pc.match_substring(contacts["contact_json"], "\\u0000")))
        for key in self.outside:
            # A key's quote cannot open inside a JSON string (quotes there are escaped), so
            # '"key":' occurs only where the key does.
            carried = pc.match_substring(contacts["contact_json"], f"{json_key(key)}:")
            keep = pc.and_(keep, pc.invert(carried))
        return pc.fill_null(keep, False)

    def query(self, relation: str) -> str:
        """Per row of ``relation`` (``contact_json``), one text column per CSV column."""
        cells = ", ".join(f"{c.cell} AS c{i}" for i, c in enumerate(self.columns))
        listed = ", ".join(literal(p) for p in self.paths)
        extract = f"json_extract_string({_OBJECT}, [{listed}])" if self.paths else "NULL"
        return (
            f"SELECT {cells} FROM (SELECT {extract} AS v, j "
            f"FROM (SELECT contact_json AS j FROM {ident(relation)}))"
        )


# The contact's JSON without the comma that follows it (a slice: rtrim took twice as long).
_OBJECT = "j[:-2]"


def _cell(b: Binding, paths: list[str]) -> str:
    """A column's text from the contact's JSON ``j``."""
    path = f'$."custom_fields"."{b.json_key}"' if b.kind == "custom" else f'$."{b.json_key}"'
    if b.field_type == "Number":
        # The number as the JSON spells it: json_extract would round it through a DOUBLE.
        pattern = re.escape(json_key(b.json_key)) + r":(-?[0-9][0-9.eE+-]*)"
        return f"nullif(regexp_extract(j, {literal(pattern)}, 1), '')"
    if b.kind == "alternate_emails":  # SendGrid's CSV takes them comma-separated
        items = f"json_extract_string({_OBJECT}, {literal(path + '[*]')})"
        return f"nullif(array_to_string({items}, ','), '')"
    paths.append(path)
    return f"v[{len(paths)}]"


@dataclass
class ImportFile:
    """A finished file: the gzip file to upload (an anonymous temporary file, rewound), its
    sizes, and the DuckDB temporary table holding its contacts' ``FILE_CONTACTS``."""

    data: BinaryIO
    file_bytes: int
    contact_count: int
    csv_bytes: int
    contacts_table: str

    def close(self) -> None:
        """Drop the gzip file (it is deleted: it never had a name)."""
        self.data.close()


def file_contacts(cursor: duckdb.DuckDBPyConnection, file: ImportFile) -> pa.Table:
    """The file's contacts (``FILE_CONTACTS``), read once: their table is dropped."""
    table = ident(file.contacts_table)
    contacts = cursor.sql(f"SELECT * FROM {table}").to_arrow_table()
    cursor.execute(f"DROP TABLE {table}")
    return contacts


class CsvFile:
    """One import file being built; see the module docstring.

    What a 1,000,000-contact file holds stays out of memory: the gzip goes to an anonymous
    temporary file in ``spill_dir`` (the state's directory, private like the state), and the
    keys and hashes to record go to a DuckDB temporary table (within the state's memory cap,
    spilled beyond it). A 10M-contact load held them in memory and peaked at 814 MB RSS.
    """

    def __init__(
        self,
        layout: CsvLayout,
        cursor: duckdb.DuckDBPyConnection,
        spill_dir: Path,
        *,
        table: str = "sg_bulk_file",
        max_contacts: int = MAX_IMPORT_CONTACTS,
        max_bytes: int = MAX_IMPORT_BYTES,
    ) -> None:
        self._layout = layout
        self._cursor = cursor
        self.max_contacts = max_contacts
        self.max_bytes = max_bytes
        self._gzip = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
        # Closed by discard(), or by ImportFile.close() once uploaded: it outlives this call.
        self._file = tempfile.TemporaryFile(dir=spill_dir)  # noqa: SIM115
        self._table = table
        self._slices = SlicedQuery()  # the cells of long values are sliced (sliced_query)
        cursor.execute(
            f"CREATE OR REPLACE TEMP TABLE {ident(table)} (contact_key VARCHAR, "
            "content_hash UBIGINT, fingerprint UBIGINT, is_new BOOLEAN, retry BOOLEAN, "
            "ids VARCHAR, list_scope VARCHAR)"
        )
        self.rows = 0
        self.csv_bytes = 0

    def room(self, contacts: pa.Table) -> int:
        """How many of ``contacts`` (from the first) this file can still take."""
        by_count = self.max_contacts - self.rows
        # A row's CSV is at most its JSON plus one separator per column: the cells drop the
        # keys, and each quote or escape costs what it costs in JSON.
        sizes = pc.add(pc.binary_length(contacts["contact_json"]), len(self._layout.columns))
        cumulative = np.cumsum(sizes.to_numpy().astype(np.int64))
        left = self.max_bytes - self.csv_bytes - (0 if self.rows else self._header_bound())
        by_bytes = int(np.searchsorted(cumulative, left, side="right"))
        return max(0, min(by_count, by_bytes, int(contacts.num_rows)))

    @property
    def full(self) -> bool:
        return self.rows >= self.max_contacts

    def add(self, contacts: pa.Table) -> None:
        """Append these contacts' rows (``RENDERED``; ``room`` must allow them)."""
        if contacts.num_rows == 0:
            return
        cur = self._cursor
        cells = self._slices.run(contacts.select([*FILE_CONTACTS, "contact_json"]), self._cells)
        cur.register("sg_csv_contacts", contacts.select(FILE_CONTACTS))
        try:
            kept = ", ".join(FILE_CONTACTS)
            cur.execute(f"INSERT INTO {ident(self._table)} SELECT {kept} FROM sg_csv_contacts")
        finally:
            cur.unregister("sg_csv_contacts")
        named = cells.rename_columns([c.header for c in self._layout.columns])
        sink = pa.BufferOutputStream()
        pa_csv.write_csv(named, sink, pa_csv.WriteOptions(include_header=self.rows == 0))
        text = sink.getvalue()
        self._file.write(self._gzip.compress(text))
        self.rows += contacts.num_rows
        self.csv_bytes += text.size

    def _cells(self, contacts: pa.Table) -> pa.Table:
        self._cursor.register("sg_csv_cells", contacts)
        try:
            return self._cursor.sql(self._layout.query("sg_csv_cells")).to_arrow_table()
        finally:
            self._cursor.unregister("sg_csv_cells")

    def finish(self) -> ImportFile:
        """The file as it is now; the builder must not be used afterwards."""
        self._file.write(self._gzip.flush())
        size = self._file.tell()
        self._file.seek(0)
        return ImportFile(self._file, size, self.rows, self.csv_bytes, self._table)

    def discard(self) -> None:
        """Drop what was built (the load ended before this file was complete)."""
        self._file.close()
        self._cursor.execute(f"DROP TABLE IF EXISTS {ident(self._table)}")

    def _header_bound(self) -> int:
        return sum(len(c.header.encode()) * 2 + 3 for c in self._layout.columns)
