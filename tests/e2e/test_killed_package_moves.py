"""A process killed inside one of dlt's two-step package moves (``dlt_packages`` module doc):
dlt alone then fails every later run; ``finish_interrupted_moves`` finishes the move, so the
next run succeeds without loading any package twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

# Crash trials: each test runs dlt in several child processes (test-slow runs them).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
POINTS = ("normalize-commit", "package-complete")


def _child(*args: str, finish_moves: bool = True, env: dict[str, str] | None = None) -> int:
    environ = {**os.environ, **(env or {}), "RUNTIME__DLTHUB_TELEMETRY": "false"}
    environ["FINISH_MOVES"] = "1" if finish_moves else "0"
    done = subprocess.run(
        [sys.executable, "-m", "tests.e2e.dlt_move_killer", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode not in (0, -signal.SIGKILL):
        print(done.stdout + done.stderr)
    return done.returncode


def _folders(pipelines_dir: Path, name: str) -> dict[str, list[str]]:
    working = pipelines_dir / name
    return {
        folder: sorted(p.name for p in (working / folder).iterdir() if p.is_dir())
        for folder in ("normalize/extracted", "load/normalized", "load/loaded")
        if (working / folder).is_dir()
    }


def _killed_at(point: str, tmp_path: Path) -> tuple[Path, Path, str]:
    """A finished run, then one killed at ``point``: the pipelines dir, the sink's record and
    the killed run's load id (which the kill left in two folders)."""
    pipelines, out = tmp_path / "dlt", tmp_path / "received.txt"
    assert _child("none", "sink", str(pipelines), str(out)) == 0
    assert _child(point, "sink", str(pipelines), str(out)) == -signal.SIGKILL
    folders = _folders(pipelines, "moves")
    if point == "normalize-commit":
        (load_id,) = folders["normalize/extracted"]
        assert folders["load/normalized"] == [load_id]
    else:
        (load_id,) = folders["load/normalized"]
        assert (pipelines / "moves/load/normalized" / load_id / "package_completed.json").exists()
    return pipelines, out, load_id


@pytest.mark.parametrize("point", POINTS)
def test_without_finishing_the_move_dlt_fails_every_later_run(point: str, tmp_path: Path) -> None:
    pipelines, out, load_id = _killed_at(point, tmp_path)

    first = _child("none", "sink", str(pipelines), str(out), finish_moves=False)
    second = _child("none", "sink", str(pipelines), str(out), finish_moves=False)

    assert (first, second) == (1, 1)
    if point == "normalize-commit":
        # The first run loaded the package, then normalized its leftover input again under the
        # same load id and loaded that too, before renaming it onto the first: ENOTEMPTY.
        assert Counter(out.read_text().split())[load_id] == 2
        assert load_id in _folders(pipelines, "moves")["load/loaded"]
    # Either way the package is left completed in load/normalized: LoadPackageAlreadyCompleted.
    assert (pipelines / "moves/load/normalized" / load_id / "package_completed.json").exists()


@pytest.mark.parametrize("point", POINTS)
def test_finishing_the_move_lets_the_next_run_succeed_loading_nothing_twice(
    point: str, tmp_path: Path
) -> None:
    pipelines, out, load_id = _killed_at(point, tmp_path)

    assert _child("none", "sink", str(pipelines), str(out)) == 0
    assert _child("none", "sink", str(pipelines), str(out)) == 0

    received = Counter(out.read_text().split())
    assert set(received.values()) == {1}, received  # every package loaded once
    folders = _folders(pipelines, "moves")
    assert folders["normalize/extracted"] == folders["load/normalized"] == []
    assert load_id in folders["load/loaded"] and len(folders["load/loaded"]) == 4


def test_the_dlt_failure_a_kill_left_is_finished_too(tmp_path: Path) -> None:
    """The run after a normalize-commit kill without the fix fails with ENOTEMPTY, leaving the
    package completed in both folders; a run with the fix then succeeds."""
    pipelines, out, load_id = _killed_at("normalize-commit", tmp_path)
    assert _child("none", "sink", str(pipelines), str(out), finish_moves=False) == 1

    assert _child("none", "sink", str(pipelines), str(out)) == 0

    folders = _folders(pipelines, "moves")
    assert folders["load/normalized"] == [] and load_id in folders["load/loaded"]
