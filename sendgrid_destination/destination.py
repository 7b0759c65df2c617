"""The dlt destination: ``sendgrid(...)`` and the sink dlt calls once per job file.

Glue only. ``sendgrid`` subclasses dlt's custom-destination factory (pattern C of
notes/dlt-destination.md): it fixes the sink, the spec, parquet files and one load job at a
time (the state file and SendGrid's rate limits want one writer), and its defaults equal the
spec's, because dlt drops arguments equal to the factory defaults as "not explicit".

With the default ``batch_size = 0`` dlt hands the sink the path of the whole job file, which the
sink streams in ``read_batch_rows`` Arrow batches, so bodies pack across the whole file. With
``batch_size > 0`` the sink receives RecordBatches and each call packs its own batch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dlt
import pyarrow as pa
from dlt.common.destination import TLoaderFileFormat
from dlt.common.pipeline import LoadInfo
from dlt.common.schema import TTableSchema
from dlt.destinations.impl.destination.factory import destination as _custom_destination

from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.api.endpoint import DEFAULT_BASE_URL
from sendgrid_destination.clock import Clock, SystemClock
from sendgrid_destination.config import SendGridConfiguration
from sendgrid_destination.loader import ContactLoader
from sendgrid_destination.mapping import parse_mapping
from sendgrid_destination.state import StateStore
from sendgrid_destination.summary import RunSummary

logger = logging.getLogger("sendgrid_destination")

_clock: Clock = SystemClock()


@contextmanager
def use_clock(clock: Clock) -> Iterator[None]:
    """Make every wait of loads inside the block go through ``clock`` (tests use a FakeClock
    so rate-limit and backoff waits are asserted, not slept)."""
    global _clock
    previous, _clock = _clock, clock
    try:
        yield
    finally:
        _clock = previous


def load_contacts(
    items: str | pa.RecordBatch,
    table: TTableSchema,
    config: SendGridConfiguration = None,  # type: ignore[assignment]
) -> None:
    """The sink: one call per job file (``batch_size = 0``) or per RecordBatch."""
    config.validate()
    mapping = parse_mapping(config.mapping)
    stream = str(table["name"])
    run_id = f"{_load_id()}:{stream}"
    with (
        StateStore.open(config.resolved_state_path()) as store,
        _client(config) as client,
    ):
        loader = ContactLoader(config, mapping, client, store, _clock, run_id, stream)
        try:
            if isinstance(items, str):
                loader.load_file(items, config.read_batch_rows)
            else:
                _load_record_batch(loader, items, stream)
        finally:
            summary = _save_summary(store, loader.summary)
            _publish_summary(summary)
    logger.info("SendGrid sync summary\n%s", summary.format())


ROWS_KEY_PREFIX = "sendgrid_rows."


def _load_record_batch(loader: ContactLoader, batch: pa.RecordBatch, stream: str) -> None:
    """RecordBatch mode: row numbers continue across the calls of one load package, through a
    counter in the package's destination state, which dlt commits after each successful call
    (so a resumed package numbers its rows as the first attempt did)."""
    state = _destination_state()
    first_row = int(state.get(ROWS_KEY_PREFIX + stream, 0))
    loader.load_batch(batch, first_row)
    state[ROWS_KEY_PREFIX + stream] = first_row + batch.num_rows


def _client(config: SendGridConfiguration) -> SendGridClient:
    return SendGridClient(
        str(config.api_key),
        base_url=config.base_url,
        on_behalf_of=config.on_behalf_of,
        connect_timeout=config.connect_timeout,
        read_timeout=config.read_timeout,
        max_attempts=config.max_attempts,
        max_backoff_seconds=config.max_backoff_seconds,
        clock=_clock,
    )


def _load_id() -> str:
    try:
        return str(dlt.current.load_package_state()["load_id"])
    except Exception:  # outside a dlt load (direct calls in tests)
        return "adhoc"


def _save_summary(store: StateStore, summary: RunSummary) -> RunSummary:
    """Runs may span several job files of one table: their counters add up."""
    previous = store.run_summary(summary.run_id)
    if previous is not None:
        merged = RunSummary.from_dict(previous)
        merged.merge(summary)
        summary = merged
    store.finish_run(summary.run_id, summary.as_dict())
    return summary


SUMMARY_KEY_PREFIX = "sendgrid_summary."


def _publish_summary(summary: RunSummary) -> None:
    """Keep the summary in the load package's destination state, which dlt persists with the
    package; ``run_summaries(pipeline, load_info)`` reads it back."""
    _destination_state()[SUMMARY_KEY_PREFIX + summary.stream] = summary.as_dict()


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
    from ``[destination.sendgrid]`` config, secrets or environment variables."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str = DEFAULT_BASE_URL,
        mapping: dict[str, Any] | None = None,
        list_ids: list[str] | None = None,
        destination_name: str = "sendgrid",
        batch_size: int = 0,
        loader_file_format: TLoaderFileFormat = "parquet",
        **kwargs: Any,
    ) -> None:
        super().__init__(
            destination_callable=load_contacts,
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
