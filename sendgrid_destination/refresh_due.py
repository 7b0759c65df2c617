"""When a sync file's next run must extract every row again (a full refresh), and why.

dlt keeps, per pipeline, its schema of the source's table and the incremental cursor. Two
cases make them wrong for the next run; the CLI (``run_sync``, ``plan_sync``) then runs once
with ``refresh="drop_sources"``, saying why in a note. Contacts unchanged since they were sent
are still skipped: a full refresh costs reading the source, not requests.

* A run with a ``cursor`` left a table not loaded (its configuration): the extract had moved
  the cursor past rows that were never sent (``note_not_loaded``), and no later run would
  read them again.
* The sync file's source changed (its kind, table, query, path, URL, cursor or resource):
  dlt's stored schema is the old source's (a table's primary key, not null, that a query
  leaves out fails every run in dlt's normalize), and so is its cursor. The source is known
  from the first successful run of this version on: a pipeline an earlier version left
  failing that way needs one ``--full-refresh``.

Both live in the pipeline's local state (kept in its working folder, synchronised nowhere): a
pipeline folder made afresh holds neither, and extracts everything anyway. The source is kept
as a digest, of its URL without credentials.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import dlt
from dlt.common.pipeline import get_dlt_pipelines_dir
from dlt.pipeline.exceptions import CannotRestorePipelineException

from sendgrid_destination.redaction import safe_url
from sendgrid_destination.sync_file import SourceSpec

OWED = "sendgrid_refresh_owed"
SOURCE = "sendgrid_source"
NOT_LOADED_NOTE = (
    "a table of the last run was not loaded (its configuration) after the source's cursor had "
    "moved past its rows: this run extracts every row again (contacts unchanged since they "
    "were sent are skipped)"
)
SOURCE_CHANGED_NOTE = (
    "the sync file's source changed since the last run (kind, table, query, path, URL, cursor "
    "or resource): this run extracts every row again, since dlt's stored schema and cursor "
    "were the old source's (contacts unchanged since they were sent are skipped)"
)


def reason(pipeline: dlt.Pipeline, source: SourceSpec) -> str | None:
    """Why this run must be a full refresh (a note), or None."""
    if _local(pipeline, OWED):
        return NOT_LOADED_NOTE
    known = _local(pipeline, SOURCE)
    if known and known != digest(source):
        return SOURCE_CHANGED_NOTE
    return None


def reason_for(name: str, pipelines_dir: str | None, source: SourceSpec) -> str | None:
    """``reason`` for an existing pipeline, read without making one (a plan); None if none."""
    root = pipelines_dir or get_dlt_pipelines_dir()
    if not (Path(root) / name).is_dir():
        return None
    try:
        return reason(dlt.attach(name, pipelines_dir=root), source)
    except CannotRestorePipelineException:
        return None


def note_loaded(pipeline: dlt.Pipeline, source: SourceSpec) -> None:
    """The run loaded: nothing is owed, and this is the source dlt's state is of."""
    pipeline.set_local_state_val(OWED, False)
    pipeline.set_local_state_val(SOURCE, digest(source))


def note_not_loaded(pipeline: dlt.Pipeline, source: SourceSpec) -> None:
    """A table of the run was not loaded (``TablesNotLoadedError``): with a cursor, its rows
    are behind it now."""
    if source.cursor:
        pipeline.set_local_state_val(OWED, True)


def digest(source: SourceSpec) -> str:
    """The source's fields, its URL without credentials or query (a new password is not a
    new source, and a digest of one could be guessed at)."""
    fields = dataclasses.asdict(source)
    if fields.get("url"):
        fields["url"] = safe_url(str(fields["url"]))
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _local(pipeline: dlt.Pipeline, key: str) -> object:
    try:
        return pipeline.get_local_state_val(key)
    except KeyError:
        return None
