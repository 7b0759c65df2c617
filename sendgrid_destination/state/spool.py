"""The contact rows of accepted requests, held beside the state file until merged in bulk.

Why: DuckDB writes an insert smaller than a row group (122,880 rows) through its write-ahead
log, and again into the file at the next checkpoint; a larger one goes straight into the
file. A 202 carries at most 30,000 contacts, so inserting each request's rows in its own
transaction wrote every contact twice: 1.2-1.3 s for 1M contacts in 48 requests, against
0.4-0.46 s for the same rows in one insert (measured on this project's 2-core machines).

Contract, for ``StateStore``. The state's table ``spooled`` names the requests whose rows
are here and not yet in ``contacts``; it is the one truth about what is merged:

* ``Spool(state_path)`` keeps its files in ``<state file>.spool/``, one per request.
* ``write(seq, rows)`` inside the request's recording transaction, which also adds ``seq``
  to ``spooled``, before its commit: the rows as an Arrow IPC file named by ``seq``, written
  under a temporary name and renamed, so after a killed process a file is there whole or not
  at all. Files are not flushed to disk (0.3-6 ms a request): if the machine goes down
  first, the file cannot be read, a warning says so, and those contacts are sent once more
  (never lost).
* ``committed(rows)`` after the commit: counts the rows waiting (``rows``), which the store
  merges past ``MERGE_ROWS``.
* ``merge(cur)``: one transaction inserts the rows of every request ``spooled`` names,
  streamed from their files (a batch in memory at a time: holding 500,000 rows in memory
  until the merge raised a 1M-row sync's peak from 575 to 720 MiB), and takes them out of
  ``spooled``; then their files are deleted. A merge whose commit took effect before an
  error is not merged again: ``spooled`` no longer names its requests.
* ``recover(cur)`` when a state file is opened for writing: ``merge``, then every file left
  is deleted (its recording did not commit, or its merge did).

Until a merge, the spool is the only record of those contacts' sends: the store merges
before anything else reads or writes the state (see ``StateStore.con``), and only
``record_sent`` records more in between. Between two merges a contact key is recorded at most
once: the keys of one job file are distinct (the plan keeps one row per key), and the next
file's plan starts with a merge.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.ipc as ipc

from sendgrid_destination.state.duck import transaction

logger = logging.getLogger(__name__)

# The columns of ``contacts`` a send writes.
SPOOLED = pa.schema(
    [
        pa.field("stream", pa.string()),
        pa.field("contact_key", pa.string()),
        pa.field("content_md5", pa.uint64()),
        pa.field("fingerprint", pa.uint64()),
        pa.field("seq", pa.int64()),
        pa.field("ids", pa.string()),
        pa.field("first_seq", pa.int64()),
        pa.field("lists", pa.string()),
    ]
)
# Merge once this many rows wait: far past a row group (so the insert skips the log), and a
# bounded spool on disk (about 55 bytes a contact).
MERGE_ROWS = 1_000_000
_SUFFIX = ".arrow"


def spool_dir(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".spool")


class Spool:
    """See the module docstring."""

    def __init__(self, state_path: Path) -> None:
        self.dir = spool_dir(state_path)
        self._rows = 0  # rows of the requests written since the last merge
        self._waiting = False

    @property
    def rows(self) -> int:
        """Rows written since the last merge."""
        return self._rows

    @property
    def holding(self) -> bool:
        """Whether any request's rows may wait for a merge (also one whose recording raised:
        its commit may have taken effect all the same)."""
        return self._waiting

    def has_files(self) -> bool:
        return self.dir.is_dir() and any(self.dir.iterdir())

    def write(self, seq: int, rows: pa.Table) -> None:
        self._waiting = True
        self.dir.mkdir(mode=0o700, exist_ok=True)
        temporary = self.dir / f"{seq}.tmp"
        with open(temporary, "wb") as handle, ipc.new_file(handle, rows.schema) as writer:
            writer.write_table(rows)
        os.replace(temporary, self._file(seq))

    def committed(self, rows: int) -> None:
        """The recording of the last file written committed, with ``rows`` rows."""
        self._rows += rows

    def merge(self, cur: duckdb.DuckDBPyConnection) -> None:
        """Insert the rows of every request ``spooled`` names, in one transaction that takes
        them out of it; then drop their files."""
        spooled = sorted(int(s) for (s,) in cur.execute("SELECT seq FROM spooled").fetchall())
        if spooled:
            readable = [path for seq in spooled if (path := self._readable(seq)) is not None]
            _insert(cur, pa.RecordBatchReader.from_batches(SPOOLED, _batches(readable)), spooled)
            for seq in spooled:
                self._file(seq).unlink(missing_ok=True)
        self._rows, self._waiting = 0, False

    def recover(self, cur: duckdb.DuckDBPyConnection) -> None:
        """At open: merge what a killed process recorded, and delete every other file."""
        self.merge(cur)
        if self.dir.is_dir():
            for path in self.dir.iterdir():
                path.unlink(missing_ok=True)

    def _file(self, seq: int) -> Path:
        return self.dir / f"{seq}{_SUFFIX}"

    def _readable(self, seq: int) -> Path | None:
        """A request's file, if it can be read; None if it is missing or damaged (the
        machine, not the process, went down before the file reached the disk). Its contacts
        are then not known as sent, and the next run sends them once more."""
        path = self._file(seq)
        try:
            with ipc.open_file(path) as reader:
                if reader.schema.equals(SPOOLED):
                    return path
            problem = "not the spool's columns"
        except (OSError, pa.ArrowException) as exc:
            problem = type(exc).__name__
        logger.warning(
            "The state's spool file %s cannot be read (%s): the contacts of request %s are "
            "not known as sent and will be sent once more.",
            path,
            problem,
            seq,
        )
        return None


def _batches(paths: list[Path]) -> Iterator[pa.RecordBatch]:
    for path in paths:
        with ipc.open_file(path) as reader:
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)


def _insert(cur: duckdb.DuckDBPyConnection, rows: pa.RecordBatchReader, merged: list[int]) -> None:
    names = ", ".join(SPOOLED.names)
    # '' is in no list (see the store's first sends).
    values = ", ".join("nullif(lists, '')" if n == "lists" else n for n in SPOOLED.names)
    cur.register("spooled_rows", rows)
    # Both cores write: 1M contacts streamed from 48 files in 0.55 s, against 1.2-1.3 s in
    # order (measured alone; the checkpoint after either takes 0.01 s). Order is not needed:
    # a job's contacts are found by seq, and one merge holds a few dozen requests. A global
    # setting: put back at once.
    cur.execute("SET preserve_insertion_order = false")
    try:
        with transaction(cur):
            cur.execute(f"INSERT INTO contacts ({names}) SELECT {values} FROM spooled_rows")
            cur.execute("DELETE FROM spooled WHERE seq IN (SELECT unnest(?::BIGINT[]))", [merged])
    finally:
        cur.execute("RESET preserve_insertion_order")
        cur.unregister("spooled_rows")
