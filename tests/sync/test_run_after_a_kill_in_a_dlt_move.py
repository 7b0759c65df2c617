"""``sendgrid-destination run`` after a run SIGKILLed inside one of dlt's package moves
(``tests/e2e/dlt_move_killer.py``): without ``finish_interrupted_moves`` dlt fails this run and
every later one (``OSError: [Errno 39] Directory not empty``, then
``LoadPackageAlreadyCompleted``); with it the run succeeds and sends nothing twice."""

from __future__ import annotations

import os
import signal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.e2e.test_killed_package_moves import POINTS, _child
from tests.sync.conftest import SyncEnv

pytestmark = pytest.mark.slow  # a crash trial, in child processes


@pytest.mark.parametrize("point", POINTS)
def test_the_cli_run_after_a_kill_in_a_dlt_move_succeeds_sending_nothing_again(
    point: str, sync_env: SyncEnv
) -> None:
    people = pa.table({"email": [f"p{i}@example.com" for i in range(6)]})
    pq.write_table(people, sync_env.workdir / "people.parquet")
    sync_file = sync_env.write(
        "people.toml",
        'name = "people"\n[source]\nkind = "parquet"\n'
        f'path = "{sync_env.workdir / "people.parquet"}"\n'
        '[destination.sendgrid.mapping]\nemail = "email"\n',
    )
    env = {k: v for k, v in os.environ.items() if k.startswith("DESTINATION__SENDGRID__")}
    args = ("run", str(sync_file), "--pipelines-dir", str(sync_env.pipelines_dir), "--json")
    assert _child(point, "cli", *args, env=env) == -signal.SIGKILL
    sent_before = sum(r.contact_count or 0 for r in sync_env.upserts() if r.status == 202)

    result = sync_env.run(sync_file, "--json")

    assert result.code == 0, result.err
    assert "dlt's working folder" in result.err  # the move it finished, logged
    sent = sum(r.contact_count or 0 for r in sync_env.upserts() if r.status == 202)
    expected_before = 0 if point == "normalize-commit" else 6
    assert (sent_before, sent) == (expected_before, 6)
    sync_env.emulator.process_jobs()
    assert len(sync_env.emulator.contacts()) == 6
