"""A loading process for the crash test: runs one sync and is SIGKILLed at a random point.

Usage: python -m tests.e2e.crash_worker BASE_URL STATE_PATH PIPELINES_DIR PARQUET [IN_FLIGHT]
"""

from __future__ import annotations

import sys

import pyarrow.parquet as pq

from tests.e2e.crash_scenario import sync


def main() -> None:
    base_url, state_path, pipelines_dir, parquet = sys.argv[1:5]
    in_flight = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    sync(pq.read_table(parquet), base_url, state_path, pipelines_dir, in_flight)


if __name__ == "__main__":
    main()
