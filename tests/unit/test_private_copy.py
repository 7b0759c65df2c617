"""Private directories of remote-state copies: a run killed with SIGKILL leaves its copy (it
holds emails), and the next run removes it, never a live run's nor one it cannot prove dead."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from sendgrid_destination.private_copy import OWNER, PREFIX, private_dir, remove_abandoned

# A child that makes its private directory, writes a "state" into it, says where, and waits.
_CHILD = """
import sys, time
from sendgrid_destination.private_copy import private_dir
with private_dir() as path:
    (path / "state.duckdb").write_text("user@example.com")
    print(path, flush=True)
    time.sleep(60)
"""


@pytest.fixture
def tmp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def _child(root: Path) -> tuple[subprocess.Popen[str], Path]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD],
        env=os.environ | {"TMPDIR": str(root)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    assert line, "the child did not make its directory"
    return proc, Path(line)


def test_a_copy_left_by_a_killed_run_is_removed_by_the_next_run(tmp_root: Path) -> None:
    proc, left = _child(tmp_root)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert (left / "state.duckdb").exists(), "SIGKILL ran the child's cleanup"

    with private_dir() as mine:
        assert not left.exists()
        assert mine.parent == tmp_root
    assert not mine.exists()


def test_a_live_run_keeps_its_copy_while_others_start_and_end(tmp_root: Path) -> None:
    proc, live = _child(tmp_root)
    try:
        with private_dir():
            pass
        assert remove_abandoned() == 0
        assert (live / "state.duckdb").exists()
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert remove_abandoned() == 1


def test_a_directory_without_an_owner_file_is_left_alone(tmp_root: Path) -> None:
    # Made by a version before owner files, or caught between mkdtemp and its owner's lock.
    older = tmp_root / f"{PREFIX}older"
    older.mkdir()
    (older / "state.duckdb").write_text("x")
    pending = tmp_root / f"{PREFIX}pending"
    pending.mkdir()
    (pending / f"{OWNER}.pending").write_text("")

    assert remove_abandoned() == 0
    assert older.exists() and pending.exists()


def test_other_names_and_symlinks_in_the_temporary_directory_are_never_touched(
    tmp_root: Path, tmp_path: Path
) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / OWNER).write_text("")
    (tmp_root / f"{PREFIX}link").symlink_to(target)
    other = tmp_root / "someone-else"
    other.mkdir()
    (other / OWNER).write_text("")

    assert remove_abandoned() == 0
    assert target.exists() and other.exists()


def test_the_directory_is_private_to_its_user(tmp_root: Path) -> None:
    with private_dir() as path:
        assert path.stat().st_mode & 0o777 == 0o700
        assert (path / OWNER).exists()
