"""The lock object of a remote state: one worker at a time on a state in object storage.

``RemoteLock(fs, "<url>.lock", ttl).acquire(wait)`` creates the lock object exclusively (S3's
conditional PUT, ``If-None-Match: *``, through s3fs; ``O_EXCL`` on a local file system) with
its owner (host and pid, for people), a token (unique per acquisition) and an expiry. The
holder renews it (``renew``) while it lives; a waiting worker retries every second up to
``wait`` seconds, then stops naming the holder. An expired (or unreadable) lock is taken over
through a second exclusive create, of a marker named after the dead holder's token (an
unreadable lock's: a digest of the object's version), so of several workers that found the
same dead lock exactly one takes it. Markers are a few bytes, one per takeover, and are left
in place: deleting them would let a worker that read the dead lock long ago take it over
again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sendgrid_destination.errors import StateLockedError

logger = logging.getLogger("sendgrid_destination.remote_state")

_WAIT_STEP_SECONDS = 1.0


@dataclass(frozen=True)
class LockInfo:
    owner: str  # host:pid of the worker, for people
    token: str  # unique per acquisition: who holds it, exactly
    expires_at: float  # epoch seconds

    def to_json(self) -> bytes:
        return json.dumps(
            {"owner": self.owner, "token": self.token, "expires_at": self.expires_at}
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> LockInfo | None:
        try:
            data = json.loads(raw)
            return cls(str(data["owner"]), str(data["token"]), float(data["expires_at"]))
        except (ValueError, KeyError, TypeError):
            return None  # unreadable (a half-written object): treated as expired

    def describe(self) -> str:
        left = self.expires_at - time.time()
        return f"{self.owner} (lock expires in {max(left, 0):.0f} s unless renewed)"


class RemoteLock:
    """One holder per remote state, through an object created exclusively.

    Exclusive create is S3's conditional PUT (``If-None-Match: *``) through s3fs, ``O_EXCL`` on
    a local file system. An expired lock is taken over through a second exclusive create, of a
    marker named after the expired holder's token, so of several workers that found the same
    dead lock exactly one takes it. Markers are a few bytes each, one per takeover, and are
    left in place: deleting them would let a worker that read the dead lock long ago take it
    over again."""

    def __init__(self, fs: Any, path: str, ttl: float, clock: Callable[[], float] = time.time):
        self.fs = fs
        self.path = path
        self.ttl = ttl
        self._clock = clock
        self.info = LockInfo(f"{socket.gethostname()}:{os.getpid()}", uuid.uuid4().hex, 0.0)
        self.lost = False

    def acquire(self, wait: float) -> None:
        deadline = time.monotonic() + wait
        while True:
            holder = self._try_acquire()
            if holder is None:
                return
            if time.monotonic() >= deadline:
                raise StateLockedError(self._refusal(holder))
            time.sleep(min(_WAIT_STEP_SECONDS, max(deadline - time.monotonic(), 0.01)))

    def _try_acquire(self) -> LockInfo | None:
        """None when acquired, else the live holder."""
        mine = self._fresh()
        if _create_exclusive(self.fs, self.path, mine.to_json()):
            self.info = mine
            return None
        holder = self._read()
        if holder is not None and holder.expires_at > self._clock():
            return holder
        # Expired or unreadable: one worker wins the marker for this dead holder, then the lock.
        dead = holder.token if holder else self._unreadable_token()
        if not _create_exclusive(self.fs, self._marker(dead), mine.to_json()):
            # Another worker is taking it over right now (or died doing so: the refusal
            # names the marker to delete).
            return holder or LockInfo("an unreadable lock", dead, 0.0)
        self._write(mine)
        self.info = mine
        logger.warning(
            "took over the remote state lock of %s, expired without release",
            holder.owner if holder else "an unreadable lock",
        )
        return None

    def _unreadable_token(self) -> str:
        """Names an unreadable lock object by its version, not its content (an empty object
        each time): one marker per such lock. A single name for all of them let the first
        takeover's marker refuse every later unreadable lock for good."""
        try:
            info = self.fs.info(self.path)
        except FileNotFoundError:
            return "unreadable-gone"
        version = "|".join(
            str(info.get(key)) for key in ("ETag", "VersionId", "LastModified", "mtime", "ino")
        )
        return "unreadable-" + hashlib.sha256(version.encode()).hexdigest()[:16]

    def _marker(self, dead_token: str) -> str:
        return f"{self.path}.takeover-{dead_token}"

    def _refusal(self, holder: LockInfo) -> str:
        message = (
            f"The remote state {self.path} is in use by {holder.describe()}. Two runs on one "
            "state could send the same contacts twice: wait for it to finish, raise "
            "state_lock_wait, or give this run its own state_path (one per SendGrid account "
            "or subuser)."
        )
        if holder.expires_at <= self._clock():
            # Expired, yet its takeover marker exists: the worker taking it over died too.
            message += (
                f" The lock expired, but a takeover of it did not finish: if no worker is "
                f"running on this state, delete {self.path} and {self._marker(holder.token)}."
            )
        return message

    def renew(self) -> bool:
        """Push the expiry forward; False (and ``lost``) when the lock is no longer ours."""
        holder = self._read()
        if holder is None or holder.token != self.info.token:
            self.lost = True
            return False
        self.info = LockInfo(self.info.owner, self.info.token, self._clock() + self.ttl)
        self._write(self.info)
        return True

    def release(self) -> None:
        holder = self._read()
        if holder is not None and holder.token == self.info.token:
            self.fs.rm_file(self.path)

    def _fresh(self) -> LockInfo:
        return LockInfo(self.info.owner, uuid.uuid4().hex, self._clock() + self.ttl)

    def _read(self) -> LockInfo | None:
        try:
            return LockInfo.from_json(self.fs.cat_file(self.path))
        except FileNotFoundError:
            return None

    def _write(self, info: LockInfo) -> None:
        if is_local(self.fs):
            # A rename: a reader never sees half a lock (it would take it for an expired one).
            partial = f"{self.path}.{info.token}.partial"
            self.fs.pipe_file(partial, info.to_json())
            os.replace(partial, self.path)
        else:
            self.fs.pipe_file(self.path, info.to_json())  # one PUT: atomic


def _create_exclusive(fs: Any, path: str, data: bytes) -> bool:
    """Create ``path`` only if nothing is there; whether we created it."""
    if is_local(fs):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True
    try:
        fs.pipe_file(path, data, mode="create")  # s3fs: a PUT with If-None-Match: *
    except FileExistsError:
        return False
    except OSError as exc:
        # s3fs maps 412 Precondition Failed (someone created it first) to an OSError.
        if "412" in str(exc) or "PreconditionFailed" in str(exc):
            return False
        raise
    return True


def is_local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")
