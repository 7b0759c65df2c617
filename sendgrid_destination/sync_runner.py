"""Running a sync file: its source into the ``sendgrid`` destination through a dlt pipeline.

``run_sync(sync, ...)`` registers the file's ``[destination.sendgrid]`` as a config provider
(environment variables still win), checks the settings before anything is extracted (a missing
key must not leave a pending package behind), finishes a package a failed run left pending,
then extracts and loads afresh, and returns a ``SyncReport``: the SendGrid summary of each
table it loaded, the duration and where the state lives. ``plan_sync(sync, ...)`` is the same
run as a plan (``dry_run.plan_run``: the load's own code on copies of dlt's working folder and
of the state, writes answered locally), so its summaries are what the run would then do.
``SyncReport.as_json()`` is the CLI's ``--json`` document: one object, counts only (no key,
no value), the same shape for a run and a plan. Its ``tables`` are each load's summary as the
state keeps it; a load a failed run left pending covers that run's attempt too, so ``totals``
(what this command did) count only what this command added to such a load (``earlier``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dlt
from dlt.common.configuration import inject_section
from dlt.common.configuration.exceptions import ConfigurationException
from dlt.common.configuration.specs.config_section_context import ConfigSectionContext
from dlt.pipeline.exceptions import PipelineStepFailed

from sendgrid_destination import refresh_due
from sendgrid_destination.config import SendGridConfiguration, is_remote
from sendgrid_destination.destination import run_summaries, sendgrid
from sendgrid_destination.dlt_packages import finish_interrupted_moves
from sendgrid_destination.dry_run import plan_packages
from sendgrid_destination.errors import (
    ConfigurationError,
    SendGridError,
    SourceError,
    SyncFileError,
    TablesNotLoadedError,
    ours_in,
)
from sendgrid_destination.redaction import redact
from sendgrid_destination.remote_state import fetch_copy
from sendgrid_destination.sources import resource_for
from sendgrid_destination.state import reports
from sendgrid_destination.state.snapshot import read_snapshot
from sendgrid_destination.summary import RunSummary
from sendgrid_destination.sync_file import SyncFile, settings_provider

logger = logging.getLogger("sendgrid_destination.sync")

# Counters added up over the tables of a run for the JSON document's totals.
_TOTALS = (
    "rows_read",
    "superseded",
    "new",
    "changed",
    "retried",
    "unchanged",
    "waiting_for_change",
    "deferred",
    "rejected",
    "rejected_by_api",
    "contacts_sent",
    "requests",
    "imports",
    "bytes_sent",
    "failed_in_jobs",
    "unconfirmed",
)
_COUNTERS = ("rejected_by_reason", "jobs", "failed_by_reason")
# A failed load's summaries are among the state's most recent runs (one per table).
RECENT_RUNS = 100


@dataclass
class SyncReport:
    sync: str
    mode: str  # "run" or "plan"
    state: str
    summaries: list[RunSummary] = field(default_factory=list)
    # Of a load a failed run left pending, that this command completed: its summary as the
    # failed run left it (counted by that run's report, not by this one's totals).
    earlier: list[RunSummary] = field(default_factory=list)
    duration_seconds: float = 0.0
    error: str | None = None
    failure: BaseException | None = None  # what failed the run (not in the JSON document)
    notes: list[str] = field(default_factory=list)  # of the command, not of one table

    def totals(self) -> dict[str, Any]:
        """What this command did: each table's counts, less what a failed run had reported
        of a load this command completed. A count that fell meanwhile (a refusal a later
        attempt superseded, a plan's jobs) adds nothing: this command did not refuse less."""
        totals: dict[str, Any] = {name: 0 for name in _TOTALS}
        counters: dict[str, Counter[str]] = {name: Counter() for name in _COUNTERS}
        before = {e.run_id: e for e in self.earlier}
        for summary in self.summaries:
            earlier = before.get(summary.run_id, RunSummary(summary.run_id, summary.stream))
            for name in _TOTALS:
                totals[name] += max(0, getattr(summary, name) - getattr(earlier, name))
            for name in _COUNTERS:
                was = getattr(earlier, name)
                for key, n in getattr(summary, name).items():
                    counters[name][key] += max(0, n - was.get(key, 0))
        return totals | {name: {k: n for k, n in c.items() if n} for name, c in counters.items()}

    def resumed(self, summary: RunSummary) -> bool:
        """Whether ``summary`` is of a load a failed run left pending."""
        return any(e.run_id == summary.run_id for e in self.earlier)

    def as_json(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "sync": self.sync,
            "mode": self.mode,
            "ok": self.error is None,
            "error": self.error,
            "duration_seconds": round(self.duration_seconds, 3),
            "state": self.state,
            "notes": list(self.notes),
        }
        return document | {
            "totals": self.totals(),
            "tables": [s.as_dict() for s in self.summaries],
        }


def resolved_settings(sync: SyncFile) -> SendGridConfiguration:
    """The destination's settings as a load would resolve them (this file, then environment
    variables, secrets and config files, pipeline-scoped ones first), checked."""
    try:
        with inject_section(ConfigSectionContext(pipeline_name=sync.name, sections=())):
            config = sendgrid().configuration(SendGridConfiguration(), accept_partial=True)
    except ConfigurationException as exc:  # dlt's: a value of the wrong type, say
        raise ConfigurationError(
            f"The destination's settings cannot be read: {exc}. Fix it under "
            "[destination.sendgrid] or in its DESTINATION__SENDGRID__... variable."
        ) from None
    assert isinstance(config, SendGridConfiguration)
    config.validate()
    return config


def state_summaries(config: SendGridConfiguration, load_id: str = "") -> list[RunSummary]:
    """The summaries the state recorded for the tables of one load (a failed one included);
    without ``load_id``, of the recent loads."""
    location = config.state_location()
    with ExitStack() as stack:
        if is_remote(location):
            local = stack.enter_context(fetch_copy(location))
            if local is None:
                return []
        else:
            local = Path(location)
            if not local.is_file():
                return []
        store = stack.enter_context(read_snapshot(local))
        found = reports.load_summaries(store, load_id, RECENT_RUNS)
    return [RunSummary.from_dict(s) for s in found]


def run_sync(
    sync: SyncFile,
    *,
    full_refresh: bool = False,
    progress: Any = None,
    pipelines_dir: str | None = None,
) -> SyncReport:
    """One run of ``sync``. A failed pipeline step is returned as ``failure``, with the
    summaries of what the failed load did (from the state); a settings error raises."""
    started = time.monotonic()
    with settings_provider(sync):
        config = resolved_settings(sync)
        report = SyncReport(sync.name, "run", config.state_location())
        pipeline = dlt.pipeline(
            sync.name,
            destination=sendgrid(),
            pipelines_dir=pipelines_dir,  # type: ignore[arg-type]  # None: dlt's default
            progress=progress,
        )
        before: list[RunSummary] = []
        # A run killed inside one of dlt's package moves left it half done: finish it.
        finish_interrupted_moves(pipeline)
        try:
            # Given a package a failed run left pending, run() would load only that package
            # and ignore the new rows: finish it, then extract afresh.
            if pipeline.has_pending_data:
                before = state_summaries(config)
                report.summaries += run_summaries(pipeline, pipeline.load())
            why = refresh_due.reason(pipeline, sync.source)
            if why and not full_refresh:
                report.notes.append(why)
                logger.warning("%s", why)
            refresh: dict[str, Any] = {"refresh": "drop_sources"} if full_refresh or why else {}
            info = pipeline.run(_resource(sync), **refresh)
            report.summaries += run_summaries(pipeline, info)
            refresh_due.note_loaded(pipeline, sync.source)
        except PipelineStepFailed as exc:
            report.failure = exc
            if exc.load_id:
                report.summaries += state_summaries(config, exc.load_id)
            if isinstance(ours_in(exc), TablesNotLoadedError):
                refresh_due.note_not_loaded(pipeline, sync.source)
        finally:
            report.earlier = _earlier(before, report.summaries)
            report.duration_seconds = time.monotonic() - started
    return report


def _earlier(before: list[RunSummary], summaries: list[RunSummary]) -> list[RunSummary]:
    """Of ``before`` (the state's summaries before this command), those of ``summaries``."""
    ran = {s.run_id for s in summaries}
    return [s for s in before if s.run_id in ran]


def plan_sync(
    sync: SyncFile, *, full_refresh: bool = False, pipelines_dir: str | None = None
) -> SyncReport:
    """What ``run_sync(sync, ...)`` would do, changing nothing (see the module docstring); a
    failed plan is returned as ``failure``, a settings error raises."""
    started = time.monotonic()
    with settings_provider(sync):
        config = resolved_settings(sync)
        report = SyncReport(sync.name, "plan", config.state_location())
        why = refresh_due.reason_for(sync.name, pipelines_dir, sync.source)
        if why and not full_refresh:
            report.notes.append(why)
        refresh: dict[str, Any] = {"refresh": "drop_sources"} if full_refresh or why else {}
        before = state_summaries(config)  # a pending package's plan covers its failed run
        report.summaries, report.failure = plan_packages(
            sync.name, _resource(sync), pipelines_dir=pipelines_dir, run_kwargs=refresh
        )
        report.earlier = _earlier(before, report.summaries)
        report.duration_seconds = time.monotonic() - started
    return report


def _resource(sync: SyncFile) -> Any:
    """The sync file's source as a dlt resource; what creating it raises (a SQL table is
    reflected here: its database unreachable, the table missing) as one of our errors."""
    try:
        return resource_for(sync.source)
    except SendGridError:
        raise
    except Exception as exc:
        what = f"{type(exc).__name__}: {redact(str(exc).splitlines()[0]) if str(exc) else ''}"
        # SQLAlchemy's (through dlt's sql_database): matched by name, not imported for it.
        if type(exc).__name__ == "NoSuchTableError":
            raise SyncFileError(
                f"The {sync.source.kind} source has no table {sync.source.table!r} ({what}): "
                "check `table` under [source] (a schema goes first: schema.table)."
            ) from None
        raise SourceError(
            f"The {sync.source.kind} source could not be read ({what}): check that it is "
            "reachable and its settings under [source]."
        ) from None
