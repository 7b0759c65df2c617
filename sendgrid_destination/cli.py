"""``sendgrid-destination``: the command line.

* ``emulator``: serve the local SendGrid emulator.
* ``status``: recent runs, pending jobs and contact outcomes from the state file.
* ``rejects``: export rejected and failed rows (key, column, reason) as CSV or JSON. This is
  row-level output the user asks for, so it carries contact keys; nothing else here does.

The state file is ``--state PATH``, or the one the destination would use, resolved from the
same ``[destination.sendgrid]`` settings and environment variables as a pipeline.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TextIO

from dlt.common.configuration import resolve_configuration

from sendgrid_destination._version import __version__
from sendgrid_destination.config import SendGridConfiguration
from sendgrid_destination.emulator import cli as emulator_cli
from sendgrid_destination.errors import SendGridError
from sendgrid_destination.state import StateStore, reports
from sendgrid_destination.summary import RunSummary


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except SendGridError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


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
    status.set_defaults(handler=_status)

    rejects = commands.add_parser("rejects", help="export rejected and failed rows")
    _state_option(rejects)
    rejects.add_argument("--run", help="only this run id (default: all runs)")
    rejects.add_argument("--format", choices=("csv", "json"), default="csv")
    rejects.add_argument("--output", type=Path, help="file to write (default: stdout)")
    rejects.set_defaults(handler=_rejects)
    return parser


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
    return StateStore.open(_state_path(args), read_only=True)


def _status(args: argparse.Namespace) -> int:
    with _open(args) as store:
        print(f"state file: {store.path}")
        counts = reports.contact_status_counts(store)
        print(
            "contacts by outcome: "
            + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none")
        )
        pending = store.pending_jobs()
        print(f"import jobs still pending: {len(pending)}")
        for run in reports.recent_runs(store, args.runs):
            print()
            if run["summary"]:
                print(RunSummary.from_dict(run["summary"]).format())
            else:
                print(
                    f"run {run['run_id']} ({run['stream']}): started {run['started_at']}, "
                    "did not finish"
                )
    return 0


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
