"""``finish_interrupted_moves`` on folder layouts a kill can leave (the real kills are in
``tests/e2e/test_killed_package_moves.py``): it finishes a move only where dlt's next step is
certain, and leaves a package whose rows are still split between two folders."""

from __future__ import annotations

import logging
import types
from pathlib import Path

import pytest

from sendgrid_destination.dlt_packages import finish_interrupted_moves

LOAD_ID = "1700000000.1"


def _package(working: Path, folder: str, *files: str) -> Path:
    package = working / folder / LOAD_ID
    for name in files:
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text("x")
    return package


def _finish(working: Path) -> list[str]:
    return finish_interrupted_moves(types.SimpleNamespace(working_dir=str(working)))


def test_a_package_split_by_a_file_by_file_move_keeps_its_input_and_is_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # dlt's rename of load/new/<id> fell back to moving file by file (EMFILE) and was killed
    # part-way: part of the package is still in load/new, and the input holds the rest.
    extracted = _package(tmp_path, "normalize/extracted", "new_jobs/items.1.parquet")
    _package(tmp_path, "load/normalized", "new_jobs/items.a.parquet")
    _package(tmp_path, "load/new", "new_jobs/items.b.parquet", "schema.json")

    with caplog.at_level(logging.WARNING):
        done = _finish(tmp_path)

    assert done == []
    assert (extracted / "new_jobs/items.1.parquet").exists()
    assert (tmp_path / "load/new" / LOAD_ID / "new_jobs/items.b.parquet").exists()
    assert LOAD_ID in caplog.text and "left as it is" in caplog.text


def test_the_input_of_a_package_whose_commit_completed_is_deleted(tmp_path: Path) -> None:
    extracted = _package(tmp_path, "normalize/extracted", "new_jobs/items.1.parquet")
    normalized = _package(tmp_path, "load/normalized", "new_jobs/items.a.parquet")

    done = _finish(tmp_path)

    assert not extracted.exists() and normalized.exists()
    assert len(done) == 1 and "killed after normalizing it" in done[0]


def test_an_extracted_package_normalize_never_committed_is_left_for_dlt(tmp_path: Path) -> None:
    extracted = _package(tmp_path, "normalize/extracted", "new_jobs/items.1.parquet")
    _package(tmp_path, "load/new", "new_jobs/items.b.parquet")

    assert _finish(tmp_path) == []
    assert extracted.exists()


def test_a_normalized_package_not_marked_completed_is_left_to_load(tmp_path: Path) -> None:
    normalized = _package(tmp_path, "load/normalized", "new_jobs/items.a.parquet")

    assert _finish(tmp_path) == []
    assert normalized.exists()
