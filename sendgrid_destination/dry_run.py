"""A plan (dry run): what a load would do, with read calls only, the state file left as it was.

``plan = true`` (``sendgrid(plan=True)``, or ``DESTINATION__SENDGRID__PLAN=true``) runs each
table's load unchanged, through two stand-ins:

* ``PlanningClient``: reads go to SendGrid (lists, field definitions, searches, the status of
  jobs earlier loads left pending, their errors files); writes do not (upserts, CSV imports
  and their uploads, deletions, list removals, new lists and custom fields): each is
  answered here, with a job id of its own that reports itself completed, every contact
  accepted, when polled;
* a private copy of the state file (``planning_state``), into which the load records what it
  would have done, and which is then thrown away. The state file itself is only copied.

Since the code path is the load's own, a plan's counts (new, changed, unchanged, rejected by
reason, list additions and removals, deletions, requests and bytes) are what the load then
does, as long as the data, the state and the account do not change in between. A plan cannot
know what SendGrid itself would refuse (a 400, a contact failed in its job), since nothing is
sent; and a deletion over the limits is reported (``over_delete_limit``, the load would stop
there) instead of stopping the plan. Each summary says ``plan: true``; it is logged, kept in the
load package's state (``run_summaries``) and, as each table's latest plan, in
``<state file>.plan.json`` beside the state file (``save_plan``; ``status`` shows it), never in
the state file.

One copy serves every sink call of a load package (its path is kept in the package's
destination state), so a table split over several files is planned as a load judges it; it is
removed after the package's last job file. Under ``plan_run``, one copy serves every package
it plans (a package a failed run left pending, then the new data's), so the plan of the new
data sees what the pending package's load would have recorded, as the run would.

``plan_run(pipeline_name, data, ...)`` is the entry point for a command line: the plan of
``pipeline.run(data)`` for an existing pipeline, run on a copy of its working folder (its
incremental cursors and pending packages), so the pipeline itself is untouched.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import dlt
from dlt.common.pipeline import get_dlt_pipelines_dir
from dlt.pipeline.exceptions import PipelineStepFailed

from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.api.models import ContactList, CsvImport, CustomField, ImportJob
from sendgrid_destination.package_files import jobs_left
from sendgrid_destination.state.snapshot import copy_consistently
from sendgrid_destination.summary import RunSummary

PLAN_JOB_PREFIX = "plan-"
_PLANNED_LISTS = uuid.UUID("5e9d7c1a-0000-4000-8000-000000000000")  # names a plan's new lists
_PLAN_STATE_KEY = "sendgrid_plan_state"


class PlanningClient(SendGridClient):
    """A client whose writes are answered locally (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Job ids no other client of the plan gives: an attempt of a file that dlt retries
        # records its sends in the same copy of the state as the attempt before it.
        self._jobs = itertools.count(1)
        self._token = uuid.uuid4().hex[:8]
        self._planned: dict[str, tuple[str, int]] = {}  # job id -> (job type, contacts)
        self._next_field: int | None = None

    def upsert_contacts(self, body: bytes) -> str:
        return self._job("upsert_contacts", 0)

    def delete_contacts(self, contact_ids: Sequence[str]) -> str:
        return self._job("delete_contacts", len(contact_ids))

    def remove_from_list(self, list_id: str, contact_ids: Sequence[str]) -> str:
        return self._job("delete_contacts", len(contact_ids))

    def start_csv_import(
        self, field_mappings: Sequence[str | None], list_ids: Sequence[str] = ()
    ) -> CsvImport:
        return CsvImport(self._job("upsert_contacts", 0), "plan://nowhere", ())

    def upload_file(self, started: CsvImport, data: bytes | BinaryIO) -> None:
        return None

    # New lists and fields get IDs shaped like SendGrid's (a UUID; e<n>_<T|N|D>, one above the
    # account's highest), so that the plan's bodies have the bytes the load's will.
    def create_list(self, name: str) -> ContactList:
        return ContactList(str(uuid.uuid5(_PLANNED_LISTS, name)), name)

    def create_custom_field(self, name: str, field_type: str) -> CustomField:
        if self._next_field is None:
            numbers = [_field_number(f.id) for f in self.field_definitions().custom]
            self._next_field = max(numbers, default=0) + 1
        number, self._next_field = self._next_field, self._next_field + 1
        return CustomField(f"e{number}_{field_type[:1].upper()}", name, field_type)

    def import_status(self, job_id: str) -> ImportJob:
        if not job_id.startswith(PLAN_JOB_PREFIX):
            return super().import_status(job_id)  # a real job an earlier load left pending
        # A planned job; one of an earlier attempt of the file (dlt retried it) counts none.
        job_type, count = self._planned.get(job_id, ("upsert_contacts", 0))
        counts = {"requested_count": count, "deleted_count": count}
        doc = {"id": job_id, "status": "completed", "job_type": job_type, "results": counts}
        return ImportJob.from_json(doc, job_id)

    def _job(self, job_type: str, contacts: int) -> str:
        job_id = f"{PLAN_JOB_PREFIX}{self._token}-{next(self._jobs)}"
        self._planned[job_id] = (job_type, contacts)
        return job_id


def _field_number(field_id: str) -> int:
    found = re.fullmatch(r"e(\d+)_[A-Z]", field_id)
    return int(found.group(1)) if found else 0


# plan_run's copy of the state, shared by the packages it plans (module doc); None outside it.
# A process plans one run at a time (the CLI), so a module global is enough.
_run_copy: Path | None = None


@contextmanager
def planning_state(state_path: Path | None) -> Iterator[Path]:
    """A private copy of the state file (``None``: there is none yet) for this load
    package's plan (see the module doc)."""
    if _run_copy is not None:
        if not _run_copy.exists() and state_path is not None and state_path.exists():
            copy_consistently(state_path, _run_copy)
        yield _run_copy
        return
    package = _package_state()
    recorded = package.get(_PLAN_STATE_KEY)
    if recorded and Path(recorded).exists():
        copy = Path(recorded)
    else:
        copy = Path(tempfile.mkdtemp(prefix="sendgrid-plan-")) / "state.duckdb"
        if state_path is not None and state_path.exists():
            copy_consistently(state_path, copy)
        package[_PLAN_STATE_KEY] = str(copy)
    try:
        yield copy
    finally:
        release_planning_state()


def release_planning_state() -> None:
    """Remove the package's plan copy once no job file of the package is left: after every
    sink call of a plan, the ones with nothing to do included (a file an earlier call of its
    table took, a table skipped or failed), or the copy of the last call's would be left."""
    if jobs_left():
        return
    recorded = _package_state().pop(_PLAN_STATE_KEY, None)
    if recorded:
        shutil.rmtree(Path(recorded).parent, ignore_errors=True)


def plan_path(state_path: Path) -> Path:
    """Where the latest plan's summaries are kept: beside the state file, never in it."""
    return state_path.with_name(state_path.name + ".plan.json")


def save_plan(state_path: Path, summary: RunSummary) -> None:
    """Keep ``summary`` as its table's latest plan (``status`` shows it): counts only, written
    whole (a temporary file renamed over the last), private to the owner."""
    target = plan_path(state_path)
    plans = latest_plans(state_path)
    plans[summary.stream] = {"planned_at": time.time(), **summary.as_dict()}
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    scratch = target.with_name(target.name + ".tmp")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(plans, out, indent=2)
    os.replace(scratch, target)


def latest_plans(state_path: Path) -> dict[str, Any]:
    """Each table's latest plan (``save_plan``), or nothing when there is none (or it cannot
    be read: it is a report, not state)."""
    try:
        plans = json.loads(plan_path(state_path).read_text())
    except (OSError, ValueError):
        return {}
    return plans if isinstance(plans, dict) else {}


def plan_run(
    pipeline_name: str,
    data: Any,
    *,
    pipelines_dir: str | None = None,
    run_kwargs: dict[str, Any] | None = None,
    **destination_settings: Any,
) -> list[RunSummary]:
    """The plan of ``pipeline.run(data, **run_kwargs)`` into ``sendgrid(**destination_settings)``
    for the pipeline ``pipeline_name``: a package it left pending is planned first, as the
    load would load it first. Nothing of the pipeline, the state file or SendGrid changes.
    A failed plan raises dlt's ``PipelineStepFailed``, as the run would."""
    summaries, failure = plan_packages(
        pipeline_name,
        data,
        pipelines_dir=pipelines_dir,
        run_kwargs=run_kwargs,
        **destination_settings,
    )
    if failure is not None:
        raise failure
    return summaries


def plan_packages(
    pipeline_name: str,
    data: Any,
    *,
    pipelines_dir: str | None = None,
    run_kwargs: dict[str, Any] | None = None,
    **destination_settings: Any,
) -> tuple[list[RunSummary], PipelineStepFailed | None]:
    """``plan_run``'s summaries and its failure, if any: a plan that fails part-way still
    returns the summaries of the tables it planned (the failed package's from the plan's copy
    of the state, as a failed run's come from the state)."""
    from sendgrid_destination.destination import run_summaries, sendgrid
    from sendgrid_destination.dlt_packages import finish_interrupted_moves

    source_dir = Path(pipelines_dir or get_dlt_pipelines_dir()) / pipeline_name
    with (
        tempfile.TemporaryDirectory(prefix="sendgrid-plan-pipeline-") as scratch,
        _one_copy_for_the_run(Path(scratch)),
    ):
        if source_dir.is_dir():
            shutil.copytree(source_dir, Path(scratch) / pipeline_name, symlinks=True)
        destination = sendgrid(**{**destination_settings, "plan": True})
        pipeline = dlt.pipeline(pipeline_name, destination=destination, pipelines_dir=scratch)
        finish_interrupted_moves(pipeline)  # on the copy, as the run will on the original
        summaries: list[RunSummary] = []
        try:
            if pipeline.has_pending_data:
                summaries += run_summaries(pipeline, pipeline.load())
            summaries += run_summaries(pipeline, pipeline.run(data, **(run_kwargs or {})))
        except PipelineStepFailed as exc:
            return summaries + _planned_in_copy(exc.load_id), exc
        return summaries, None


def _planned_in_copy(load_id: str | None) -> list[RunSummary]:
    """The summaries the plan's copy of the state recorded for the tables of ``load_id``."""
    from sendgrid_destination.state.reports import load_summaries
    from sendgrid_destination.state.snapshot import read_snapshot

    if not load_id or _run_copy is None or not _run_copy.is_file():
        return []
    with read_snapshot(_run_copy) as store:
        return [RunSummary.from_dict(s) for s in load_summaries(store, load_id)]


@contextmanager
def _one_copy_for_the_run(scratch: Path) -> Iterator[None]:
    global _run_copy
    _run_copy = scratch / "state-copy" / "state.duckdb"
    _run_copy.parent.mkdir()
    try:
        yield
    finally:
        _run_copy = None


def _package_state() -> dict[str, Any]:
    try:
        return dlt.current.destination_state()
    except Exception:  # outside a dlt load: the copy serves this call only
        return {}
