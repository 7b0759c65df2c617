"""The dlt destination: ``sendgrid(...)`` and the sink dlt calls once per job file.

Glue only. ``sendgrid`` subclasses dlt's custom-destination factory (a spec class, a sink and
a factory subclass, the pattern dlt's own destinations follow): it fixes the sink, the spec,
parquet files and one load job at a time (the state file and SendGrid's rate limits want one
writer), and its defaults equal the spec's, because dlt drops arguments equal to the factory
defaults as "not explicit" and falls back to the spec's. The clock comes in through the
factory: there is no module-level state.

With the default ``batch_size = 0`` dlt hands the sink the path of the whole job file, which the
sink streams in ``read_batch_rows`` Arrow batches, so bodies pack across the whole file. With
``batch_size > 0`` the sink receives RecordBatches and each call packs its own batch.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
from dlt.common.destination import TLoaderFileFormat
from dlt.common.pipeline import LoadInfo
from dlt.common.runtime import signals
from dlt.common.schema import TTableSchema
from dlt.destinations.impl.destination.factory import destination as _custom_destination

from sendgrid_destination.account import adopt_legacy_state, check_same_account, recorded_for
from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.api.endpoint import DEFAULT_BASE_URL
from sendgrid_destination.clock import Clock, SystemClock
from sendgrid_destination.config import SendGridConfiguration
from sendgrid_destination.contact_sync import ContactSync
from sendgrid_destination.dispositions import table_intent
from sendgrid_destination.dry_run import PlanningClient, planning_state, save_plan
from sendgrid_destination.errors import RejectsThresholdError
from sendgrid_destination.mapping import parse_mapping
from sendgrid_destination.source_rows import SourceRows
from sendgrid_destination.state import StateStore
from sendgrid_destination.summary import RunSummary
from sendgrid_destination.tally import Tally

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
    config.validate()
    mapping = parse_mapping(config.mapping)
    stream = str(table["name"])
    # dlt's write disposition and hints, and mode: refused here if they cannot be honoured.
    intent = table_intent(config, table, items, _package_state())
    run_id = f"{_load_id()}:{stream}"
    stop = signals.was_signal_received  # dlt's flag for SIGTERM and Ctrl-C
    with (
        _state_file(config) as state_path,
        StateStore.open(state_path) as store,
        _client(config, clock, stop) as client,
    ):
        _claim_account(store, config)
        intent.check_source(stream, lambda: store.removals.tracked_before(run_id, stream))
        sync = ContactSync(
            config, mapping, client, store, clock, run_id, stream, stop, intent, config.plan
        )
        columns = [*mapping.columns, *intent.extra_columns]
        rows, file_key, loaded = _rows(items, columns, config, stream)
        try:
            sync.run(rows)
            loaded()
            if config.state_backup and not config.plan:
                store.back_up()
        finally:
            summary = _save_attempt(store, sync.tally, file_key, plan=config.plan)
            _publish_summary(summary)
            store.prune_runs(stream, config.keep_runs)
        logger.info("SendGrid sync summary\n%s", summary.format())
        if config.plan:
            save_plan(config.resolved_state_path(), summary)
        else:
            _check_rejects(store, config, summary)


@contextmanager
def _state_file(config: SendGridConfiguration) -> Iterator[Path]:
    """The state file a load records into; for a plan, a private copy of it."""
    state_path = config.resolved_state_path()
    if config.plan:
        with planning_state(state_path) as copy:
            yield copy
        return
    if legacy := config.legacy_state_path():
        adopt_legacy_state(state_path, legacy)
    yield state_path


def _claim_account(store: StateStore, config: SendGridConfiguration) -> None:
    """Before any request: the state file is this account's (or becomes it)."""
    recorded = store.account()
    check_same_account(recorded, config.account, store.path)
    current = recorded_for(config.account, str(config.api_key))
    if recorded.get("key_digest") not in (None, current["key_digest"]):
        logger.info("the API key changed since the last run on this state file")
    if recorded != current:
        store.set_account(current)


ROWS_KEY_PREFIX = "sendgrid_rows."


def _rows(
    items: str | pa.RecordBatch, columns: list[str], config: SendGridConfiguration, stream: str
) -> tuple[SourceRows, str, Callable[[], None]]:
    """The rows of this call, the key of their file across dlt's retries, and what to do once
    they are loaded."""
    if isinstance(items, str):
        # dlt names a job file <table>.<file_id>.<retry count>.<format>: a retry is the same file.
        file_key = os.path.basename(items).rsplit(".", 2)[0]
        return SourceRows.from_file(items, columns, config.read_batch_rows), file_key, _nothing
    # RecordBatch mode: row numbers continue across the calls of one load package, through a
    # counter in the package's destination state, which dlt commits after each successful
    # call (so a resumed package numbers its rows as the first attempt did).
    state = _destination_state()
    key = ROWS_KEY_PREFIX + stream
    first_row = int(state.get(key, 0))

    def advance() -> None:
        state[key] = first_row + items.num_rows

    return SourceRows.from_batch(items, first_row), f"batch:{first_row}", advance


def _nothing() -> None:
    pass


def _client(
    config: SendGridConfiguration, clock: Clock, stop: Callable[[], bool]
) -> SendGridClient:
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
    store: StateStore, tally: Tally, file_key: str, *, plan: bool = False
) -> RunSummary:
    """Record this attempt at one file; return the run's summary over all its files, each row
    counted once however many times dlt ran its file (see ``Tally``). ``plan``: a dry run
    (recorded in the state's private copy only)."""
    run = tally.plan
    files = store.record_file_attempt(
        run.run_id, file_key, tally.plan.as_dict(), tally.sent.as_dict()
    )
    total = RunSummary(run.run_id, run.stream, plan=plan)
    for rows, sent in files:
        total.merge(RunSummary.from_dict(rows))
        for attempt in sent.get("attempts", []):
            total.merge(RunSummary.from_dict(attempt))
    store.finish_run(run.run_id, total.as_dict())
    return total


def _check_rejects(store: StateStore, config: SendGridConfiguration, summary: RunSummary) -> None:
    """``fail_on_rejects``: fail the run once the good rows are sent, and only once: dlt keeps
    the failed package pending, and its next attempt (which sends nothing again) completes it."""
    limit = config.fail_on_rejects
    refused = summary.rejected + summary.rejected_by_api + summary.failed_in_jobs
    if limit is None or not refused:
        return
    over = refused > limit if limit >= 1 or limit == 0 else refused > limit * summary.rows_read
    if not over or not store.report_once(summary.run_id, "rejects"):
        return
    raise RejectsThresholdError(
        f"{refused} of the {summary.rows_read} rows of table {summary.stream!r} were refused "
        f"(fail_on_rejects = {limit:g}); the other rows were sent. See why with "
        f"`sendgrid-destination rejects --run '{summary.run_id}'`. The next run completes this "
        "load without sending these rows again."
    )


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
            batch_size=batch_size,
            loader_file_format=loader_file_format,
            max_parallel_load_jobs=1,
            loader_parallelism_strategy="sequential",
            **kwargs,
        )

    def __repr__(self) -> str:
        # dlt's repr lists the explicit config params, the API key among them.
        params = {k: ("***" if k == "api_key" and v else v) for k, v in self.config_params.items()}
        return f"sendgrid({', '.join(f'{k}={v!r}' for k, v in params.items())})"
