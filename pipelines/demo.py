"""``make demo``: a sample warehouse synced twice into the local SendGrid emulator.

1. builds a DuckDB warehouse of 50,000 synthetic customers (a few of them broken);
2. starts the emulator and syncs with pipelines/warehouse_to_sendgrid.py, exactly as against
   a real account but with ``base_url`` and ``api_key`` pointing at the emulator;
3. changes 25 customers and syncs again: only those 25 are sent.

Everything lives under ``.demo/`` (warehouse, state file, dlt's working directory). Nothing
leaves the machine: dlt's anonymous telemetry is off unless the environment turns it on.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pipelines.sample_warehouse import build, touch
from pipelines.warehouse_to_sendgrid import sync
from sendgrid_destination.emulator import Emulator
from sendgrid_destination.state import StateStore
from sendgrid_destination.summary import RunSummary

WORK = Path(".demo")
API_KEY = "SG.test-demo-key"
CUSTOMERS = 50_000
CHANGED = 25


def main() -> None:
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    shutil.rmtree(WORK, ignore_errors=True)
    warehouse = build(WORK / "warehouse.duckdb", rows=CUSTOMERS)
    print(f"Built {warehouse} with {CUSTOMERS:,} customers (and a few broken rows).\n")
    with Emulator(api_key=API_KEY, job_polls_until_done=1) as emulator:
        settings = {
            "api_key": API_KEY,
            "base_url": emulator.base_url,
            "state_path": str(WORK / "sendgrid-state.duckdb"),
            "create_missing_custom_fields": True,
            "job_poll_interval": 0.2,
            "pipelines_dir": str(WORK / "dlt"),
        }
        print(f"== First sync into the emulator at {emulator.base_url}")
        _report(_sync(warehouse, settings), settings)
        changed = touch(warehouse, CHANGED)
        print(f"\n== {changed} customers changed upstream; second sync")
        _report(_sync(warehouse, settings), settings)
        print(
            f"\nThe emulator now holds {len(emulator.contacts()):,} contacts; it received "
            f"{sum(1 for r in emulator.requests if r.method == 'PUT')} upsert requests."
        )


def _sync(warehouse: Path, settings: dict[str, object]) -> str:
    (summary,) = sync(warehouse, **settings)  # type: ignore[arg-type]
    return summary.run_id


def _report(run_id: str, settings: dict[str, object]) -> None:
    with StateStore.open(Path(str(settings["state_path"])), read_only=True) as store:
        summary = store.run_summary(run_id)
        examples = store.con.execute(
            "SELECT reason, count(*), min(row_number) FROM rejects WHERE run_id = ? "
            "GROUP BY reason ORDER BY count(*) DESC",
            [run_id],
        ).fetchall()
    if summary is None:
        print(f"(no summary recorded for {run_id})")
        return
    print(RunSummary.from_dict(summary).format())
    if examples:
        print("  rejected rows by reason (first source row as an example):")
        for reason, count, row in examples:
            print(f"    {count:>4} x {reason}  e.g. row {row}")
    print(
        f"  rejects with keys: .venv/bin/sendgrid-destination rejects --state "
        f"{settings['state_path']} --run '{run_id}'"
    )


if __name__ == "__main__":
    main()
