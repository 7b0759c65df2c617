"""Where the destination's load step spends its time, measured from outside the package.

Contract: ``install()`` wraps a few public functions of ``sendgrid_destination`` in the
current process (never the files) with timers and returns the ``Timers`` they add to. The
wrappers call through unchanged; they only time. Buckets:

* ``read_parquet``: the next Arrow batch out of the job file for the render
  (``SourceRows.batches`` outside the plan; the plan's own read of the file is part of ``plan``);
* ``plan``: the file-wide check, last row of each key and join with the state (``Plan.build``);
* ``render``, ``pack``: the per-batch path (``Plan.render``, ``Packer``);
* ``csv_file``: CSV import files built from rendered contacts, gzip included (``CsvFile``);
* ``state_write``: ``record_sent``, ``record_rejects``, ``refresh_fingerprints`` and the
  spool's merges of recorded contacts into the state (``Spool.merge``), whatever call made
  them (each bucket counts its own time: a timed call inside another is not counted twice);
* ``waiting_for_api``: the load thread blocked until an in-flight upsert or file upload
  answers (the dispatcher's ``concurrent.futures.wait``): the API's (here the emulator's)
  time, not ours;
* ``jobs``: following import jobs to their end (polling and recording their outcomes).

Used by ``benchmarks.stream`` in its own process only.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any


class Timers:
    """Seconds and calls per bucket; safe to add to from several threads."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, bucket: str, seconds: float) -> None:
        with self._lock:
            self.seconds[bucket] = self.seconds.get(bucket, 0.0) + seconds
            self.calls[bucket] = self.calls.get(bucket, 0) + 1

    def as_dict(self) -> dict[str, dict[str, float]]:
        with self._lock:
            return {k: {"seconds": v, "calls": self.calls[k]} for k, v in self.seconds.items()}


# Per thread, the time of timed calls made inside each timed call still running: a bucket
# counts its own time only (a spool merge that a job outcome triggers is a state write, not
# following jobs), so the buckets add up to no more than the load.
_nested = threading.local()


def _timed(timers: Timers, bucket: str, func: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        stack: list[float] = _nested.__dict__.setdefault("stack", [])
        stack.append(0.0)
        started = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - started
            inner = stack.pop()
            if stack:
                stack[-1] += elapsed
            timers.add(bucket, elapsed - inner)

    return wrapper


def _timed_iterator(
    timers: Timers, bucket: str, func: Callable[..., Iterator[Any]]
) -> Callable[..., Iterator[Any]]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
        items = func(*args, **kwargs)
        while True:
            started = time.perf_counter()
            try:
                item = next(items)
            except StopIteration:
                timers.add(bucket, time.perf_counter() - started)
                return
            timers.add(bucket, time.perf_counter() - started)
            yield item

    return wrapper


def install() -> Timers:
    """Wrap the functions listed in the module docstring; return their timers.

    A function the package no longer has is skipped (its time then shows as ``other``).
    """
    from sendgrid_destination import (
        bulk_csv,
        dispatch,
        import_jobs,
        packing,
        plan,
        source_rows,
        state,
    )
    from sendgrid_destination.state import spool

    timers = Timers()
    patches: list[tuple[Any, str, str]] = [
        (plan.Plan, "build", "plan"),
        (plan.Plan, "render", "render"),
        (packing.Packer, "add", "pack"),
        (packing.Packer, "flush", "pack"),
        (bulk_csv.CsvFile, "add", "csv_file"),
        (bulk_csv.CsvFile, "finish", "csv_file"),
        (state.StateStore, "record_sent", "state_write"),
        (state.StateStore, "record_rejects", "state_write"),
        (state.StateStore, "refresh_fingerprints", "state_write"),
        (spool.Spool, "merge", "state_write"),
        (dispatch, "wait", "waiting_for_api"),
        (import_jobs.JobTracker, "wait", "jobs"),
    ]
    for owner, name, bucket in patches:
        if hasattr(owner, name):
            setattr(owner, name, _timed(timers, bucket, getattr(owner, name)))
    file_rows = source_rows._FileRows
    batches = file_rows.batches
    timed_batches = _timed_iterator(timers, "read_parquet", batches)

    def render_batches(self: source_rows._FileRows) -> Iterator[Any]:
        # The plan's read runs inside Plan.build and is timed there, not twice.
        return batches(self) if self.rows_read == 0 else timed_batches(self)

    setattr(file_rows, "batches", render_batches)  # noqa: B010
    return timers
