"""The README's "A sync file and the CLI" commands work verbatim from a fresh clone against
the emulator they start (on a free port instead of 3030, which another process may hold):
the plan, a first run, then a second run whose JSON says nothing was sent."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

from tests.packaging.test_readme_quickstart import ROOT, _copy_of_repository

BLOCK = re.compile(r"<!-- sync-cli:begin -->\s*```sh\n(.*?)```\s*<!-- sync-cli:end -->", re.S)
GOOD = 992  # make warehouse: 1,000 customers plus one exported twice; 8 are broken


def sync_cli_commands() -> str:
    (block,) = BLOCK.findall((ROOT / "README.md").read_text())
    return block


def test_the_sync_cli_block_runs_the_example_file_with_plan_and_json() -> None:
    commands = sync_cli_commands()
    assert "pipelines/syncs/duckdb_customers.toml --plan" in commands
    assert "--json" in commands and "emulator --port 3030" in commands


@pytest.mark.slow
def test_the_readmes_sync_cli_commands_run_verbatim(tmp_path: Path) -> None:
    repo = _copy_of_repository(tmp_path / "clone")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = sync_cli_commands().replace("3030", str(port))
    env = {k: v for k, v in os.environ.items() if not k.startswith("DESTINATION__")}
    env.pop("PYTHONPATH", None)
    env |= {
        "XDG_STATE_HOME": str(tmp_path / "xdg-state"),  # the default state file goes here
        "DLT_DATA_DIR": str(tmp_path / "dlt-data"),  # and dlt's pipelines here, not ~/.dlt
        "DESTINATION__SENDGRID__JOB_POLL_INTERVAL": "0.2",
    }
    # Whatever happens, the emulator the block starts in the background is stopped.
    guarded = "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n" + script
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", guarded],
        cwd=repo, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip

    out = result.stdout
    assert result.returncode == 0, f"{out[-4000:]}\n{result.stderr[-4000:]}"
    assert "PLAN (dry run): nothing was sent to SendGrid" in out
    assert f"{GOOD} new" in out
    # The emulator in the background prints to the same stdout: the run's line is the JSON one.
    last = json.loads([line for line in out.splitlines() if line.startswith("{")][-1])
    assert last["ok"] is True
    assert last["totals"]["contacts_sent"] == 0
    assert last["totals"]["unchanged"] == GOOD
