"""Private working directories for copies of a remote state, removed even after a SIGKILL.

A copy of the state holds every contact's identifiers (emails), so it must not outlive its run.
A ``TemporaryDirectory`` is removed when its run ends, but a worker killed by SIGKILL (an
orchestrator's timeout, the OOM killer) never ends it, and ``/tmp`` may outlive many runs.

``private_dir()`` therefore makes the directory (mode 0700, under the system's temporary
directory, prefix ``sendgrid-remote-state-``) with an **owner file** ``.owner`` on which the run
holds an exclusive ``flock`` for as long as it lives; the kernel drops the lock when the process
dies, however it dies. Before making its own, every run removes the directories of this prefix,
of this user, whose owner file it can lock: their owners are gone. The owner file is locked
under a temporary name and then renamed into place, so a directory is never seen with an
unlocked owner file while its owner lives. Directories without an owner file (made by a version
before this one, or still being made) are left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger("sendgrid_destination.private_copy")

PREFIX = "sendgrid-remote-state-"
OWNER = ".owner"


@contextlib.contextmanager
def private_dir() -> Iterator[Path]:
    """A directory only this run uses, removed when the run ends or by a later run if it dies."""
    remove_abandoned()
    path = Path(tempfile.mkdtemp(prefix=PREFIX))
    try:
        with _owned(path):
            yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _owned(path: Path) -> Iterator[None]:
    pending = path / f"{OWNER}.pending"
    fd = os.open(pending, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.rename(pending, path / OWNER)  # the lock goes with the open file, not its name
        yield
    finally:
        os.close(fd)


def remove_abandoned(root: Path | None = None) -> int:
    """Remove the directories of dead runs under ``root`` (the temporary directory); how many."""
    base = Path(root or tempfile.gettempdir())
    try:
        candidates = [p for p in base.iterdir() if p.name.startswith(PREFIX)]
    except OSError:
        return 0
    removed = sum(1 for path in candidates if _remove_if_abandoned(path))
    if removed:
        logger.info("removed %d state copies left by runs that were killed", removed)
    return removed


def _remove_if_abandoned(path: Path) -> bool:
    try:
        if path.is_symlink() or not path.is_dir() or path.stat().st_uid != os.getuid():
            return False
        fd = os.open(path / OWNER, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False  # no owner file (an older version's, or still being made), or not ours
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # its owner lives
    else:
        shutil.rmtree(path, ignore_errors=True)
        return True
    finally:
        os.close(fd)
