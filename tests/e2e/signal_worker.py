"""A loading process for the signal test: one sync of many slow requests, until signalled.

Usage: python -m tests.e2e.signal_worker BASE_URL STATE_PATH PIPELINES_DIR ROWS
"""

from __future__ import annotations

import sys

import dlt
import pyarrow as pa

from sendgrid_destination import sendgrid

API_KEY = "SG.test-signal-key"
PER_REQUEST = 100


def main() -> None:
    base_url, state_path, pipelines_dir, rows = sys.argv[1:5]
    n = int(rows)
    data = pa.table(
        {
            "email": [f"user{i}@example.com" for i in range(n)],
            "first_name": [f"First{i}" for i in range(n)],
        }
    )
    destination = sendgrid(
        api_key=API_KEY,
        base_url=base_url,
        mapping={"email": "email", "first_name": "first_name"},
        state_path=state_path,
        max_contacts_per_request=PER_REQUEST,
        max_in_flight=2,
        job_poll_interval=0.05,
    )
    pipeline = dlt.pipeline("signal", destination=destination, pipelines_dir=pipelines_dir)
    print("started", flush=True)
    pipeline.run(data, table_name="contacts")


if __name__ == "__main__":
    main()
