"""The wheel works where users install it: a clean virtualenv with only its declared deps.

Builds the wheel from a copy of the sources, creates a fresh venv with the interpreter's own
pip (pip 23 with Python 3.11: the one that silently ignored a misspelled extra), installs the
wheel there with the lock as constraints (the same versions as .venv; from the package index
pip is configured with, or its cache), and then, from a directory outside the repository:
imports the package, runs ``sendgrid-destination --help``, and syncs 1,000 rows into the
emulator that ships in the package. Takes a minute or two, so it is ``slow`` (CI runs it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROWS = 1_000
SMOKE = Path(__file__).with_name("wheel_smoke.py")


def _run(args: list[str | Path], cwd: Path, timeout: float) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the built wheel and its runtime dependencies only."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "sendgrid_destination",
        source / "sendgrid_destination",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    dist = work / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", dist, source], work, 300)
    (wheel,) = dist.glob("sendgrid_destination-*.whl")
    env = work / "venv"
    _run([sys.executable, "-m", "venv", env], work, 120)
    python = env / "bin" / "python"
    _run(
        [python, "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
         "--constraint", ROOT / "requirements.lock", wheel],
        work, 900,
    )  # fmt: skip
    return env


@pytest.mark.slow
def test_the_clean_install_has_the_runtime_dependencies_and_no_dev_ones(venv: Path) -> None:
    listed = _run([venv / "bin" / "python", "-m", "pip", "list", "--format=json"], venv, 120)
    installed = {p["name"].lower() for p in json.loads(listed)}
    assert {"sendgrid-destination", "dlt", "pyarrow", "numpy", "duckdb", "requests"} <= installed
    assert "sqlalchemy" in installed  # dlt[sql-database]: the extra was not ignored
    assert not installed & {"pytest", "hypothesis", "mypy", "ruff", "psycopg2-binary"}


@pytest.mark.slow
def test_the_package_and_its_command_work_in_the_clean_install(venv: Path) -> None:
    outside = venv.parent
    probe = (
        "import sendgrid_destination, dlt.sources.sql_database;"
        "from sendgrid_destination import sendgrid, run_summaries;"
        "print(sendgrid_destination.__file__)"
    )
    where = _run([venv / "bin" / "python", "-c", probe], outside, 120).strip()
    assert Path(where).is_relative_to(venv)
    usage = _run([venv / "bin" / "sendgrid-destination", "--help"], outside, 120)
    assert "usage: sendgrid-destination" in usage
    for command in ("emulator", "status", "rejects"):
        assert command in usage


@pytest.mark.slow
def test_the_clean_install_syncs_1000_rows_into_the_emulator_it_ships(venv: Path) -> None:
    work = venv.parent / "sync"
    work.mkdir()
    shutil.copy(SMOKE, work / SMOKE.name)  # run from outside the repository
    out = _run([venv / "bin" / "python", SMOKE.name, str(ROWS)], work, 300)
    result = json.loads(out.strip().splitlines()[-1])
    assert Path(result["module"]).is_relative_to(venv)
    assert result["contacts_in_emulator"] == ROWS
    (summary,) = result["summaries"]
    assert (summary["rows_read"], summary["new"], summary["contacts_sent"]) == (ROWS, ROWS, ROWS)
    assert result["rerun_upserts"] == 0
