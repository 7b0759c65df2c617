"""Bodies in flight: up to ``limit`` upserts at once, every accepted one recorded, whatever raises.

``with Dispatcher(send, record, limit) as dispatch: dispatch.send(bodies)`` runs ``send(body)``
on worker threads and hands each outcome to ``record`` on the calling thread (the state store
is single-threaded), in order of completion. Whatever ends the block, the exit waits for every
body already on the wire and records its outcome before anything propagates: a 202 that
arrived is always in the state, so its job is followed and its contacts are not resent. Bodies
queued but not yet started are dropped when the block raises (they never left).

If a send fails, the other bodies in flight still finish and are recorded, then the first
failure is raised. A send that failed after part of its work was done (a body split after a
400, one part accepted, the next one failing) hands that part over with the error
(``carry_outcome``): it is recorded like any outcome before the error goes on. ``stop()`` is
asked before each new body: the error it returns (a signal asked the load to stop) is raised
instead of sending it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from types import TracebackType
from typing import Generic, TypeVar

logger = logging.getLogger("sendgrid_destination.dispatch")

B = TypeVar("B")
O = TypeVar("O")  # noqa: E741 - the outcome type
_PARTIAL = "sendgrid_partial_outcome"


def carry_outcome(error: BaseException, outcome: object) -> None:
    """Attach what a failed send did before failing, for the dispatcher to record."""
    setattr(error, _PARTIAL, outcome)


class Dispatcher(Generic[B, O]):
    def __init__(
        self,
        send: Callable[[B], O],
        record: Callable[[O], None],
        limit: int,
        stop: Callable[[], BaseException | None] = lambda: None,
    ) -> None:
        self._send = send
        self._record = record
        self._limit = limit
        self._stop = stop
        self._pool = ThreadPoolExecutor(limit, "sendgrid-upsert")
        self._inflight: set[Future[O]] = set()

    def __enter__(self) -> Dispatcher[B, O]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is None:
                self.drain()
            else:
                self._settle_after(exc)
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def send(self, bodies: Iterable[B | None]) -> None:
        """Start each body (``None`` skipped), waiting for a free slot when ``limit`` are out."""
        for body in bodies:
            if body is None:
                continue
            while len(self._inflight) >= self._limit:
                self._collect()
            if (stopped := self._stop()) is not None:
                raise stopped
            self._inflight.add(self._pool.submit(self._send, body))

    def drain(self) -> None:
        """Wait for every body in flight and record it."""
        while self._inflight:
            self._collect()

    def _collect(self) -> None:
        done, self._inflight = wait(self._inflight, return_when=FIRST_COMPLETED)
        errors = self._record_done(done)
        if errors:
            self._settle_after(errors[0])
            raise errors[0]

    def _record_done(self, done: Iterable[Future[O]]) -> list[BaseException]:
        errors: list[BaseException] = []
        for future in done:
            if future.cancelled():
                continue
            error = future.exception()
            if error is not None:
                partial = getattr(error, _PARTIAL, None)
                if partial is not None:  # a 202 before the failure: in the state first
                    self._record(partial)
                errors.append(error)
                continue
            self._record(future.result())
        return errors

    def _settle_after(self, cause: BaseException) -> None:
        """``cause`` ends the dispatch: cancel what has not started, record what had."""
        for future in self._inflight:
            future.cancel()
        rest, self._inflight = wait(self._inflight), set()
        for error in self._record_done(rest.done):
            if error is not cause:
                logger.warning("a body in flight also failed: %s", type(error).__name__)
