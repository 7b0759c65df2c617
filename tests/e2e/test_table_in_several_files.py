"""A table whose load dlt writes in several job files is loaded as one.

dlt rotates a table's job files (``DATA_WRITER__FILE_MAX_ITEMS``) and starts a new one when the
table's columns change during extraction; it names them at random and calls the sink once per
file in directory-listing order. Planned file by file, a contact with rows in several files was
sent once per file, and whichever file dlt loaded last decided its value, differently on every
run (so reruns of the same data sent it again). These tests run real dlt pipelines into the
emulator and count what reaches the wire.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import dlt
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sendgrid_destination import run_summaries
from tests.e2e.conftest import rejects_of, run_summary, upserts

ROUNDS = 6
PUT = "PUT /v3/marketing/contacts"


def _rounds() -> Iterator[pa.Table]:
    """``a@x.com`` in every round, with the round's value, beside one contact of its own."""
    for i in range(ROUNDS):
        yield pa.table({"email": ["a@x.com", f"u{i}@x.com"], "first_name": [f"v{i}", f"U{i}"]})


def _job_files(pipeline: dlt.Pipeline, table: str) -> list[Path]:
    """The normalized, not yet loaded job files of ``table``."""
    storage = pipeline._get_load_storage()
    (load_id,) = storage.list_normalized_packages()
    folder = Path(storage.normalized_packages.storage.make_full_path(load_id)) / "new_jobs"
    return [p for p in folder.iterdir() if p.name.startswith(f"{table}.")]


def _written_in_order(files: list[Path]) -> list[Path]:
    """Give ``files`` modification times in the order of the rows they hold (the round of
    their ``a@x.com`` row), against their names' order, one second apart: returns them in
    that order."""

    def round_of(path: Path) -> int:
        return int(pq.read_table(path)["first_name"][0].as_py()[1:])

    ordered = sorted(files, key=round_of)
    if len(files) > 1 and [p.name for p in ordered] == sorted(p.name for p in ordered):
        # dlt's random file ids happened to sort in the rows' order (1 in 720 for 6 files):
        # give the first file a name that sorts last, so that names and rows disagree.
        table = ordered[0].name.split(".")[0]
        ordered[0] = ordered[0].rename(ordered[0].with_name(f"{table}.zzzzzzzzzz.0.parquet"))
    assert [p.name for p in ordered] != sorted(p.name for p in ordered) or len(files) < 2
    start = 1_700_000_000
    for offset, path in enumerate(ordered):
        os.utime(path, (start + offset, start + offset))
    return ordered


@pytest.fixture
def rotated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_WRITER__FILE_MAX_ITEMS", "2")  # a job file per round


def _pipeline(tmp_path: Path, destination: object) -> dlt.Pipeline:
    return dlt.pipeline("files", destination=destination, pipelines_dir=str(tmp_path / "dlt"))


def _load_in_written_order(pipeline: dlt.Pipeline) -> list[Path]:
    pipeline.extract(dlt.resource(_rounds, name="contacts"))
    pipeline.normalize()
    files = _job_files(pipeline, "contacts")
    assert len(files) == ROUNDS
    ordered = _written_in_order(files)
    pipeline.load()
    return ordered


def test_a_contact_in_every_job_file_of_a_load_is_sent_once_with_the_last_files_row(
    emulator, destination, tmp_path, state_path, rotated
) -> None:
    pipeline = _pipeline(tmp_path, destination())

    _load_in_written_order(pipeline)

    (request,) = upserts(emulator)
    assert request.contact_count == ROUNDS + 1
    emulator.process_jobs()
    assert emulator.contact("a@x.com")["first_name"] == f"v{ROUNDS - 1}"
    summary = run_summary(state_path, pipeline.last_trace.last_load_info)
    assert (summary["rows_read"], summary["superseded"], summary["new"]) == (12, 5, 7)
    assert (summary["contacts_sent"], summary["requests"]) == (7, 1)


def test_a_rerun_of_the_same_files_sends_nothing_whatever_order_dlt_lists_them_in(
    emulator, destination, tmp_path, state_path, rotated
) -> None:
    pipeline = _pipeline(tmp_path, destination())
    _load_in_written_order(pipeline)
    emulator.clear_requests()

    for _ in range(2):  # new random file names each time: new listing orders
        _load_in_written_order(pipeline)
        summary = run_summary(state_path, pipeline.last_trace.last_load_info)
        assert (summary["unchanged"], summary["changed"], summary["new"]) == (7, 0, 0)

    assert upserts(emulator) == []
    assert emulator.contact("a@x.com")["first_name"] == f"v{ROUNDS - 1}"


def test_a_column_appearing_mid_extraction_splits_the_load_and_each_contact_is_sent_once(
    emulator, destination, tmp_path, state_path
) -> None:
    def rows() -> Iterator[pa.Table]:
        yield pa.table({"email": ["a@x.com", "b@x.com"], "first_name": ["old", "B"]})
        extra = {"extra": [1, 2]}  # unmapped: dlt starts a second job file for it
        yield pa.table({"email": ["a@x.com", "c@x.com"], "first_name": ["new", "C"], **extra})

    pipeline = _pipeline(tmp_path, destination())
    info = pipeline.run(dlt.resource(rows, name="contacts"))

    loaded = [
        job
        for package in info.load_packages
        for job in package.jobs["completed_jobs"]
        if job.job_file_info.table_name == "contacts"
    ]
    assert len(loaded) == 2
    (request,) = upserts(emulator)
    assert request.contact_count == 3
    (summary,) = run_summaries(pipeline, info)
    assert (summary.rows_read, summary.superseded, summary.contacts_sent) == (4, 1, 3)


def test_a_split_table_that_dlt_retries_after_a_failure_counts_each_row_and_reject_once(
    emulator, destination, tmp_path, state_path, monkeypatch
) -> None:
    monkeypatch.setenv("DATA_WRITER__FILE_MAX_ITEMS", "4")  # three files of four rows

    def rows() -> Iterator[pa.Table]:
        for i in range(3):
            emails = [f"u{i}{j}@x.co" if j else f"broken-{i}" for j in range(4)]
            yield pa.table({"email": emails, "first_name": [f"N{i}{j}" for j in range(4)]})

    # The first upsert passes; then 503s until the client gives up (transient): dlt runs the
    # table again, from whichever of its files it calls next.
    emulator.faults.add(PUT, action="delay", delay=0.0, times=1)
    emulator.faults.add(PUT, status=503, times=2)
    pipeline = _pipeline(
        tmp_path, destination(max_contacts_per_request=2, max_in_flight=1, max_attempts=2)
    )

    info = pipeline.run(dlt.resource(rows, name="contacts"))

    summary = run_summary(state_path, info)
    assert (summary["rows_read"], summary["rejected"], summary["new"]) == (12, 3, 9)
    assert len(rejects_of(state_path)) == 3
    accepted = [r.contact_count for r in upserts(emulator) if r.status == 202]
    assert sum(accepted) == summary["contacts_sent"] == 9


def test_a_plan_of_a_split_table_counts_it_once_and_leaves_no_copy_of_the_state_behind(
    emulator, destination, tmp_path, state_path, rotated, monkeypatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the plan's copy goes
    _load_in_written_order(_pipeline(tmp_path, destination()))
    emulator.clear_requests()

    planner = _pipeline(tmp_path / "plan", destination(plan=True))
    planner.extract(dlt.resource(_rounds, name="contacts"))
    planner.normalize()
    planner.load()

    (summary,) = run_summaries(planner, planner.last_trace.last_load_info)
    assert (summary.plan, summary.rows_read, summary.unchanged) == (True, 12, 7)
    assert [r.method for r in emulator.requests if r.method != "GET"] == []
    assert not list(scratch.glob("sendgrid-plan-*"))  # removed after the package's last file
