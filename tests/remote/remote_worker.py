"""A worker process for the remote-state tests: one sync of a parquet file into the emulator,
with the state on S3. Usage:

    python -m tests.remote.remote_worker BASE_URL STATE_URL PIPELINES_DIR PARQUET [SETTING=VALUE...]
"""

from __future__ import annotations

import sys
from typing import Any

import dlt
import pyarrow.parquet as pq

from sendgrid_destination import sendgrid

API_KEY = "SG.test-remote-key"


def sync(data: Any, base_url: str, state_url: str, pipelines_dir: str, **settings: Any) -> None:
    pipeline = dlt.pipeline(
        "remote",
        destination=sendgrid(
            api_key=API_KEY,
            base_url=base_url,
            mapping={"email": "email", "first_name": "first_name"},
            state_path=state_url,
            job_poll_interval=0.02,
            **settings,
        ),
        pipelines_dir=pipelines_dir,
    )
    if pipeline.has_pending_data:
        pipeline.load()
    pipeline.run(data, table_name="contacts")


def main() -> None:
    base_url, state_url, pipelines_dir, parquet, *pairs = sys.argv[1:]
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, value = pair.split("=", 1)
        settings[key] = float(value) if "." in value else int(value)
    sync(pq.read_table(parquet), base_url, state_url, pipelines_dir, **settings)


if __name__ == "__main__":
    main()
