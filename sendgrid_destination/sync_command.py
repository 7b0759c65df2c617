"""``sendgrid-destination run SYNC.toml``: the command around ``run_sync`` and ``plan_sync``.

Exit codes: ``EXIT_OK`` (0) the run (or plan) succeeded; ``EXIT_FAILED`` (1) the run failed,
``fail_on_rejects`` included, or the plan found that the load would fail (deletions over the
limits, rows refused over ``fail_on_rejects``); ``EXIT_CONFIG`` (2) a usage or configuration
error, in the sync file or the settings, found before the run or by the load (a mapping naming
a missing column stops the load terminally; that is still a configuration error). With
``--json`` stdout carries exactly one JSON object, whatever happened; everything else (logs,
progress, the error) goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from collections.abc import Collection
from typing import Any

from dlt.pipeline.exceptions import PipelineStepFailed

from sendgrid_destination.errors import (
    ConfigurationError,
    SendGridError,
    StoppedError,
    SyncFileError,
    ours_in,
)
from sendgrid_destination.redaction import redact
from sendgrid_destination.summary import SUMMARY_LOG
from sendgrid_destination.sync_file import SyncFile, load_sync_file
from sendgrid_destination.sync_runner import SyncReport

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
# Log lines of the progress counters, when stderr is not a terminal: often enough to see a
# long run move, rarely enough not to flood an orchestrator's task log.
LOG_PROGRESS_SECONDS = 10.0

logger = logging.getLogger("sendgrid_destination.cli")


def run(args: argparse.Namespace) -> int:
    _log_to_stderr()
    report: SyncReport | None = None
    failure: BaseException | None = None
    sync: SyncFile | None = None
    name = str(args.sync_file)  # the sync's name once its file is read
    try:
        sync = load_sync_file(args.sync_file)
        name = sync.name
        report = _plan(args, sync) if args.plan else _run(args, sync)
        failure = report.failure
    except (SendGridError, PipelineStepFailed) as exc:
        failure = exc
    except Exception as exc:  # anything else still ends in one line, and one JSON object
        logger.debug("the run failed", exc_info=True)
        failure = exc
    if failure is not None and sync is not None and sync.source.cursor:
        failure = _cursor_problem(failure, sync.source.cursor) or failure
    if failure is not None:
        failure = _stopped_by_signal(failure) or failure
    code = _exit_code(failure)
    stops = _stops(report) if failure is None else None
    if stops:  # a plan that found the load would fail: fail like the load, for CI gates
        print(f"error: {stops}", file=sys.stderr)
        assert report is not None
        report.error, code = stops, EXIT_FAILED
    if failure is not None:
        message = _message(failure, _names(sync))
        print(f"error: {message}", file=sys.stderr)
        report = report or SyncReport(name, "plan" if args.plan else "run", "")
        report.error = message
    assert report is not None
    _print(report, as_json=args.json)
    return code


def _run(args: argparse.Namespace, sync: SyncFile) -> SyncReport:
    from sendgrid_destination.sync_runner import run_sync

    return run_sync(
        sync,
        full_refresh=args.full_refresh,
        progress=_progress(args.progress),
        pipelines_dir=args.pipelines_dir,
    )


def _plan(args: argparse.Namespace, sync: SyncFile) -> SyncReport:
    from sendgrid_destination.sync_runner import plan_sync

    return plan_sync(sync, pipelines_dir=args.pipelines_dir, full_refresh=args.full_refresh)


def _progress(choice: str) -> Any:
    """dlt's collector for the pipeline: a bar on a terminal, log lines otherwise."""
    from dlt.common.runtime.collector import LogCollector, TqdmCollector

    if choice == "none":
        return None
    if choice == "bar" or (choice == "auto" and sys.stderr.isatty()):
        return TqdmCollector(file=sys.stderr)
    return LogCollector(
        log_period=LOG_PROGRESS_SECONDS,
        logger=logging.getLogger("sendgrid_destination.progress"),
        dump_system_stats=False,
    )


def _stops(report: SyncReport | None) -> str | None:
    """A plan's finding that the load would fail (deletions over the limits, rows refused
    over ``fail_on_rejects``), as one message; else None."""
    if report is None or report.mode != "plan":
        return None
    found = [why for s in report.summaries if (why := s.stops())]
    return f"The load would fail: {'; '.join(found)}." if found else None


def _exit_code(failure: BaseException | None) -> int:
    if failure is None:
        return EXIT_OK
    if isinstance(_root(failure), ConfigurationError):
        return EXIT_CONFIG
    return EXIT_FAILED


def _root(failure: BaseException) -> BaseException:
    """The first of our errors in the chain (dlt wraps what the load raised), else the last."""
    ours = ours_in(failure)
    return ours if ours is not None else _chain(failure)[-1]


def _chain(failure: BaseException) -> list[BaseException]:
    seen = [failure]
    while (cause := seen[-1].__cause__ or seen[-1].__context__) is not None and cause not in seen:
        seen.append(cause)
    return seen


def _cursor_problem(failure: BaseException, cursor: str) -> SyncFileError | None:
    """dlt's failure over the sync file's cursor, said as a sync file error; else None. dlt's
    own chain ends in a bare ``KeyError`` of the column (every kind of source), or names the
    column only where redaction hides it."""
    from dlt.extract.incremental.exceptions import (
        IncrementalCursorPathHasValueNone,
        IncrementalCursorPathMissing,
    )

    for exc in _chain(failure):
        if isinstance(exc, IncrementalCursorPathHasValueNone):
            return SyncFileError(
                f"source.cursor = {cursor!r} is empty (null) in some rows, which an incremental "
                "load cannot place: choose a column set in every row (with a `query`, "
                "coalesce(updated_at, created_at) gives one, say)."
            )
        if isinstance(exc, IncrementalCursorPathMissing) or (
            isinstance(exc, KeyError) and exc.args == (cursor,)
        ):
            return SyncFileError(
                f"source.cursor = {cursor!r} is not a column of the source{_columns(exc)}: "
                "name one of its columns, spelled as the source spells it (with a `query`, a "
                "column it selects)."
            )
    return None


def _stopped_by_signal(failure: BaseException) -> StoppedError | None:
    """dlt's own stop on a signal (between steps or jobs, before our load saw it), said as
    ours; else None. dlt's message names the signal by a number, which redaction hides."""
    from dlt.common.exceptions import SignalReceivedException

    for exc in _chain(failure):
        if isinstance(exc, SignalReceivedException):
            try:
                name = signal.Signals(exc.signal_code).name
            except ValueError:
                name = f"signal {exc.signal_code}"
            return StoppedError(
                f"The run was stopped by {name}: no new request was sent, every request "
                "SendGrid accepted is recorded, and the next run goes on from there."
            )
    return None


def _columns(exc: BaseException) -> str:
    """`` (its columns: ...)`` when dlt's error holds the data it read (names only)."""
    schema = getattr(getattr(exc, "item", None), "schema", None)
    names = getattr(schema, "names", None)
    return f" (its columns: {', '.join(names)})" if names else ""


def _message(failure: BaseException, names: Collection[str] = ()) -> str:
    root = _root(failure)
    if isinstance(root, SendGridError):
        return str(root)
    # Not ours (the source, dlt): its type and message, redacted (a database quotes the
    # value it refused, a URL may carry a password); our messages never carry values. The
    # source's column names (``names``) are not values: kept, so the message says which.
    return f"{type(root).__name__}: {redact(_said_by_dlt(failure, root), names)}"


def _names(sync: SyncFile | None) -> frozenset[str]:
    """The column names a failure's message may show: the cursor and the columns the sync
    file maps (for every table), as the file writes them."""
    if sync is None:
        return frozenset()
    from sendgrid_destination.mapping import parse_mapping

    names = {sync.source.cursor} if sync.source.cursor else set()
    tables = sync.settings.get("tables")
    per_table = list(tables.values()) if isinstance(tables, dict) else []
    raws = [sync.settings.get("mapping")]
    raws += [t.get("mapping") for t in per_table if isinstance(t, dict)]
    for raw in raws:
        try:
            names.update(parse_mapping(raw).columns)
        except (SendGridError, AttributeError, TypeError, ValueError):
            continue  # a mapping that does not parse names nothing
    return frozenset(names)


def _said_by_dlt(failure: BaseException, root: BaseException) -> str:
    """The root's message, or dlt's own of it where dlt wrapped it once with the column it
    was converting (``Conversion to arrow failed for field `x` ...``), which the root lacks."""
    from dlt.common.exceptions import DltException
    from dlt.extract.exceptions import ResourceExtractionError

    chain = _chain(failure)
    wrapper = chain[-2] if len(chain) > 1 and chain[-1] is root else None
    plain = (PipelineStepFailed, ResourceExtractionError)
    if isinstance(wrapper, DltException) and not isinstance(wrapper, plain):
        return str(wrapper)
    return str(root)


def _print(report: SyncReport, *, as_json: bool) -> None:
    if as_json:
        json.dump(report.as_json(), sys.stdout, default=str)
        sys.stdout.write("\n")
        return
    for summary in report.summaries:
        if report.resumed(summary):
            print("(a load a failed run left pending, completed first: its summary covers both)")
        print(summary.format())
    if report.error is None and report.mode == "run" and not report.summaries:
        print("Nothing was loaded: the source produced no rows.")
    if report.state:
        print(f"state: {report.state}")


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is when a record is emitted; not the load's summary,
    which the command prints on stdout (``SUMMARY_LOG``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, SUMMARY_LOG, False) and super().filter(record)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


class _OursPrintedOnce(logging.Filter):
    """dlt logs a failed load job twice, with its traceback; an error of ours is said in one
    line by the command (``error: ...``), so those records are dropped. Any other failure's
    (a bug's) stay, traceback and all."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.ERROR or record.filename != "load.py":
            return True
        failure = record.exc_info[1] if record.exc_info else None
        if failure is not None:
            return ours_in(failure) is None
        # The job's failure as text (a traceback): ours if the exception it ends with is.
        lines = record.getMessage().rstrip().splitlines()
        return not (lines and lines[-1].startswith(f"{SendGridError.__module__}."))


def _log_to_stderr() -> None:
    dlt_logger = logging.getLogger("dlt")
    if not any(isinstance(f, _OursPrintedOnce) for f in dlt_logger.filters):
        dlt_logger.addFilter(_OursPrintedOnce())
    root = logging.getLogger("sendgrid_destination")
    if not any(isinstance(h, _StderrHandler) for h in root.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(logging.INFO)
