"""The README's quick start works verbatim from a fresh clone, against a fresh account.

The commands are read from the README itself, between ``<!-- quickstart:begin -->`` and
``<!-- quickstart:end -->``, so the test fails when the README drifts from what works. They
run with bash in a temporary copy of the repository's files (its ``.venv`` linked to this
checkout's, already built), against an emulator with no custom fields (a fresh account),
with the API key and ``base_url`` given by environment variables, which beat the placeholder
key the quick start copies into ``.dlt/secrets.toml``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from sendgrid_destination.emulator import Emulator

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "SG.test-quickstart-key"
BLOCK = re.compile(r"<!-- quickstart:begin -->\s*```sh\n(.*?)```\s*<!-- quickstart:end -->", re.S)
# make warehouse: 1,000 customers plus one exported twice; 8 are broken (pipelines/sample_warehouse)
ROWS_READ, GOOD = 1_001, 992


def quickstart_commands() -> str:
    (block,) = BLOCK.findall((ROOT / "README.md").read_text())
    return block


def _copy_of_repository(target: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, check=True, timeout=60,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    (target / ".venv").symlink_to(ROOT / ".venv")
    # make's .venv stamp must stay newer than the copied lock and pyproject: .venv is built
    stamp = (ROOT / ".venv" / ".installed").stat().st_mtime
    for name in ("requirements.lock", "pyproject.toml"):
        os.utime(target / name, (stamp - 60, stamp - 60))
    return target


def test_the_quick_start_block_is_the_commands_a_newcomer_runs() -> None:
    commands = quickstart_commands()
    assert "pipelines.warehouse_to_sendgrid" in commands and "--create-custom-fields" in commands
    assert "make warehouse" in commands and "secrets.toml" in commands


@pytest.mark.slow
def test_the_readmes_quick_start_runs_verbatim_against_a_fresh_account(tmp_path: Path) -> None:
    repo = _copy_of_repository(tmp_path / "clone")
    with Emulator(api_key=API_KEY, job_polls_until_done=1) as emulator:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DESTINATION__")}
        env.pop("PYTHONPATH", None)
        env |= {
            "DESTINATION__SENDGRID__API_KEY": API_KEY,
            "DESTINATION__SENDGRID__BASE_URL": emulator.base_url,
            "DESTINATION__SENDGRID__JOB_POLL_INTERVAL": "0.2",
            "XDG_STATE_HOME": str(tmp_path / "xdg-state"),  # the default state file goes here
            "DLT_DATA_DIR": str(tmp_path / "dlt-data"),  # and dlt's pipelines here, not ~/.dlt
        }
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", quickstart_commands()],
            cwd=repo, env=env, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        out = result.stdout
        assert result.returncode == 0, f"{out[-4000:]}\n{result.stderr[-4000:]}"
        fields = requests.get(
            f"{emulator.base_url}/v3/marketing/field_definitions",
            headers={"Authorization": f"Bearer {API_KEY}"},
            timeout=30,
        ).json()["custom_fields"]
        emulator.process_jobs()
        contacts = emulator.contacts()

    assert (repo / "warehouse.duckdb").is_file() and (repo / ".dlt" / "secrets.toml").is_file()
    assert f"{ROWS_READ} rows read; {GOOD} new, 0 changed, 0 unchanged" in out
    assert f"sent {GOOD} contacts" in out
    assert "destination sendgrid" not in out  # dlt's generic load info is not what it prints
    assert {f["name"] for f in fields} == {"plan", "lifetime_value", "signed_up_at"}
    assert len(contacts) == GOOD
    assert "state file:" in out  # sendgrid-destination status found the run's state file
    assert (tmp_path / "xdg-state" / "sendgrid-destination").is_dir()
