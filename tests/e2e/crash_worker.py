"""A loading process for the crash test: runs one sync and is SIGKILLed at a random point.

Usage: python -m tests.e2e.crash_worker BASE_URL STATE_PATH PIPELINES_DIR PARQUET [IN_FLIGHT]
[bulk | mirror]
"""

from __future__ import annotations

import sys

import pyarrow.parquet as pq

from tests.e2e.crash_scenario import BULK, MIRROR, sync


def main() -> None:
    base_url, state_path, pipelines_dir, parquet = sys.argv[1:5]
    extra = sys.argv[5:]
    in_flight = next((int(a) for a in extra if a.isdigit()), 1)
    settings = BULK if "bulk" in extra else MIRROR if "mirror" in extra else {}
    sync(pq.read_table(parquet), base_url, state_path, pipelines_dir, in_flight, **settings)


if __name__ == "__main__":
    main()
