"""``sendgrid-destination run SYNC.toml --plan``: what a run would send, changing nothing.

The plan is the run's own plan, computed on copies: the rows are extracted and normalized by
dlt in a copy of the pipeline's working directory (so the incremental cursor is the real one
and does not advance, and the rows have the types a load would see), then planned against a
private copy of the state file (``read_snapshot``; a remote state is downloaded, without its
lock) by the same ``Plan`` a load runs: last row wins, checks, unchanged by fingerprint, then
by content. SendGrid sees only read calls (custom field definitions, lists). Nothing is sent,
created, polled or recorded: the state file and dlt's working directory are left byte for
byte as they were.

Counted per table: rows read, new, changed (and of those, retried: their last send failed),
unchanged, rejected by reason, replaced by a later row. Custom fields the mapping names and
the account lacks are listed (with ``create_missing_custom_fields`` a run would create them;
without it, it stops). Import jobs still pending from earlier runs are counted: the run would
follow them first, and contacts they fail would be sent again.
"""

from __future__ import annotations

import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dlt
import pyarrow.compute as pc
from dlt.common.pipeline import get_dlt_pipelines_dir

from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.config import SendGridConfiguration
from sendgrid_destination.contact_model import FieldType
from sendgrid_destination.contact_sql import ContactSql
from sendgrid_destination.destination import client_for, sendgrid
from sendgrid_destination.errors import ConfigurationError
from sendgrid_destination.lists import check_list_ids
from sendgrid_destination.mapping import (
    FieldMapping,
    bind_custom,
    bind_reserved,
    infer_custom_type,
    parse_mapping,
)
from sendgrid_destination.plan import Plan
from sendgrid_destination.remote_state import fetch_copy, is_remote
from sendgrid_destination.source_rows import SourceRows
from sendgrid_destination.sources import resource_for
from sendgrid_destination.state import StateStore
from sendgrid_destination.state.snapshot import read_snapshot
from sendgrid_destination.sync_file import SyncFile, settings_provider
from sendgrid_destination.sync_runner import SyncReport, resolved_settings, state_location

PLAN_RUN_ID = "plan"
_COUNTS = ("rows_read", "new", "changed", "retried", "unchanged", "rejected", "superseded")


def plan_sync(
    sync: SyncFile, *, pipelines_dir: str | None = None, full_refresh: bool = False
) -> SyncReport:
    with settings_provider(sync):
        config = resolved_settings(sync)
        report = SyncReport(sync.name, "plan", state_location(config))
        with tempfile.TemporaryDirectory(prefix="sendgrid-plan-") as tmp:
            files = _normalized_files(sync, Path(tmp), pipelines_dir, full_refresh)
            with _state_copy(config, Path(tmp)) as store, client_for(config) as client:
                report.plan = _plan_files(config, client, store, files)
    return report


def _normalized_files(
    sync: SyncFile, tmp: Path, pipelines_dir: str | None, full_refresh: bool
) -> list[tuple[str, str]]:
    """(table, parquet file) of every package a run would load, extracted in a copy."""
    real = Path(pipelines_dir or get_dlt_pipelines_dir()) / sync.name
    copy_dir = tmp / "dlt"
    if real.is_dir():
        shutil.copytree(real, copy_dir / sync.name, symlinks=True)
    pipeline = dlt.pipeline(sync.name, destination=sendgrid(), pipelines_dir=str(copy_dir))
    refresh: dict[str, Any] = {"refresh": "drop_sources"} if full_refresh else {}
    pipeline.extract(resource_for(sync.source), **refresh)
    pipeline.normalize()
    files = []
    for load_id in pipeline.list_normalized_load_packages():
        for job in pipeline.get_load_package_info(load_id).jobs["new_jobs"]:
            table = job.job_file_info.table_name
            if not table.startswith("_dlt") and job.file_path.endswith(".parquet"):
                files.append((table, job.file_path))
    return files


@contextmanager
def _state_copy(config: SendGridConfiguration, tmp: Path) -> Iterator[StateStore]:
    """A private copy of the state (an empty one when there is none yet)."""
    if is_remote(config.state_path):
        with (
            fetch_copy(str(config.state_path)) as local,
            _snapshot_or_empty(local, tmp) as store,
        ):
            yield store
        return
    path = Path(state_location(config))
    with _snapshot_or_empty(path if path.is_file() else None, tmp) as store:
        yield store


@contextmanager
def _snapshot_or_empty(path: Path | None, tmp: Path) -> Iterator[StateStore]:
    if path is None:
        with StateStore.open(tmp / "empty-state.duckdb") as store:
            yield store
        return
    with read_snapshot(path) as store:
        yield store


def _plan_files(
    config: SendGridConfiguration,
    client: SendGridClient,
    store: StateStore,
    files: list[tuple[str, str]],
) -> dict[str, Any]:
    mapping = parse_mapping(config.mapping)
    check_list_ids(client, list(config.list_ids or []))
    tables: dict[str, dict[str, Any]] = {}
    to_create: set[str] = set()
    for table, path in files:
        rows = SourceRows.from_file(path, mapping.columns, config.read_batch_rows)
        sql, missing = _compile(config, client, mapping, rows)
        to_create.update(missing)
        counts = tables.setdefault(table, _empty_counts(table))
        _plan_one(store, sql, table, rows, counts)
    totals = dict.fromkeys(_COUNTS, 0)
    reasons: Counter[str] = Counter()
    for counts in tables.values():
        for name in _COUNTS:
            totals[name] += counts[name]
        reasons.update(counts["rejected_by_reason"])
        counts["rejected_by_reason"] = dict(counts["rejected_by_reason"])
    return {
        "tables": list(tables.values()),
        "totals": totals | {"rejected_by_reason": dict(reasons)},
        "custom_fields_to_create": sorted(to_create),
        "pending_jobs": len(store.pending_jobs()),
    }


def _empty_counts(table: str) -> dict[str, Any]:
    return {"table": table} | dict.fromkeys(_COUNTS, 0) | {"rejected_by_reason": Counter()}


def _compile(
    config: SendGridConfiguration, client: SendGridClient, mapping: FieldMapping, rows: SourceRows
) -> tuple[ContactSql, list[str]]:
    """The SQL a run would use; custom fields not in the account get a stand-in ID (a run
    would create them, so every contact carrying one counts as changed)."""
    reserved = bind_reserved(mapping, rows.schema)
    existing = client.field_definitions().custom_by_name() if mapping.custom else {}
    missing = [name for name in mapping.custom if name.lower() not in existing]
    if missing and not config.create_missing_custom_fields:
        raise ConfigurationError(
            f"Custom field(s) not defined in this SendGrid account: {', '.join(missing)}; a "
            "run would stop here. Create them, or set create_missing_custom_fields = true."
        )
    ids: dict[str, str] = {}
    types: dict[str, FieldType] = {}
    for name, column in mapping.custom.items():
        if name in missing:
            ids[name], types[name] = (
                f"new:{name}",
                infer_custom_type(rows.schema.field(column).type),
            )
        else:
            definition = existing[name.lower()]
            ids[name], types[name] = definition.id, _known_type(definition.field_type)
    custom = bind_custom(mapping, rows.schema, types, ids)
    list_ids = list(config.list_ids or [])
    return ContactSql(reserved + custom, list_ids=list_ids, date_format=config.date_format), missing


def _known_type(raw: str) -> FieldType:
    types: dict[str, FieldType] = {"text": "Text", "number": "Number", "date": "Date"}
    return types.get(raw.lower(), "Text")


def _plan_one(
    store: StateStore, sql: ContactSql, table: str, rows: SourceRows, counts: dict[str, Any]
) -> None:
    with Plan.build(store, sql, table, PLAN_RUN_ID, rows) as plan:
        counts["rows_read"] += plan.counts.rows_read
        counts["superseded"] += plan.counts.superseded
        counts["unchanged"] += plan.counts.unchanged
        rejects = plan.rejects
        counts["rejected"] += len(set(rejects["row_number"].to_pylist()))
        counts["rejected_by_reason"].update(str(r) for r in rejects["reason"].to_pylist())
        for rendered in plan.rendered_batches():
            counts["unchanged"] += rendered.unchanged.num_rows
            send = rendered.to_send
            new = int(pc.sum(send["is_new"]).as_py() or 0)
            retried = int(pc.sum(pc.and_(send["retry"], pc.invert(send["is_new"]))).as_py() or 0)
            counts["new"] += new
            counts["retried"] += retried
            counts["changed"] += send.num_rows - new - retried
