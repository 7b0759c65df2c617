"""``sendgrid-destination``: the command line.

* ``emulator``: serve the local SendGrid emulator.
* ``status``: recent runs (when, how long, their summaries: list additions and removals,
  deletions too), pending jobs, list removals and deletions queued or in flight, contact
  outcomes from the state file, and each table's latest plan (dry run, kept beside the state
  file); ``--json`` prints one JSON object.
* ``restore-state``: put back the copy of the state file taken after the last complete run
  (``<state>.bak``), when the file was damaged or lost what it recorded.
* ``rejects``: export rejected and failed rows (key, column, reason) as CSV or JSON. This is
  row-level output the user asks for, so it carries contact keys; nothing else here does.

The state file is ``--state PATH``, or the one the destination would use, resolved from the
same ``[destination.sendgrid]`` settings and environment variables as a pipeline. Both read a
private copy of it (``state.snapshot``): never blocked by a load, never blocking one. Output
piped into a reader that stops early (``| head``) ends quietly.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TextIO

from dlt.common.configuration import resolve_configuration

from sendgrid_destination._version import __version__
from sendgrid_destination.config import SendGridConfiguration
from sendgrid_destination.dry_run import latest_plans
from sendgrid_destination.emulator import cli as emulator_cli
from sendgrid_destination.errors import SendGridError
from sendgrid_destination.state import StateStore, recovery, reports
from sendgrid_destination.state.lock import file_lock
from sendgrid_destination.state.snapshot import read_snapshot
from sendgrid_destination.summary import RunSummary


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except SendGridError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (``... | head``): stop quietly, and keep Python from
        # complaining again when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sendgrid-destination",
        description="Reverse ETL into SendGrid Marketing Contacts (a dlt destination).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    emulator = commands.add_parser("emulator", help="serve the local SendGrid API emulator")
    emulator_cli.configure_parser(emulator)
    emulator.set_defaults(handler=emulator_cli.run)

    status = commands.add_parser("status", help="recent runs, pending jobs, failure counts")
    _state_option(status)
    status.add_argument("--runs", type=int, default=5, help="how many runs (default 5)")
    status.add_argument("--json", action="store_true", help="one JSON object on stdout")
    status.set_defaults(handler=_status)

    rejects = commands.add_parser("rejects", help="export rejected and failed rows")
    _state_option(rejects)
    rejects.add_argument("--run", help="only this run id (default: all runs)")
    rejects.add_argument("--format", choices=("csv", "json"), default="csv")
    rejects.add_argument("--output", type=Path, help="file to write (default: stdout)")
    rejects.set_defaults(handler=_rejects)

    restore = commands.add_parser(
        "restore-state", help="put back the copy of the state file taken after the last run"
    )
    _state_option(restore)
    restore.set_defaults(handler=_restore_state)
    return parser


def _restore_state(args: argparse.Namespace) -> int:
    path = _state_path(args)
    with file_lock(path):  # no load may be writing it meanwhile
        seq = recovery.restore(path)
    print(
        f"restored {path} from {recovery.backup_path(path)} (last recorded request: {seq}); "
        "contacts accepted after that copy are sent once more by the next run"
    )
    return 0


def _state_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--state",
        type=Path,
        help="state file (default: resolved from [destination.sendgrid] settings like a load)",
    )


def _state_path(args: argparse.Namespace) -> Path:
    if args.state:
        return Path(args.state)
    config = resolve_configuration(
        SendGridConfiguration(), sections=("destination", "sendgrid"), accept_partial=True
    )
    if not config.state_path and not config.api_key:
        raise SendGridError(
            "No state file given: pass --state PATH, or set state_path (or api_key) under "
            "[destination.sendgrid] so the default path can be derived."
        )
    return config.resolved_state_path()


def _open(args: argparse.Namespace) -> AbstractContextManager[StateStore]:
    # A private copy: reading never blocks (or waits for) a load writing the file.
    return read_snapshot(_state_path(args))


def _status(args: argparse.Namespace) -> int:
    with _open(args) as store:
        counts = reports.contact_status_counts(store)
        pending = len(store.pending_jobs())
        removals = store.removals.counts()
        runs = reports.recent_runs(store, args.runs)
        path = str(store.path)
    plans = latest_plans(Path(path))
    if args.json:
        status = {
            "state_file": path,
            "contacts_by_outcome": counts,
            "pending_jobs": pending,
            "removals": removals,
            "runs": runs,
            "latest_plans": plans,
        }
        json.dump(status, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return 0
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
    print(f"state file: {path}")
    print(f"contacts by outcome: {outcomes}")
    print(f"import jobs still pending: {pending}")
    if removals:
        print("removals: " + ", ".join(f"{n} {kind}" for kind, n in removals.items()))
    for run in runs:
        print()
        print(_when(run))
        if run["summary"]:
            print(RunSummary.from_dict(run["summary"]).format())
    for plan in plans.values():
        print()
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(plan["planned_at"]))
        print(f"latest plan, {when} UTC")
        print(RunSummary.from_dict({k: v for k, v in plan.items() if k != "planned_at"}).format())
    return 0


def _when(run: dict[str, Any]) -> str:
    started, finished = run["started_at"], run["finished_at"]
    if finished is None:
        return f"started {started:%Y-%m-%d %H:%M:%S} UTC, did not finish"
    seconds = (finished - started).total_seconds()
    return f"started {started:%Y-%m-%d %H:%M:%S} UTC, took {seconds:.1f} s"


def _rejects(args: argparse.Namespace) -> int:
    with _open(args) as store:
        rows = reports.rejects(store, args.run).to_pylist()
    out: TextIO = open(args.output, "w", newline="") if args.output else sys.stdout  # noqa: SIM115
    try:
        if args.format == "json":
            json.dump(rows, out, indent=2, default=str)
            out.write("\n")
        else:
            fields = ["run_id", "stream", "stage", "row_number", "contact_key", "column", "reason"]
            writer = csv.DictWriter(out, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    finally:
        if args.output:
            out.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
