"""Reading a state file without touching it: a private copy, opened and upgraded there.

``read_snapshot(path)`` copies the state file and its write-ahead log into a private temporary
directory and opens the copy, so that a reader (``status``, ``rejects``) never blocks a load
that is writing the file (DuckDB lets one process open a file for writing only when no other
process has it open at all), never waits for one, and never creates anything beside the file.
A copy taken while a checkpoint rewrote the file is detected (the file changed during the
copy) and taken again. A file that is not a state file is refused in one sentence.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb

from sendgrid_destination.errors import ConfigurationError, StateLockedError
from sendgrid_destination.state.duck import transaction
from sendgrid_destination.state.schema import migrate
from sendgrid_destination.state.spool import Spool, spool_dir
from sendgrid_destination.state.store import StateStore, no_state_file

_COPY_ATTEMPTS = 5


@contextmanager
def read_snapshot(path: Path) -> Iterator[StateStore]:
    if not path.is_file():
        raise no_state_file(path)
    with tempfile.TemporaryDirectory(prefix="sendgrid-state-") as tmp:
        copy = Path(tmp) / "state.duckdb"
        copy_consistently(path, copy)
        try:
            con = duckdb.connect(str(copy))
        except duckdb.Error as exc:
            raise _not_a_state_file(path, "it is not a DuckDB database") from exc
        try:
            if not _has_meta(con):
                raise _not_a_state_file(path, "it has no state tables")
            with transaction(con):
                migrate(con)  # the copy is ours: an older file reads like a current one
            Spool(copy).recover(con)  # the rows of requests a load has not merged yet
            yield StateStore(con, path)
        finally:
            con.close()


def copy_consistently(path: Path, copy: Path) -> None:
    """The file, its log and its spool (``state.spool``), copied until the file and log did
    not change meanwhile. A spool file copied whose request the copy does not have is
    ignored when the copy is read; one merged and deleted during the copy changed the file."""
    wal = path.with_name(path.name + ".wal")
    for _ in range(_COPY_ATTEMPTS):
        before = _stamp(path), _stamp(wal)
        shutil.copyfile(path, copy)
        if wal.exists():
            shutil.copyfile(wal, copy.with_name(copy.name + ".wal"))
        _copy_spool(spool_dir(path), spool_dir(copy))
        if (_stamp(path), _stamp(wal)) == before:
            return
    raise StateLockedError(
        f"The state file {path} kept changing while it was read (a load is writing it); "
        "try again in a moment."
    )


def _copy_spool(spool: Path, copy: Path) -> None:
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir(mode=0o700)
    try:
        names = [p.name for p in spool.iterdir() if p.suffix == ".arrow"]
    except FileNotFoundError:
        return
    for name in names:
        with contextlib.suppress(FileNotFoundError):  # merged meanwhile: the file changed
            shutil.copyfile(spool / name, copy / name)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _has_meta(con: duckdb.DuckDBPyConnection) -> bool:
    rows = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name IN ('meta', 'contacts')"
    ).fetchall()
    return int(rows[0][0]) == 2


def _not_a_state_file(path: Path, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"{path} is not a sendgrid-destination state file ({why}); pass the state file with "
        "--state, or leave --state out to use the one the settings point at."
    )
