"""Knowing when the state file lost what it recorded, and the means to recover.

Beside ``state.duckdb`` live two small files:

* ``state.duckdb.journal``: the number of the last request recorded (``requests.seq``), written
  after each recording commits. DuckDB keeps recent commits in its write-ahead log until a
  checkpoint; a log deleted or damaged between runs silently takes them away, and the next
  run would send those contacts again as if they were new. ``check(store)`` compares the file
  with its journal when a run opens it: a file behind its journal is refused, saying what to do.
* ``state.duckdb.bak``: a copy of the state file taken after each run that completed
  (``back_up(store)``, after a checkpoint, so the copy needs no log), and what
  ``sendgrid-destination restore-state`` puts back. Contacts accepted after that copy are then
  sent again once: known, bounded, and chosen by the user.

A state file DuckDB cannot open is refused the same way (``CorruptStateError``), never retried
and never replaced silently by an empty one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import duckdb

from sendgrid_destination.errors import CorruptStateError


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".journal")


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".bak")


def read_journal(path: Path) -> int | None:
    try:
        return int(json.loads(journal_path(path).read_text())["seq"])
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        return None  # a damaged journal proves nothing; the next recording rewrites it


def write_journal(path: Path, seq: int) -> None:
    """Record that request ``seq`` is committed (atomically: a rename)."""
    target = journal_path(path)
    temporary = target.with_name(target.name + ".tmp")
    temporary.write_text(json.dumps({"seq": seq}))
    os.replace(temporary, target)


def refuse_missing(path: Path) -> None:
    """A journal without its state file: the file was deleted or moved, not never created."""
    missing = missing_state(path)
    if missing is not None:
        raise missing


def missing_state(path: Path) -> CorruptStateError | None:
    """The error of a state file gone while its journal remains, if it is."""
    if path.exists() or not journal_path(path).exists():
        return None
    return CorruptStateError(
        f"The state file {path} is missing, but its journal says earlier runs recorded "
        f"sends in it. {_advice(path)}"
    )


def check_against_journal(path: Path, recorded_seq: int) -> None:
    """Refuse a state file that lost requests its journal says were recorded."""
    journal = read_journal(path)
    if journal is not None and recorded_seq < journal:
        raise CorruptStateError(
            f"The state file {path} lost {journal - recorded_seq} recorded request(s): its "
            f"journal says request {journal} was recorded, the file ends at {recorded_seq} "
            f"(its write-ahead log {path.name}.wal was probably deleted or damaged). Running "
            f"on would send those contacts again as if new. {_advice(path)}"
        )


def unreadable(path: Path, error: Exception) -> CorruptStateError:
    return CorruptStateError(
        f"The state file {path} cannot be opened ({type(error).__name__}: "
        f"{str(error).splitlines()[0][:200]}). {_advice(path)}"
    )


def back_up(path: Path) -> None:
    """Copy the (checkpointed) state file beside itself, atomically."""
    target = backup_path(path)
    temporary = target.with_name(target.name + ".tmp")
    shutil.copyfile(path, temporary)
    os.chmod(temporary, 0o600)
    os.replace(temporary, target)


def require_backup(path: Path) -> None:
    """There is a copy of the state file to restore, or CorruptStateError naming where."""
    backup = backup_path(path)
    if not backup.is_file():
        raise CorruptStateError(f"No copy of the state file to restore at {backup}.")


def restore(path: Path) -> int:
    """Put the last good copy back; its last request number becomes the journal's."""
    require_backup(path)
    backup = backup_path(path)
    wal = path.with_name(path.name + ".wal")
    if wal.exists():
        wal.unlink()
    shutil.copyfile(backup, path)
    os.chmod(path, 0o600)
    with duckdb.connect(str(path), read_only=True) as con:
        (seq,) = con.execute("SELECT coalesce(max(seq), 0) FROM requests").fetchone() or (0,)
    write_journal(path, int(seq))
    return int(seq)


def _advice(path: Path) -> str:
    backup = backup_path(path)
    keep = (
        f"Put back the copy taken after the last complete run with `sendgrid-destination "
        f"restore-state --state {path}` ({backup}): contacts accepted after it are sent once "
        "more. "
        if backup.exists()
        else ""
    )
    return (
        f"{keep}Or, to start over and send every contact once more, move {path.name} and "
        f"{path.name}.journal aside."
    )
