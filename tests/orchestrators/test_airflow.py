"""The Airflow example DAGs (``pipelines/airflow/sendgrid_dag.py``) run with ``dag.test()``,
each run in its own process as a worker would (after ``airflow db migrate``): the second run
sends no contact, and the per-account DAG syncs each account into its own state."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sendgrid_destination.emulator import Emulator
from tests.orchestrators.conftest import CUSTOMERS, ROOT, require, undeclared_imports, upserted

pytestmark = pytest.mark.orchestrator
AIRFLOW_TIMEOUT = 300


@pytest.fixture
def airflow_env(tmp_path: Path, accounts: dict[str, Emulator]) -> dict[str, str]:
    require("airflow", "airflow")
    env = os.environ | {
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "pipelines" / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "PYTHONPATH": str(ROOT),
    }
    _bounded([sys.executable, "-m", "airflow", "db", "migrate"], env, tmp_path)
    return env


def _bounded(command: list[str], env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.Popen(
        command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        out, _ = proc.communicate(timeout=AIRFLOW_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-4000:]
    return text


def _dag_test(dag: str, env: dict[str, str], cwd: Path) -> None:
    script = (
        f"from pipelines.airflow.sendgrid_dag import {dag} as dag\n"
        "run = dag.test()\n"
        "print('DAG RUN STATE', run.state)\n"
    )
    out = _bounded([sys.executable, "-c", script], env, cwd)
    assert "DAG RUN STATE success" in out, out[-4000:]


def test_the_second_dag_run_sends_no_contact(
    airflow_env: dict[str, str], accounts: dict[str, Emulator], tmp_path: Path
) -> None:
    main = accounts["main"]

    _dag_test("single_account", airflow_env, tmp_path)
    first, after_first = upserted(main), len(main.requests)
    _dag_test("single_account", airflow_env, tmp_path)

    assert 0 < first <= CUSTOMERS + 1
    assert len(main.contacts()) == first
    assert upserted(main, after_first) == 0


def test_the_per_account_dag_syncs_each_account_into_its_own_state(
    airflow_env: dict[str, str], accounts: dict[str, Emulator], tmp_path: Path
) -> None:
    _dag_test("by_account", airflow_env, tmp_path)

    sent = {name: upserted(emulator) for name, emulator in accounts.items()}
    assert sent["main"] == sent["eu"] > 0
    assert (tmp_path / "state-main.duckdb").is_file()
    assert (tmp_path / "state-eu.duckdb").is_file()


def test_the_example_and_its_tests_import_only_what_the_airflow_extra_declares() -> None:
    require("airflow", "airflow")
    assert (
        undeclared_imports(
            [
                "pipelines/airflow",
                "pipelines/orchestrated.py",
                "tests/orchestrators/conftest.py",
                "tests/orchestrators/test_airflow.py",
            ],
            "airflow",
        )
        == []
    )
