"""Run by tests/packaging/test_wheel.py with a clean venv's Python, outside the repository.

``python wheel_smoke.py ROWS``: syncs ROWS contacts into the emulator that ships in the
package with a real dlt pipeline, then syncs them again unchanged; prints one JSON line.
Uses only what the package and its declared dependencies provide.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import dlt
import pyarrow as pa

import sendgrid_destination
from sendgrid_destination import run_summaries, sendgrid
from sendgrid_destination.emulator import Emulator

API_KEY = "SG.test-wheel-key"


def main(rows: int) -> None:
    table = pa.table(
        {
            "email": [f"user{i}@example.com" for i in range(rows)],
            "first_name": [f"First{i}" for i in range(rows)],
        }
    )
    work = Path(tempfile.mkdtemp(prefix="wheel-smoke-"))
    with Emulator(api_key=API_KEY, job_polls_until_done=1) as emulator:
        destination = sendgrid(
            api_key=API_KEY,
            base_url=emulator.base_url,
            mapping={"email": "email", "first_name": "first_name"},
            state_path=str(work / "state.duckdb"),
            job_poll_interval=0.1,
        )
        pipeline = dlt.pipeline("wheel_smoke", destination=destination, pipelines_dir=str(work))
        info = pipeline.run(table, table_name="contacts")
        emulator.process_jobs()
        before_rerun = len(emulator.requests)
        pipeline.run(table, table_name="contacts")
        rerun = [r for r in emulator.requests[before_rerun:] if r.method == "PUT"]
        result = {
            "module": sendgrid_destination.__file__,
            "contacts_in_emulator": len(emulator.contacts()),
            "summaries": [s.as_dict() for s in run_summaries(pipeline, info)],
            "rerun_upserts": len(rerun),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main(int(sys.argv[1]))
