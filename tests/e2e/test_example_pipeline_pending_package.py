"""After a failed run, the README's own-pipeline pattern catches up in one run.

dlt keeps a package whose load failed terminally pending (dlt >= 1.30), and ``pipeline.run``
then loads only that package and ignores the data it was given. The README's snippet and
``pipelines.warehouse_to_sendgrid.sync`` call ``pipeline.load()`` first when
``pipeline.has_pending_data``, then run: both the stuck rows and the new ones arrive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dlt
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from pipelines.sample_warehouse import build, touch
from pipelines.warehouse_to_sendgrid import customers_source, sync
from sendgrid_destination import sendgrid
from sendgrid_destination.emulator import Emulator

from .conftest import API_KEY

ROWS, TOUCHED = 600, 7
MAPPING = {"email": "email", "first_name": "first_name", "custom_fields": {"plan": "plan"}}


def _settings(emulator: Emulator, tmp_path: Path, api_key: str = API_KEY) -> dict[str, Any]:
    return {
        "api_key": api_key,
        "base_url": emulator.base_url,
        "mapping": MAPPING,
        "create_missing_custom_fields": True,
        "state_path": str(tmp_path / "state.duckdb"),
        "pipelines_dir": str(tmp_path / "dlt"),
    }


def _plans(emulator: Emulator) -> dict[str, str]:
    emulator.process_jobs()
    return {c["email"]: next(iter(c["custom_fields"].values())) for c in emulator.contacts()}


def test_a_sync_after_a_failed_run_loads_the_stuck_package_and_then_the_new_data(
    emulator: Emulator, tmp_path: Path
) -> None:
    warehouse = build(tmp_path / "warehouse.duckdb", rows=ROWS)
    with pytest.raises(PipelineStepFailed):
        sync(warehouse, **_settings(emulator, tmp_path, api_key="SG.test-revoked-key"))
    assert touch(warehouse, TOUCHED) == TOUCHED  # new data arrives while the package is stuck

    summaries = sync(warehouse, **_settings(emulator, tmp_path))

    stuck, fresh = summaries
    assert stuck.run_id != fresh.run_id
    assert stuck.rows_read == fresh.rows_read == ROWS + 1  # build() exports one customer twice
    assert (stuck.new, fresh.changed) == (stuck.contacts_sent, TOUCHED)
    assert list(_plans(emulator).values()).count("vip") == TOUCHED


def test_without_loading_first_dlt_loads_only_the_stuck_package_and_ignores_the_new_data(
    emulator: Emulator, tmp_path: Path
) -> None:
    """What the README's snippet guards against (if dlt changes this, the README must too)."""
    warehouse = build(tmp_path / "warehouse.duckdb", rows=ROWS)
    settings = _settings(emulator, tmp_path, api_key="SG.test-revoked-key")
    with pytest.raises(PipelineStepFailed):
        sync(warehouse, **settings)
    touch(warehouse, TOUCHED)

    settings["api_key"] = API_KEY
    pipelines_dir = settings.pop("pipelines_dir")
    pipeline = dlt.pipeline("warehouse_to_sendgrid", destination=sendgrid(**settings),
                            pipelines_dir=pipelines_dir)  # fmt: skip
    pipeline.run(customers_source(str(warehouse)))

    assert "vip" not in _plans(emulator).values()
    assert not pipeline.has_pending_data


def test_the_example_script_prints_our_error_in_one_line_instead_of_dlts_traceback(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    # Without --create-custom-fields on an account that lacks the mapped custom field.
    from pipelines.warehouse_to_sendgrid import main

    warehouse = build(tmp_path / "warehouse.duckdb", rows=20)
    monkeypatch.chdir(tmp_path)
    for key, value in {
        "DLT_DATA_DIR": str(tmp_path / "dlt"),
        "DESTINATION__SENDGRID__API_KEY": API_KEY,
        "DESTINATION__SENDGRID__BASE_URL": emulator.base_url,
        "DESTINATION__SENDGRID__STATE_PATH": str(tmp_path / "state.duckdb"),
        "DESTINATION__SENDGRID__MAPPING": '{"email": "email", "custom_fields": {"plan": "plan"}}',
    }.items():
        monkeypatch.setenv(key, value)

    with pytest.raises(SystemExit) as exited:
        main(["--warehouse", str(warehouse)])

    message = str(exited.value.code)
    assert message.startswith("error: ") and "\n" not in message.strip()
    assert "not defined in this SendGrid account: plan" in message
    assert "create_missing_custom_fields" in message
