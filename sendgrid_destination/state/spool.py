"""The contact rows of accepted requests, held beside the state file until merged in bulk.

Why: DuckDB writes an insert smaller than a row group (122,880 rows) through its write-ahead
log, and again into the file at the next checkpoint; a larger one goes straight into the
file. A 202 carries at most 30,000 contacts, so inserting each request's rows in its own
transaction wrote every contact twice: 1.2-1.3 s for 1M contacts in 48 requests, against
0.4-0.46 s for the same rows in one insert (measured on this project's 2-core machines).

Contract, for ``StateStore``:

* ``Spool(state_path)`` keeps its files in ``<state file>.spool/``, one per request.
* ``write(seq, rows)`` runs inside the request's recording transaction, before its commit:
  the rows as an Arrow IPC file named by ``seq``, written under a temporary name and renamed,
  so after a killed process a file is there whole or not at all. A crash before the commit
  leaves a file whose request the state does not have: ``recover`` deletes it. Files are not
  flushed to disk (0.3-6 ms a request): if the machine goes down first, ``recover`` cannot
  read the file, says so, and those contacts are sent once more (never lost).
* ``hold(rows)`` after the commit: the same rows, in memory for the next ``merge``.
* ``merge(cur)``: one transaction inserts every held row into ``contacts`` and sets the
  state's ``merged_seq``; then the files are deleted (a crash between the two leaves files
  at or below ``merged_seq``, which ``recover`` deletes).
* ``recover(cur)`` when a state file is opened for writing: the files a crash left behind
  whose request the state committed and did not merge are read and merged; the rest deleted.

Until a merge, the held rows are the only record of those contacts' sends: the store merges
before anything else reads or writes the state (see ``StateStore.con``), and only
``record_sent`` records more in between. Between two merges a contact key is recorded at most
once: the keys of one job file are distinct (the plan keeps one row per key), and the next
file's plan starts with a merge.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
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
# Merge once this many rows are held: past a row group, so the insert skips the log, and a
# bounded amount of memory (about 70 bytes a contact) however large the file is.
MERGE_ROWS = 500_000
_SUFFIX = ".arrow"


def spool_dir(state_path: Path) -> Path:
    return state_path.with_name(state_path.name + ".spool")


class Spool:
    """See the module docstring."""

    def __init__(self, state_path: Path) -> None:
        self.dir = spool_dir(state_path)
        self._held: list[pa.Table] = []
        self._rows = 0

    @property
    def rows(self) -> int:
        """Rows held in memory, not merged yet."""
        return self._rows

    @property
    def holding(self) -> bool:
        """Whether any request's rows wait for a merge."""
        return bool(self._held)

    def has_files(self) -> bool:
        return self.dir.is_dir() and any(self.dir.iterdir())

    def write(self, seq: int, rows: pa.Table) -> None:
        self.dir.mkdir(mode=0o700, exist_ok=True)
        target = self.dir / f"{seq}{_SUFFIX}"
        temporary = self.dir / f"{seq}.tmp"
        with open(temporary, "wb") as handle, ipc.new_file(handle, rows.schema) as writer:
            writer.write_table(rows)
        os.replace(temporary, target)

    def hold(self, rows: pa.Table) -> None:
        self._held.append(rows)
        self._rows += rows.num_rows

    def merge(self, cur: duckdb.DuckDBPyConnection) -> None:
        """Insert the held rows into ``contacts`` in one transaction, then drop their files."""
        if not self._held:
            return
        _insert(cur, pa.concat_tables(self._held))
        self._held, self._rows = [], 0
        self._clear()

    def recover(self, cur: duckdb.DuckDBPyConnection) -> int:
        """Merge what a crashed process recorded and did not merge; return its rows."""
        if not self.dir.is_dir():
            return 0
        merged = _merged_seq(cur)
        committed = {int(s) for (s,) in cur.execute("SELECT seq FROM requests").fetchall()}
        tables = []
        for seq, path in self._files():
            if seq > merged and seq in committed:
                tables.extend(_read(path))
        found = pa.concat_tables(tables) if tables else SPOOLED.empty_table()
        if found.num_rows:
            _insert(cur, found)
        self._clear()
        return int(found.num_rows)

    def _files(self) -> list[tuple[int, Path]]:
        found = []
        for path in self.dir.iterdir():
            if path.suffix == _SUFFIX and path.stem.isdigit():
                found.append((int(path.stem), path))
        return sorted(found)

    def _clear(self) -> None:
        if not self.dir.is_dir():
            return
        for path in self.dir.iterdir():
            path.unlink(missing_ok=True)


def _read(path: Path) -> list[pa.Table]:
    """A spool file's rows; none if it cannot be read (the machine, not the process, went
    down before the file reached the disk: files are not flushed, the rename is atomic). Its
    contacts are then not known as sent, and the next run sends them once more."""
    try:
        with ipc.open_file(path) as reader:
            return [reader.read_all().cast(SPOOLED)]
    except (OSError, pa.ArrowException) as exc:
        logger.warning(
            "The state's spool file %s cannot be read (%s): the contacts of request %s are "
            "not known as sent and will be sent once more.",
            path,
            type(exc).__name__,
            path.stem,
        )
        return []


def _merged_seq(cur: duckdb.DuckDBPyConnection) -> int:
    row = cur.execute("SELECT value FROM meta WHERE key = 'merged_seq'").fetchone()
    return int(row[0]) if row else 0


def _insert(cur: duckdb.DuckDBPyConnection, rows: pa.Table) -> None:
    names = ", ".join(SPOOLED.names)
    cur.register("spooled", rows)
    # Both cores write: in a 1M-contact first pass, the merges and the closing checkpoint
    # (which then compacts the two threads' row groups) took 0.8 s, against 1.2 s in order.
    # Order is not needed: a job's contacts are found by seq, and one merge holds a few
    # dozen requests. A global setting: put back at once.
    cur.execute("SET preserve_insertion_order = false")
    try:
        with transaction(cur):
            cur.execute(f"INSERT INTO contacts ({names}) SELECT {names} FROM spooled")
            last = str(pc.max(rows["seq"]).as_py())
            cur.execute("INSERT OR REPLACE INTO meta VALUES ('merged_seq', ?)", [last])
    finally:
        cur.execute("RESET preserve_insertion_order")
        cur.unregister("spooled")
