"""Progress of a sync a person can watch: contacts planned, sent and confirmed.

``ContactSync`` reports to one ``SyncObserver`` (three calls, counts only, on the main thread of
the load):

* ``planned(contacts)``: once the plan is built, the contacts that may need sending (new and
  changed by fingerprint; some may still turn out unchanged by content);
* ``sent(contacts)``: after each 202 has been recorded in the state (one call per request);
* ``confirmed(contacts)``: when import jobs finish, the contacts SendGrid reports it created or
  updated.

``DltProgress`` feeds these into the collector of the dlt pipeline that is loading
(``dlt.pipeline(..., progress="log" | "tqdm" | "alive_progress" | "enlighten")``), so progress
shows wherever the pipeline's other counters show; outside a pipeline it does nothing.
``Observers`` fans one sync out to several observers (progress and the remote state's periodic
upload). Observers never see a key or a value: a count is all they get.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol

logger = logging.getLogger("sendgrid_destination.progress")

PLANNED = "SendGrid contacts planned"
SENT = "SendGrid contacts sent"
CONFIRMED = "SendGrid contacts confirmed"


class SyncObserver(Protocol):
    def planned(self, contacts: int) -> None: ...

    def sent(self, contacts: int) -> None: ...

    def confirmed(self, contacts: int) -> None: ...


class NoProgress:
    """Observes nothing (the default of ``ContactSync``)."""

    def planned(self, contacts: int) -> None:
        pass

    def sent(self, contacts: int) -> None:
        pass

    def confirmed(self, contacts: int) -> None:
        pass


class Observers:
    """Several observers as one, called in order."""

    def __init__(self, observers: Sequence[SyncObserver]) -> None:
        self._observers = list(observers)

    def planned(self, contacts: int) -> None:
        for observer in self._observers:
            observer.planned(contacts)

    def sent(self, contacts: int) -> None:
        for observer in self._observers:
            observer.sent(contacts)

    def confirmed(self, contacts: int) -> None:
        for observer in self._observers:
            observer.confirmed(contacts)


class DltProgress:
    """Counters in the loading pipeline's collector (``pipeline.collector.update``).

    ``sent`` and ``confirmed`` count against the planned total, so a bar or a log line shows a
    fraction; the total only grows (dlt's collectors cannot lower one), and a run whose planned
    contacts were unchanged by content ends below 100%, which is the truth."""

    def __init__(self, collector: Any | None = None) -> None:
        self._collector = collector if collector is not None else loading_collector()
        self._total = 0

    def planned(self, contacts: int) -> None:
        self._total += contacts
        self._update(PLANNED, contacts)
        for name in (SENT, CONFIRMED):
            # The first update of a counter sets its total; later ones may only add to it.
            self._update(name, 0, total=self._total, inc_total=contacts)

    def sent(self, contacts: int) -> None:
        self._update(SENT, contacts)

    def confirmed(self, contacts: int) -> None:
        # Jobs of earlier runs settle before this run's plan: not this run's progress.
        if self._total:
            self._update(CONFIRMED, contacts)

    def _update(
        self, name: str, inc: int, total: int | None = None, inc_total: int | None = None
    ) -> None:
        if self._collector is None:
            return
        try:
            self._collector.update(name, inc=inc, total=total or None, inc_total=inc_total)
        except Exception as exc:  # a progress display must never fail a load
            logger.debug("progress update failed: %s", type(exc).__name__)


def loading_collector() -> Any | None:
    """The collector of the dlt pipeline active in this thread, or None outside one."""
    pipeline = active_pipeline()
    return None if pipeline is None else pipeline.collector


def active_pipeline() -> Any | None:
    """The dlt pipeline active in this thread, or None outside one (never creates a
    pipeline: ``dlt.current.pipeline()`` would, given none)."""
    try:
        from dlt.common.configuration.container import Container
        from dlt.common.pipeline import PipelineContext

        context = Container()[PipelineContext]
        return context.pipeline() if context.is_active() else None
    except Exception:
        return None
