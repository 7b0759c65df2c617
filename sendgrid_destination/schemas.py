"""The Arrow tables that cross modules, declared once.

Each schema names who writes the table and who reads it; modules build these tables through
the helpers here (or select exactly these columns), so a column renamed in one place cannot
silently disappear in another.

* ``REJECTS``: rows refused before SendGrid accepted them (the plan's validation, the sender's
  400s), and fields left out of rows sent anyway (the plan's ``omitted``, with
  ``on_invalid_value = "omit_field"``); the state's ``rejects`` table and the summary read
  them. ``column`` is null when the refusal names no column; ``reason`` never contains a value.
* ``RENDERED``: the plan's rows ready to send (or found unchanged by content): what the packer,
  the sender and ``StateStore.record_sent`` read.
* ``FAILED_IN_JOB``: contacts an import job failed, from its errors file (the job tracker writes,
  the store records).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

REJECTS = pa.schema(
    [
        pa.field("row_number", pa.int64()),
        pa.field("contact_key", pa.string()),
        pa.field("column", pa.string()),
        pa.field("reason", pa.string()),
    ]
)

RENDERED = pa.schema(
    [
        pa.field("row_number", pa.int64()),
        pa.field("contact_key", pa.string()),
        pa.field("fingerprint", pa.uint64()),
        pa.field("is_new", pa.bool_()),
        # The content hash of the send that counts (see ``StateStore.changes_sql``), and of
        # a send recorded before schema 5, its SHA-256 instead (hex; else null).
        pa.field("prev_hash", pa.uint64()),
        pa.field("prev_sha256", pa.string()),
        pa.field("pending", pa.bool_()),
        pa.field("retry", pa.bool_()),  # its last send failed or is unconfirmed
        # The content hash of its send refused for good, if any: the same JSON waits.
        pa.field("refused_hash", pa.uint64()),
        pa.field("contact_json", pa.string()),
        pa.field("content_hash", pa.uint64()),  # see ``contact_sql``
        # The identifiers sent, as a JSON object, when more than one (else null).
        pa.field("ids", pa.string()),
        # The lists the contact is put in: sorted list IDs, comma-separated ('' for none).
        # Bodies are packed per list scope: an upsert's list_ids hold for all its contacts.
        pa.field("list_scope", pa.string()),
    ]
)

FAILED_IN_JOB = pa.schema(
    [
        pa.field("contact_key", pa.string()),
        pa.field("reason", pa.string()),
        # Only a change of the row can fix it: not resent until the row changes.
        pa.field("permanent", pa.bool_()),
    ]
)


def empty(schema: pa.Schema) -> pa.Table:
    return schema.empty_table()


def rejects_of(contacts: pa.Table, reasons: Sequence[str]) -> pa.Table:
    """``REJECTS`` rows for whole contacts (``row_number``, ``contact_key``) that name no column."""
    return pa.table(
        {
            "row_number": contacts["row_number"],
            "contact_key": contacts["contact_key"],
            "column": pa.nulls(contacts.num_rows, pa.string()),
            "reason": pa.array(list(reasons), pa.string()),
        },
        schema=REJECTS,
    )


# DELETEs accepted: each contact's key, SendGrid ID, why it goes, the job and the list
# (null: a deletion).
SENT_REMOVALS = pa.schema(
    [
        pa.field("contact_key", pa.string()),
        pa.field("contact_id", pa.string()),
        pa.field("cause", pa.string()),
        pa.field("job_id", pa.string()),
        pa.field("list_id", pa.string()),
    ]
)
