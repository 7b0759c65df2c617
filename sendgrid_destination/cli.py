"""``sendgrid-destination``: the command line.

* ``run SYNC.toml [--plan] [--json] [--full-refresh]``: run the sync a file declares
  (``sync_file``), or with ``--plan`` show what it would do, changing nothing
  (``sync_runner.plan_sync``: the load itself in plan mode). Exit codes: 0 success, 1 the run
  failed (``fail_on_rejects`` included), 2 a usage or configuration error. ``--json`` prints
  exactly one JSON object on stdout (also when the run fails); logs and progress go to stderr:
  a bar on a terminal, a log line every few seconds otherwise (the right default under an
  orchestrator).
* ``emulator``: serve the local SendGrid emulator.
* ``status``: recent runs (when, how long, their summaries: list additions and removals,
  deletions too), pending jobs, list removals and deletions queued or in flight, contact
  outcomes from the state file, and each table's latest plan (dry run, kept beside the state
  file); ``--json`` prints one JSON object.
* ``restore-state``: put back the copy of the state file taken after the last complete run
  (``<state>.bak``), when the file was damaged or lost what it recorded.
* ``rejects``: export rejected and failed rows (key, column, reason) as CSV or JSON. This is
  row-level output the user asks for, so it carries contact keys; nothing else here does.

The state file is ``--state PATH`` (or an fsspec URL of a remote state), or the one the
destination would use, resolved from the same ``[destination.sendgrid]`` settings and
environment variables as a pipeline. Both read a private copy of it (``state.snapshot``;
a remote state is downloaded without taking its lock): never blocked by a load, never blocking
one. Output piped into a reader that stops early (``| head``) ends quietly.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import pyarrow as pa
from dlt.common.configuration import resolve_configuration

from sendgrid_destination import sync_command
from sendgrid_destination._version import __version__
from sendgrid_destination.config import SendGridConfiguration, is_remote
from sendgrid_destination.dry_run import latest_plans
from sendgrid_destination.emulator import cli as emulator_cli
from sendgrid_destination.errors import ConfigurationError, SendGridError
from sendgrid_destination.remote_state import fetch_copy
from sendgrid_destination.state import StateStore, recovery, reports
from sendgrid_destination.state.lock import file_lock
from sendgrid_destination.state.snapshot import read_snapshot
from sendgrid_destination.summary import RunSummary
from sendgrid_destination.sync_command import EXIT_CONFIG


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except SendGridError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
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

    run = commands.add_parser("run", help="run a sync file (TOML), or --plan it")
    run.add_argument("sync_file", type=Path, help="the sync file (see the README)")
    run.add_argument(
        "--plan", action="store_true", help="dry run: what would be sent; changes nothing"
    )
    run.add_argument("--json", action="store_true", help="one JSON object on stdout")
    run.add_argument(
        "--full-refresh",
        action="store_true",
        help="extract every row again (the incremental cursor restarts); unchanged contacts "
        "are still skipped by the state",
    )
    run.add_argument(
        "--progress",
        choices=("auto", "bar", "log", "none"),
        default="auto",
        help="auto (default): a bar on a terminal, log lines otherwise",
    )
    run.add_argument("--pipelines-dir", help="dlt's working directory (default: dlt's)")
    run.set_defaults(handler=sync_command.run)

    emulator = commands.add_parser("emulator", help="serve the local SendGrid API emulator")
    emulator_cli.configure_parser(emulator)
    emulator.set_defaults(handler=emulator_cli.run)

    status = commands.add_parser("status", help="recent runs, pending jobs, failure counts")
    _state_option(status)
    status.add_argument("--runs", type=_positive, default=5, help="how many runs (default 5)")
    status.add_argument("--json", action="store_true", help="one JSON object on stdout")
    status.set_defaults(handler=_status)

    rejects = commands.add_parser("rejects", help="export rejected and failed rows")
    _state_option(rejects)
    rejects.add_argument("--run", help="only this run id (default: all runs)")
    rejects.add_argument(
        "--format",
        choices=("csv", "json"),
        default="csv",
        help="csv (default), or json: one array of rows",
    )
    rejects.add_argument("--output", type=Path, help="file to write (default: stdout)")
    rejects.set_defaults(handler=_rejects)

    restore = commands.add_parser(
        "restore-state", help="put back the copy of the state file taken after the last run"
    )
    _state_option(restore, remote=False)
    restore.set_defaults(handler=_restore_state)
    return parser


def _restore_state(args: argparse.Namespace) -> int:
    location = _state_location(args)
    if is_remote(location):
        raise ConfigurationError(
            f"restore-state works on a local state file; {location} is remote: keep earlier "
            "versions with your storage's object versioning and restore one with its tools."
        )
    path = Path(location)
    recovery.require_backup(path)  # before the lock: a wrong path must leave nothing behind
    with file_lock(path):  # no load may be writing it meanwhile
        seq = recovery.restore(path)
    print(
        f"restored {path} from {recovery.backup_path(path)} (last recorded request: {seq}); "
        "contacts accepted after that copy are sent once more by the next run"
    )
    return 0


def _state_option(parser: argparse.ArgumentParser, *, remote: bool = True) -> None:
    what = "state file or remote state URL" if remote else "local state file"
    parser.add_argument(
        "--state",
        help=f"{what} (default: resolved from [destination.sendgrid] settings like a load)",
    )


def _positive(text: str) -> int:
    number = int(text) if text.isdigit() else 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count of 1 or more")
    return number


def _state_location(args: argparse.Namespace) -> str:
    if args.state:
        return str(args.state)
    config = resolve_configuration(
        SendGridConfiguration(), sections=("destination", "sendgrid"), accept_partial=True
    )
    # Without state_path: the account's default file, from base_url (and the subuser).
    return config.state_location()


@contextmanager
def _open(args: argparse.Namespace) -> Iterator[StateStore]:
    # A private copy: reading never blocks (or waits for) a load writing the file.
    location = _state_location(args)
    if not is_remote(location):
        with read_snapshot(Path(location)) as store:
            yield store
        return
    with fetch_copy(location) as local:
        if local is None:
            raise ConfigurationError(f"No state at {location}: nothing has been loaded with it.")
        with read_snapshot(local) as store:
            yield store


def _status(args: argparse.Namespace) -> int:
    with _open(args) as store:
        counts = reports.contact_status_counts(store)
        pending = len(store.pending_jobs())
        removals = store.removals.counts()
        runs = reports.recent_runs(store, args.runs)
        last_runs = reports.last_run_epochs(store)
    path = _state_location(args)
    plans = {} if is_remote(path) else latest_plans(Path(path))
    for stream, plan in plans.items():  # a run since the plan: its counts may not hold
        plan["run_since"] = last_runs.get(stream, 0.0) > float(plan.get("planned_at", 0))
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
        since = " (a run of the table came after it: its counts may no longer hold)"
        print(f"latest plan, {when} UTC{since if plan['run_since'] else ''}")
        kept = {k: v for k, v in plan.items() if k not in ("planned_at", "run_since")}
        print(RunSummary.from_dict(kept).format())
    return 0


def _when(run: dict[str, Any]) -> str:
    started, finished = run["started_at"], run["finished_at"]
    if finished is None:
        return f"started {started:%Y-%m-%d %H:%M:%S} UTC, did not finish"
    seconds = (finished - started).total_seconds()
    ended = "failed after" if (run["summary"] or {}).get("failed") else "took"
    return f"started {started:%Y-%m-%d %H:%M:%S} UTC, {ended} {seconds:.1f} s"


def _rejects(args: argparse.Namespace) -> int:
    with _open(args) as store:
        rows = _rows(reports.rejects(store, args.run))
        first = next(rows, None)
        if args.run and first is None and store.run_summary(args.run) is None:
            raise SendGridError(
                f"The state file {_state_location(args)} has no run {args.run!r}: "
                "`sendgrid-destination status` lists its recent runs' ids (--state names "
                "another file)."
            )
        out: TextIO = _private_file(args.output) if args.output else sys.stdout
        try:
            write = _json_rows if args.format == "json" else _csv_rows
            write(itertools.chain([first] if first else [], rows), out)
        finally:
            if args.output:
                out.close()
    return 0


def _rows(batches: pa.RecordBatchReader) -> Iterator[dict[str, Any]]:
    for batch in batches:
        yield from batch.to_pylist()


def _json_rows(rows: Iterator[dict[str, Any]], out: TextIO) -> None:
    """A JSON array written one row at a time, laid out as ``json.dump(..., indent=2)``."""
    out.write("[")
    empty = True
    for row in rows:
        item = json.dumps(row, indent=2, default=str).replace("\n", "\n  ")
        out.write(("\n  " if empty else ",\n  ") + item)
        empty = False
    out.write("]\n" if empty else "\n]\n")


def _csv_rows(rows: Iterator[dict[str, Any]], out: TextIO) -> None:
    writer = csv.DictWriter(out, fieldnames=list(reports.REJECT_FIELDS))
    writer.writeheader()
    writer.writerows(rows)


def _private_file(path: Path) -> TextIO:
    """``path`` for writing, readable by this user only: rejects carry contact keys (emails),
    like the state file they come from (0600)."""
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as exc:
        raise SendGridError(f"Cannot write {path}: {exc.strerror}.") from None
    os.fchmod(descriptor, 0o600)  # a file that was there keeps its mode otherwise
    return open(descriptor, "w", newline="")


if __name__ == "__main__":
    raise SystemExit(main())
