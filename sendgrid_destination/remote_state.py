"""The state file on object storage, for workers whose disk does not outlive a task.

``state_path`` may be an fsspec URL (``s3://bucket/sendgrid/state.duckdb``, ``gs://…``,
``file:///…``; ``s3://`` needs the ``s3`` extra, ``gs://`` gcsfs). ``open_state(config)`` then:

1. takes the **lock object** ``<url>.lock`` (``remote_lock``): created exclusively, naming its
   owner and an expiry that a heartbeat thread pushes forward while the run lives, so the lock
   of a worker that died is taken over once it has expired; a live holder makes this run wait
   up to ``state_lock_wait`` seconds and then stop (``StateLockedError``, naming the holder);
2. downloads the state into a private working copy (none yet: a new state), in a directory
   that a later run removes if this one is killed (``private_copy``: the copy holds emails);
3. yields the store opened on the copy (``StateStore.open``, unchanged: its own file lock
   guards the copy) and an observer that uploads the state after every
   ``state_upload_every`` accepted requests (``StateUploads``, told by the sync after each
   recorded 202);
4. uploads it at the end, whether the run succeeded or not, and releases the lock.

A worker killed mid-run therefore loses at most what was accepted since its last upload: the
next run resends exactly that (nothing recorded in the uploaded state is sent again), and jobs
recorded there are polled again. An upload checkpoints the store first, so the remote object is
always a complete DuckDB state file (``sendgrid-destination status --state <url>`` reads it),
and replaces the old object in one PUT (object stores make a PUT atomic; on a local file system
it is a rename). Paths without a scheme are plain local files, opened as before.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sendgrid_destination.account import adopt_legacy_state
from sendgrid_destination.config import SendGridConfiguration, is_remote
from sendgrid_destination.errors import (
    ConfigurationError,
    CorruptStateError,
    RemoteStateError,
    StateLockedError,
)
from sendgrid_destination.private_copy import private_dir
from sendgrid_destination.progress import NoProgress, SyncObserver
from sendgrid_destination.remote_lock import RemoteLock, is_local
from sendgrid_destination.state import StateStore

logger = logging.getLogger("sendgrid_destination.remote_state")

# How often the holder renews its lock, as a fraction of its time to live: two renewals can fail
# (a slow store) before a waiting worker may take the lock over.
_RENEW_FRACTION = 1 / 3


class StateUploads:
    """The observer that uploads the state after every ``every`` accepted requests."""

    def __init__(self, remote: RemoteState, store: StateStore, every: int) -> None:
        self._remote = remote
        self._store = store
        self._every = max(every, 1)
        self._since_upload = 0

    def planned(self, contacts: int) -> None:
        pass

    def sent(self, contacts: int) -> None:
        self._since_upload += 1
        if self._since_upload >= self._every:
            self._store.checkpoint()
            self._remote.upload()
            self._since_upload = 0

    def confirmed(self, contacts: int) -> None:
        pass


class RemoteState:
    """A remote state URL, its lock and the local working copy of one run."""

    def __init__(self, url: str, workdir: Path, *, lock_ttl: float) -> None:
        self.url = url
        self.fs, self.path = filesystem(url)
        if is_local(self.fs):
            self.fs.makedirs(self.fs._parent(self.path), exist_ok=True)
        self.local = workdir / "state.duckdb"
        self.lock = RemoteLock(self.fs, self.path + ".lock", lock_ttl)

    def download(self) -> bool:
        """Fetch the state into the working copy; False when there is none yet."""
        self.fs.invalidate_cache()  # another worker may have written it since
        try:
            self.fs.get_file(self.path, str(self.local))
        except FileNotFoundError:
            return False
        except Exception as exc:
            raise _transfer_error("download", self.url, exc) from exc
        return True

    def upload(self) -> None:
        if self.lock.lost:
            raise StateLockedError(
                f"The lock on the remote state {self.url} was taken over by another worker "
                "while this run held it (its renewals failed past state_lock_ttl); this run "
                "stops without uploading. Raise state_lock_ttl if the storage is slow."
            )
        started = time.monotonic()
        try:
            if is_local(self.fs):
                # A rename: readers never see half a file.
                partial = f"{self.path}.uploading-{self.lock.info.token}"
                self.fs.put_file(str(self.local), partial)
                os.replace(partial, self.path)
            else:
                self.fs.put_file(str(self.local), self.path)  # one PUT: atomic
        except Exception as exc:
            raise _transfer_error("upload", self.url, exc) from exc
        logger.info(
            "state uploaded to %s (%.1f MB in %.1f s)",
            self.url,
            self.local.stat().st_size / 1e6,
            time.monotonic() - started,
        )


def filesystem(url: str) -> tuple[Any, str]:
    """fsspec's file system for ``url`` and the path within it."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)  # type: ignore[no-any-return]
    except (ImportError, ValueError) as exc:
        scheme = url.split("://", 1)[0]
        raise ConfigurationError(
            f"state_path {scheme}://… needs an fsspec file system for {scheme!r} ({exc}). For "
            "s3:// install sendgrid-destination[s3]; for gs:// install gcsfs."
        ) from None


def _transfer_error(what: str, url: str, exc: Exception) -> RemoteStateError:
    return RemoteStateError(
        f"Could not {what} the remote state {url} ({type(exc).__name__}); check the storage "
        "credentials and that the bucket exists. The next run resends at most what was "
        "accepted since the last upload."
    )


@contextmanager
def _heartbeat(lock: RemoteLock) -> Iterator[None]:
    """Renew the lock every third of its time to live until the block ends."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(lock.ttl * _RENEW_FRACTION):
            try:
                if not lock.renew():
                    logger.error("the remote state lock was taken over by another worker")
                    return
            except Exception as exc:  # a missed renewal is retried at the next beat
                logger.warning("could not renew the remote state lock: %s", type(exc).__name__)

    thread = threading.Thread(target=beat, name="sendgrid-state-lock", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=30)


@dataclass
class OpenState:
    """What the destination works on: the store, and the observer that keeps its remote copy
    current (``NoProgress`` for a local state file)."""

    store: StateStore
    uploads: SyncObserver


@contextmanager
def open_remote(
    url: str, *, upload_every: int, lock_ttl: float, lock_wait: float
) -> Iterator[OpenState]:
    """Lock, download, open, (upload periodically), upload, release: see the module doc."""
    with private_dir() as tmp:
        remote = RemoteState(url, tmp, lock_ttl=lock_ttl)
        try:
            remote.lock.acquire(lock_wait)
        except StateLockedError:
            raise
        except Exception as exc:
            raise _transfer_error("lock", url, exc) from exc
        try:
            with _heartbeat(remote.lock):
                if not remote.download():
                    logger.info("no state at %s yet: starting a new one", url)
                opened = False
                try:
                    with StateStore.open(remote.local) as store:
                        opened = True
                        yield OpenState(store, StateUploads(remote, store, upload_every))
                except CorruptStateError as exc:
                    if opened:
                        _upload_after_failure(remote)
                        raise
                    raise _remote_corrupt(url, remote.local, exc) from None
                except BaseException:
                    # What the failed run recorded is uploaded too (its 202s must not be
                    # resent); the run's own error stays the one raised.
                    if opened:
                        _upload_after_failure(remote)
                    raise
                remote.upload()  # the store is closed (checkpointed): the file is whole
        finally:
            remote.lock.release()


def _remote_corrupt(url: str, local: Path, exc: CorruptStateError) -> CorruptStateError:
    """The downloaded copy's refusal, said of the remote object: the copy is deleted when the
    run ends, and its advice (a backup beside it, files to move aside) was of that copy."""
    first = exc.message.split(". ", 1)[0].replace(f"The state file {local}", "its copy")
    what = first.replace(str(local), "the copy")  # DuckDB's own message names the file too
    return CorruptStateError(
        f"The remote state {url} cannot be used: {what}. A remote state keeps no backup of its "
        "own: put back an earlier version of the object with your storage's versioning, or, "
        "to start over and send every contact once more, move the object aside."
    )


def _upload_after_failure(remote: RemoteState) -> None:
    try:
        remote.upload()
    except Exception as exc:
        logger.error(
            "could not upload the state after the run failed (%s); the next run resends what "
            "this one sent since its last upload",
            exc,
        )


@contextmanager
def fetch_copy(url: str) -> Iterator[Path | None]:
    """A private copy of the remote state for reading (no lock: it is only read), or None when
    there is none yet."""
    with private_dir() as tmp:
        fs, path = filesystem(url)
        local = tmp / "state.duckdb"
        try:
            fs.get_file(path, str(local))
        except FileNotFoundError:
            yield None
            return
        except Exception as exc:
            raise _transfer_error("download", url, exc) from exc
        yield local


@contextmanager
def open_state(config: SendGridConfiguration) -> Iterator[OpenState]:
    """The state the destination works on: remote (``state_path`` is a URL) or local."""
    if is_remote(config.state_path):
        with open_remote(
            str(config.state_path),
            upload_every=config.state_upload_every,
            lock_ttl=config.state_lock_ttl,
            lock_wait=config.state_lock_wait,
        ) as opened:
            yield opened
        return
    path = config.resolved_state_path()
    if legacy := config.legacy_state_path():
        adopt_legacy_state(path, legacy)
    with StateStore.open(path) as store:
        yield OpenState(store, NoProgress())
