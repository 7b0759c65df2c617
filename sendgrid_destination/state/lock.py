"""One writer per state file: an exclusive ``flock`` on ``<file>.lock`` beside it.

``file_lock(path, shared=...)`` holds the lock for the block and raises ``StateLockedError``
at once (never waits) when another process holds it: two runs on one state file could both
send the same contacts. The lock file is created ``0600`` and never followed through a
symbolic link.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sendgrid_destination.errors import ConfigurationError, StateLockedError


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


@contextmanager
def file_lock(path: Path, *, shared: bool = False) -> Iterator[None]:
    target = lock_path(path)
    try:
        # O_NOFOLLOW: a lock file replaced by a symbolic link must not make us chmod (or
        # create) whatever it points at.
        fd = os.open(target, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if target.is_symlink():
            raise ConfigurationError(
                f"The state lock {target} is a symbolic link; remove it (the destination "
                "creates its own lock file)."
            ) from exc
        raise
    try:
        os.fchmod(fd, 0o600)
        mode = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise StateLockedError(
                f"The state file {path} is in use by another run. Wait for it to finish, or "
                "point this run at another state_path; two runs on one state file could both "
                "send the same contacts."
            ) from exc
        yield
    finally:
        os.close(fd)
