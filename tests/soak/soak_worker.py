"""One scheduled run of the soak's pipeline, in its own process so the soak can SIGKILL it.

Usage: python -m tests.soak.soak_worker BASE_URL STATE_PATH PIPELINES_DIR PARQUET RESULT_JSON

Does what a scheduler's task does after any earlier failure: load a pending package first,
then run the new data. Writes the load ids it completed to RESULT_JSON and exits 0, or exits
1 after printing the exception (a failed run; the next run goes on from there).
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from typing import Any

import dlt
import pyarrow.parquet as pq

from sendgrid_destination import sendgrid
from sendgrid_destination.dlt_packages import finish_interrupted_moves
from tests.soak.workload import MAPPING

API_KEY = "SG.test-soak-key"
PIPELINE = "soak"

# Small bodies and batches so that a run makes several requests and reads its file in several
# batches (kills and faults land between and inside them); short waits so that 30+ runs with
# faults fit in minutes. Every bound still applies: attempts, backoff, the job wait budget.
SETTINGS: dict[str, Any] = {
    "max_contacts_per_request": 60,
    "max_in_flight": 2,
    "read_batch_rows": 128,
    "job_poll_interval": 0.05,
    "job_wait_timeout": 1.5,
    "max_attempts": 3,
    "max_backoff_seconds": 1.0,
    "connect_timeout": 2.0,
    "read_timeout": 5.0,
}


def destination(base_url: str, state_path: str) -> sendgrid:
    return sendgrid(
        api_key=API_KEY, base_url=base_url, mapping=MAPPING, state_path=state_path, **SETTINGS
    )


def main() -> int:
    base_url, state_path, pipelines_dir, parquet, result = sys.argv[1:6]
    # The run's summary and warnings go to the run's log (the soak keeps one per run).
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("sendgrid_destination").setLevel(logging.INFO)
    pipeline = dlt.pipeline(
        PIPELINE, destination=destination(base_url, state_path), pipelines_dir=pipelines_dir
    )
    load_ids: list[str] = []
    finish_interrupted_moves(pipeline)  # as run_sync does: a kill may land in dlt's moves
    try:
        if pipeline.has_pending_data:
            load_ids += pipeline.load().loads_ids
        load_ids += pipeline.run(pq.read_table(parquet), table_name="contacts").loads_ids
    except Exception:
        traceback.print_exc()
        return 1
    with open(result, "w") as out:
        json.dump({"load_ids": load_ids}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
