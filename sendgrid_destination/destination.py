"""The dlt destination: ``sendgrid(...)`` and the sink dlt calls once per job file.

Glue only. ``sendgrid`` subclasses dlt's custom-destination factory (a spec class, a sink and
a factory subclass, the pattern dlt's own destinations follow): it fixes the sink, the spec,
parquet files and one load job at a time (the state file and SendGrid's rate limits want one
writer), and its defaults equal the spec's, because dlt drops arguments equal to the factory
defaults as "not explicit" and falls back to the spec's. The clock comes in through the
factory: there is no module-level state.

dlt hands the sink the path of each whole job file (``batch_size = 0``, the only value
accepted), which the sink streams in ``read_batch_rows`` Arrow batches. The first call of a
table in a load also takes the table's other job files still to come, and their own calls
find nothing left to do (``package_files``): the plan sees every row of the table's load,
a contact is sent at most once per load, and bodies pack across the files.

Several tables in one load (``sql_database`` loads a whole schema): each loads with its own
configuration (``SendGridConfiguration.for_table``), and one table never stops the others:

* a table without a mapping (``tables`` is set and does not name it) is skipped: nothing is
  read or sent, and the load's end logs one warning line naming every table skipped;
* a table whose own configuration is wrong (its mapping against its columns or the account,
  its options) is not loaded: its jobs finish without sending anything, an ERROR line and its
  summary say why, and the load goes on with the other tables. Once every job of the package
  has run, dlt calls ``complete_load``, which raises ``TablesNotLoadedError`` naming each such
  table, once per package: dlt then keeps the package pending with no job left, and the next
  load completes it without sending anything (so a ``pipeline.load()`` before
  ``pipeline.run()`` catches up in one run). Raising from a job instead would stop dlt from
  starting the other tables' jobs and keep the package, new data behind it, pending until the
  configuration is fixed or the package aborted.

Settings that hold for every table (the key, the host, limits) still fail the job, terminally,
as before: no table could load.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
from dlt.common.destination import TLoaderFileFormat
from dlt.common.pipeline import LoadInfo
from dlt.common.runtime import signals
from dlt.common.schema import TTableSchema
from dlt.common.storages.load_package import commit_load_package_state
from dlt.destinations.impl.destination.destination import DestinationClient
from dlt.destinations.impl.destination.factory import destination as _custom_destination

from sendgrid_destination.account import check_same_account, recorded_for
from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.api.endpoint import DEFAULT_BASE_URL
from sendgrid_destination.clock import Clock, SystemClock
from sendgrid_destination.config import (
    BATCHES_REFUSED,
    SendGridConfiguration,
    is_remote,
    unknown_variables,
)
from sendgrid_destination.contact_sync import ContactSync
from sendgrid_destination.dispositions import refuse_variants, table_intent
from sendgrid_destination.dry_run import (
    PlanningClient,
    planning_state,
    release_planning_state,
    save_plan,
)
from sendgrid_destination.errors import (
    ConfigurationError,
    RejectsThresholdError,
    SendGridError,
    SendGridTransientError,
    StoppedError,
    TablesNotLoadedError,
)
from sendgrid_destination.mapping import FieldMapping, parse_mapping
from sendgrid_destination.package_files import file_key, table_files
from sendgrid_destination.progress import DltProgress, NoProgress, Observers, SyncObserver
from sendgrid_destination.redaction import redact_url_secrets
from sendgrid_destination.remote_state import OpenState, fetch_copy, open_state
from sendgrid_destination.source_rows import SourceRows
from sendgrid_destination.state import StateStore
from sendgrid_destination.summary import SUMMARY_LOG, RunSummary
from sendgrid_destination.tables_to_come import keys_to_come
from sendgrid_destination.tally import Tally, settle_refusals

logger = logging.getLogger("sendgrid_destination")

Sink = Callable[..., None]


class _SignalAwareClock(SystemClock):
    """The wall clock, whose sleeps (backoff, rate limits, job polls) end early when a signal
    asks dlt to stop, so that stopping takes at most one request attempt."""

    def sleep(self, seconds: float) -> None:
        if seconds > 0 and not signals.was_signal_received():
            signals.sleep(seconds)


def sink_with(clock: Clock) -> Sink:
    """The sink dlt calls once per job file (``batch_size = 0``) or per RecordBatch; every
    wait of its loads goes through ``clock`` (tests pass a FakeClock, so rate-limit and
    backoff waits are asserted, not slept)."""

    def load_contacts(
        items: str | pa.RecordBatch,
        table: TTableSchema,
        config: SendGridConfiguration = None,  # type: ignore[assignment]
    ) -> None:
        run_sink(items, table, config, clock)

    return load_contacts


def run_sink(
    items: str | pa.RecordBatch, table: TTableSchema, config: SendGridConfiguration, clock: Clock
) -> None:
    stream = str(table["name"])
    state = _destination_state()
    if _nothing_to_do(items, stream, config, state):
        if config.plan:
            release_planning_state()
        return
    _warn_unknown_variables(state)
    config.validate()
    stop = signals.was_signal_received  # dlt's flag for SIGTERM and Ctrl-C
    # A local file, or a remote one (an fsspec URL): locked, downloaded, uploaded as it goes.
    with _state(config) as opened, client_for(config, clock, stop) as client:
        store = opened.store
        _claim_account(store, config)
        observer = Observers([opened.uploads, DltProgress()])
        summary, settings = _sync_table(
            items, table, config, store, client, clock, state, stop, observer
        )
        store.prune_runs(stream, config.keep_runs)
        if summary.error:
            return
        if config.plan:  # what fail_on_rejects would make of the load: the plan reports it
            summary.over_rejects_limit = _refused_over_limit(settings, summary)
            summary.jobs.clear()  # a plan's jobs are its own stand-ins: they say nothing
            summary.removal_jobs.clear()
            _publish_summary(summary)
        logger.info("SendGrid sync summary\n%s", summary.format(), extra={SUMMARY_LOG: True})
        if config.plan:
            if not is_remote(config.state_path):  # status shows a local file's plans only
                save_plan(config.resolved_state_path(), summary)
            return
        if config.state_backup and not is_remote(config.state_path):
            store.back_up()  # the table loaded: keep a copy to restore
        _check_rejects(store, settings, summary, state)


def _nothing_to_do(
    items: str | pa.RecordBatch, stream: str, config: SendGridConfiguration, state: dict[str, Any]
) -> bool:
    """This call has nothing to load: its table failed (said then, and at the load's end),
    its file was loaded with an earlier file of the table (``package_files``), or its table
    has no mapping (skipped: one warning at the load's end names them all)."""
    if TABLE_FAILED_PREFIX + stream in state:
        return True
    if isinstance(items, str) and TAKEN_PREFIX + file_key(items) in state:
        return True
    if not config.maps(stream):
        state[SKIPPED_PREFIX + stream] = True
        return True
    return False


@contextmanager
def _state(config: SendGridConfiguration) -> Iterator[OpenState]:
    """The state a load records into (local or remote, ``open_state``); for a plan, a private
    copy of it (``dry_run.planning_state``)."""
    if not config.plan:
        with open_state(config) as opened:
            yield opened
        return
    with contextlib.ExitStack() as stack:
        path: Path | None = config.resolved_state_path()
        if is_remote(config.state_path):
            path = stack.enter_context(fetch_copy(str(config.state_path)))
        copy = stack.enter_context(planning_state(path))
        yield OpenState(stack.enter_context(StateStore.open(copy)), NoProgress())


def _sync_table(
    items: str | pa.RecordBatch,
    table: TTableSchema,
    config: SendGridConfiguration,
    store: StateStore,
    client: SendGridClient,
    clock: Clock,
    state: dict[str, Any],
    stop: Callable[[], bool],
    observer: SyncObserver,
) -> tuple[RunSummary, SendGridConfiguration]:
    """Load this call's rows of ``stream``; its summary (kept and published) and settings.
    A configuration error of the table is settled here, in its summary (module doc)."""
    stream = str(table["name"])
    run_id = f"{_load_id()}:{stream}"
    store.start_run(run_id, stream)
    tally, settings = Tally(run_id, stream), config
    # Every job file of the table still to come, loaded as one (see package_files). Its
    # counters are kept under the first file's key: dlt's next attempt after a failure may
    # be another file's call, which loads the same files (none was taken) in the same order.
    files = table_files(stream, items) if isinstance(items, str) else []
    key = file_key(files[0]) if files else "batches"
    failure: BaseException | None = None
    try:
        settings, mapping = _table_setup(config, stream)
        # dlt's write disposition and hints, and mode: refused here if not to be honoured.
        together = [f for f in files if f != items]
        intent = table_intent(settings, table, items, _package_state(), together)
        refuse_variants(stream, table, mapping.columns, files)
        intent.check_source(stream, lambda: store.removals.tracked_before(run_id, stream))
        # After the checks that need no request.
        _check_account(store, client, state, plan=settings.plan)
        sync = ContactSync(
            settings,
            mapping,
            client,
            store,
            clock,
            run_id,
            stream,
            stop,
            observer,
            intent,
            settings.plan,
            lambda cur: keys_to_come(config, stream, cur),
        )
        tally = sync.tally
        if store.adopt_killed_attempt(run_id, key):
            tally.note(
                "an earlier attempt of this load was killed before it saved its counts: what "
                "it sent is counted from the state"
            )
        sync.run(_rows(items, files, [*mapping.columns, *intent.extra_columns], settings))
        _taken(state, together)
    except ConfigurationError as exc:  # found before the table's first upsert
        tally.plan.error = _table_failed(state, stream, exc)
    except BaseException as exc:
        failure = exc
        raise
    finally:
        summary = _save_attempt(store, tally, key, plan=settings.plan, failure=failure)
        _publish_summary(summary)
    return summary, settings


def _table_setup(
    config: SendGridConfiguration, stream: str
) -> tuple[SendGridConfiguration, FieldMapping]:
    """The table's configuration and parsed mapping; raises ConfigurationError."""
    settings = config.for_table(stream)
    if settings is None:  # run_sink loads only the tables config.maps()
        raise ConfigurationError(f"Table {stream!r} has no mapping.")
    return settings, parse_mapping(settings.mapping)


TABLE_FAILED_PREFIX = "sendgrid_table_failed."
TAKEN_PREFIX = "sendgrid_file_taken."
REJECTS_PREFIX = "sendgrid_rejects_over_limit."
_VARIABLES_CHECKED_KEY = "sendgrid_variables_checked"
_ACCOUNT_CHECKED = "sendgrid_account_checked"
SKIPPED_PREFIX = "sendgrid_skipped."
_SETTLED_KEY = "sendgrid_tables_settled"


def _warn_unknown_variables(state: dict[str, Any]) -> None:
    """Once per load package: name the DESTINATION__SENDGRID__ variables that set nothing."""
    if state.get(_VARIABLES_CHECKED_KEY):
        return
    state[_VARIABLES_CHECKED_KEY] = True
    unknown = unknown_variables(os.environ)
    if unknown:
        logger.warning(
            "SendGrid: environment variable(s) naming no setting, ignored: %s", "; ".join(unknown)
        )


def _taken(state: dict[str, Any], files: Sequence[str]) -> None:
    """``files`` were loaded with this call's: their own calls have nothing left to do. Kept
    in the package's state at once: were the process to stop before their calls, the resumed
    load must not load one of them on its own (its rows lost to a later file would win)."""
    if files:
        state.update({TAKEN_PREFIX + file_key(f): True for f in files})
        _commit_destination_state()


def _table_failed(state: dict[str, Any], stream: str, exc: ConfigurationError) -> str:
    """Say once that ``stream`` is not loaded and why; remember it for the load's end."""
    message = f"Table {stream!r}: {exc.message}"
    state[TABLE_FAILED_PREFIX + stream] = message
    logger.error("SendGrid: not loading table %r (the other tables go on): %s", stream, exc.message)
    return message


def settle_tables(state: dict[str, Any]) -> None:
    """At the end of a load package: one warning line naming the tables skipped for want of a
    mapping, then ``TablesNotLoadedError`` for the tables whose configuration is wrong, or
    ``RejectsThresholdError`` for those that refused more rows than ``fail_on_rejects``
    allows, once per package (recorded in the package's state before raising: the next load
    of the pending package must complete it, not fail again)."""
    if state.get(_SETTLED_KEY):
        return
    skipped = sorted(k[len(SKIPPED_PREFIX) :] for k in state if k.startswith(SKIPPED_PREFIX))
    failed = [v for k, v in sorted(state.items()) if k.startswith(TABLE_FAILED_PREFIX)]
    refused = [v for k, v in sorted(state.items()) if k.startswith(REJECTS_PREFIX)]
    if skipped:
        logger.warning(
            "SendGrid: skipped table(s) without a mapping under [destination.sendgrid.tables]: "
            "%s (nothing of them was sent)",
            ", ".join(skipped),
        )
    if not (skipped or failed or refused):
        return
    state[_SETTLED_KEY] = True
    _commit_destination_state()
    if failed:
        raise TablesNotLoadedError(
            f"{len(failed)} table(s) not loaded because of their configuration (every other "
            f"table of this load was loaded). {' '.join(failed)} Fix the table's settings "
            "(under [destination.sendgrid.tables.<table>] for one table). dlt keeps this load "
            "package pending with no job left: the next load completes it without sending "
            "anything (in your own pipeline, call pipeline.load() before pipeline.run(), so "
            "that the same run also extracts new data; `sendgrid-destination run` does). These "
            "tables' rows are sent once a run extracts them again (an incremental resource's "
            "cursor has moved past them: run it once with refresh='drop_resources'; "
            "`sendgrid-destination run` does so by itself)."
        )
    if refused:
        raise RejectsThresholdError(
            f"{' '.join(refused)} Every table of this load was loaded; the next run completes "
            "this load without sending these rows again."
        )


def _commit_destination_state() -> None:
    # Outside a dlt load (direct calls in tests) there is nothing to commit.
    with contextlib.suppress(Exception):
        commit_load_package_state()


def _claim_account(store: StateStore, config: SendGridConfiguration) -> None:
    """Before any request: the state file is this account's (or becomes it)."""
    recorded = store.account()
    check_same_account(recorded, config.account, store.path)
    current = recorded_for(config.account, str(config.api_key))
    if recorded.get("key_digest") not in (None, current["key_digest"]):
        logger.info("the API key changed since the last run on this state file")
    if recorded != current:
        store.set_account(current)


def _check_account(
    store: StateStore, client: SendGridClient, state: dict[str, Any], *, plan: bool
) -> None:
    """Once per load: an account that holds no contact while the state records contacts it
    accepted was emptied (in the UI, or an emulator restarted), or is not the state's. The
    state would skip every unchanged contact: say so, and how to send them again. (Also the
    load's first request: a revoked key stops a load that has nothing to send, and a plan,
    which writes nothing, still finds a wrong key.)"""
    accepted = store.has_accepted()
    if state.get(_ACCOUNT_CHECKED) or not (accepted or plan):
        return
    emptied = client.contact_count() == 0 and accepted
    state[_ACCOUNT_CHECKED] = True  # after the read: dlt's retry of a failed one checks again
    if emptied:
        logger.warning(
            "SendGrid holds no contacts, yet the state file %s records contacts it accepted: "
            "the account was emptied since (or the state is another account's). Contacts "
            "whose rows did not change are not sent again; to send everything again, point "
            "state_path at a new file.",
            store.path,
        )


def _rows(
    items: str | pa.RecordBatch,
    files: Sequence[str],
    columns: list[str],
    config: SendGridConfiguration,
) -> SourceRows:
    """The rows of this call: its job files (``files``), whole, streamed one after another."""
    if not isinstance(items, str):  # batch_size > 0: validate() refuses it first
        raise ConfigurationError(BATCHES_REFUSED)
    return SourceRows.from_files(files, columns, config.read_batch_rows)


def client_for(
    config: SendGridConfiguration,
    clock: Clock | None = None,
    stop: Callable[[], bool] | None = None,
) -> SendGridClient:
    """The API client a load (or a dry run) uses, from the settings; a plan's only reads."""
    client = PlanningClient if config.plan else SendGridClient
    return client(
        str(config.api_key),
        base_url=config.base_url,
        on_behalf_of=config.on_behalf_of,
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        max_attempts=config.max_attempts,
        max_backoff_seconds=config.max_backoff_seconds,
        clock=clock,
        stop=stop,
    )


def _load_id() -> str:
    try:
        return str(dlt.current.load_package_state()["load_id"])
    except Exception:  # outside a dlt load (direct calls in tests)
        return "adhoc"


def _save_attempt(
    store: StateStore,
    tally: Tally,
    file_key: str,
    *,
    plan: bool = False,
    failure: BaseException | None = None,
) -> RunSummary:
    """Record this attempt at one file; return the run's summary over all its files, each row
    counted once however many times dlt ran its file (see ``Tally``). ``plan``: a dry run
    (recorded in the state's private copy only); ``failure``: what stopped this attempt."""
    run = tally.plan
    files = store.record_file_attempt(
        run.run_id, file_key, tally.plan.as_dict(), tally.sent.as_dict()
    )
    total = RunSummary(run.run_id, run.stream, plan=plan)
    attempts = []
    for rows, sent in files:
        total.merge(RunSummary.from_dict(rows))
        attempts += [RunSummary.from_dict(a) for a in sent.get("attempts", [])]
    settle_refusals(total, attempts, store.refusals(run.run_id))
    total.failed = failure_text(failure) if failure is not None else None
    store.finish_run(run.run_id, total.as_dict())
    return total


def failure_text(failure: BaseException) -> str:
    """What stopped an attempt, for its summary: our messages (they carry no value), else
    only the error's type (another library's message may quote a row)."""
    if isinstance(failure, StoppedError | KeyboardInterrupt):
        return "stopped by a signal; every request SendGrid accepted is recorded"
    kind = "dlt retries it" if isinstance(failure, SendGridTransientError) else "terminal"
    if isinstance(failure, SendGridError):
        return f"{type(failure).__name__}, {kind}: {failure}"
    return f"{type(failure).__name__}; the log has the details"


def _check_rejects(
    store: StateStore, config: SendGridConfiguration, summary: RunSummary, state: dict[str, Any]
) -> None:
    """``fail_on_rejects``: fail the load once the good rows are sent, every table's (the
    failure is raised at the package's end, ``settle_tables``), and only once: dlt keeps the
    failed package pending, and its next attempt (which sends nothing again) completes it."""
    refused = _refused_over_limit(config, summary)
    if not refused or not store.report_once(summary.run_id, "rejects"):
        return
    state[REJECTS_PREFIX + summary.stream] = (
        f"{refused} of the {summary.rows_read} rows of table {summary.stream!r} were refused "
        f"(fail_on_rejects = {config.fail_on_rejects:g}); the other rows were sent. See why with "
        f"`sendgrid-destination rejects --run {shlex.quote(summary.run_id)} "
        f"--state {shlex.quote(redact_url_secrets(config.state_location()))}`."
    )
    logger.error("SendGrid: %s", state[REJECTS_PREFIX + summary.stream])


def _refused_over_limit(config: SendGridConfiguration, summary: RunSummary) -> int:
    """The rows refused, when more than ``fail_on_rejects`` allows (a count, or a fraction of
    the rows read below 1); else 0."""
    limit = config.fail_on_rejects
    refused = summary.rejected + summary.rejected_by_api + summary.failed_in_jobs
    if limit is None or not refused:
        return 0
    over = refused > limit if limit >= 1 or limit == 0 else refused > limit * summary.rows_read
    return refused if over else 0


SUMMARY_KEY_PREFIX = "sendgrid_summary."


def _publish_summary(summary: RunSummary) -> None:
    """Keep the summary in the load package's destination state, which dlt persists with the
    package; ``run_summaries(pipeline, load_info)`` reads it back."""
    _destination_state()[SUMMARY_KEY_PREFIX + summary.stream] = summary.as_dict()


def _package_state() -> dict[str, Any] | None:
    """The load package's state (refresh: dropped and truncated tables), None outside one."""
    try:
        return dict(dlt.current.load_package_state()["state"])
    except Exception:
        return None


def _destination_state() -> dict[str, Any]:
    """The load package's private destination state (a throwaway dict outside a dlt load)."""
    try:
        return dlt.current.destination_state()
    except Exception:
        return {}


def run_summaries(pipeline: dlt.Pipeline, load_info: LoadInfo) -> list[RunSummary]:
    """The SendGrid summaries of the packages a ``pipeline.run`` loaded."""
    found = []
    for load_id in load_info.loads_ids:
        state = pipeline.get_load_package_state(load_id).get("destination_state") or {}
        found += [
            RunSummary.from_dict(v) for k, v in state.items() if k.startswith(SUMMARY_KEY_PREFIX)
        ]
    return found


class sendgrid(_custom_destination):
    """``dlt.pipeline(destination=sendgrid(mapping={...}))``; every argument may instead come
    from ``[destination.sendgrid]`` config, secrets or environment variables. ``clock`` is
    for tests: every wait of the loads goes through it."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        mapping: dict[str, Any] | None = None,
        list_ids: list[str] | None = None,
        tables: dict[str, Any] | None = None,
        destination_name: str = "sendgrid",
        batch_size: int = 0,
        loader_file_format: TLoaderFileFormat = "parquet",
        clock: Clock | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            destination_callable=sink_with(clock or _SignalAwareClock()),
            destination_name=destination_name,
            spec=SendGridConfiguration,
            api_key=api_key,
            base_url=base_url,
            mapping=mapping,
            list_ids=list_ids,
            tables=tables,
            batch_size=batch_size,
            loader_file_format=loader_file_format,
            max_parallel_load_jobs=1,
            loader_parallelism_strategy="sequential",
            **kwargs,
        )

    @property
    def client_class(self) -> type[DestinationClient]:
        return _SendGridSinkClient

    def __repr__(self) -> str:
        # dlt's repr lists the explicit config params, the API key among them.
        params = {k: ("***" if k == "api_key" and v else v) for k, v in self.config_params.items()}
        return f"sendgrid({', '.join(f'{k}={v!r}' for k, v in params.items())})"


class _SendGridSinkClient(DestinationClient):
    """dlt's client for custom destinations, plus the end of a load package (module doc)."""

    def complete_load(self, load_id: str) -> None:
        settle_tables(_destination_state())
