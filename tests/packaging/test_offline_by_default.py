"""Offline by default: the tests, the Makefile's targets and CI run with dlt's telemetry off.

dlt sends anonymous usage events to its tracker unless ``RUNTIME__DLTHUB_TELEMETRY=false``;
nothing this project runs may try to reach the internet.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import dlt
from dlt.common.runtime import anon_tracker

ROOT = Path(__file__).resolve().parents[2]


def test_a_pipeline_created_in_the_test_suite_starts_no_telemetry(tmp_path: Path) -> None:
    pipeline = dlt.pipeline("offline_check", destination="dummy", pipelines_dir=str(tmp_path))
    pipeline.extract([{"id": 1}], table_name="t")
    assert dlt.current.run_context().runtime_config.dlthub_telemetry is False
    assert anon_tracker._ANON_TRACKER_ENDPOINT is None  # set only when the tracker starts


def test_every_make_target_runs_with_telemetry_off_unless_the_caller_turns_it_on() -> None:
    def seen_by_make(**env: str) -> str:
        clean = {k: v for k, v in os.environ.items() if k != "RUNTIME__DLTHUB_TELEMETRY"}
        show = 'show-telemetry: ; @echo "$$RUNTIME__DLTHUB_TELEMETRY"'
        result = subprocess.run(
            ["make", "-s", "--no-print-directory", f"--eval={show}", "show-telemetry"],
            cwd=ROOT, env=clean | env, capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        return result.stdout.strip()

    assert seen_by_make() == "false"
    assert seen_by_make(RUNTIME__DLTHUB_TELEMETRY="true") == "true"


def test_ci_turns_telemetry_off_before_it_runs_anything() -> None:
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    export = lines.index("export RUNTIME__DLTHUB_TELEMETRY=false")
    first_make = next(i for i, line in enumerate(lines) if line.startswith("make "))
    assert export < first_make
