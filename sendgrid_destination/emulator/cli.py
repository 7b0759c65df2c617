"""``sendgrid-destination emulator``: serve the emulator in the foreground.

Contract: ``configure_parser`` adds the options to a parser (the lead mounts it as a
sub-command); ``run`` starts an ``Emulator``, prints its base URL and API key, serves
until Ctrl-C (or SIGTERM), stops it and returns 0.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from types import FrameType

from .facade import Emulator

DEFAULT_PORT = 3030
DEFAULT_API_KEY = "SG.test-emulator-key"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help="port; 0 picks a free one (default %(default)s)",
    )
    parser.add_argument(
        "--api-key", default=DEFAULT_API_KEY, help="the Bearer key to accept (default %(default)s)"
    )
    parser.add_argument(
        "--job-polls-until-done",
        type=int,
        default=1,
        help="GETs of /imports/{id} a job stays pending for (default %(default)s)",
    )
    parser.add_argument(
        "--job-delay-seconds",
        type=float,
        default=0.0,
        help="seconds before a new job may be processed (default %(default)s)",
    )
    parser.add_argument(
        "--job-order",
        choices=("fifo", "reverse"),
        default="fifo",
        help="order in which due jobs are applied (default %(default)s)",
    )
    parser.add_argument(
        "--custom-field-ready-seconds",
        type=float,
        default=0.0,
        help="seconds before a new custom field is accepted by upserts (default %(default)s)",
    )


def run(args: argparse.Namespace) -> int:
    emulator = Emulator(
        args.api_key,
        host=args.host,
        port=args.port,
        job_polls_until_done=args.job_polls_until_done,
        job_delay_seconds=args.job_delay_seconds,
        job_order=args.job_order,
        custom_field_ready_seconds=args.custom_field_ready_seconds,
    )
    with emulator:
        print(f"SendGrid emulator listening on {emulator.base_url}", flush=True)
        print(f"API key: {emulator.api_key}", flush=True)
        print("Press Ctrl-C to stop.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            _wait_for_interrupt()
    print("SendGrid emulator stopped.", flush=True)
    return 0


def _wait_for_interrupt() -> None:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_interrupt)
    # Event.wait without a timeout can block signal delivery on some platforms; poll.
    forever = threading.Event()
    while not forever.wait(0.5):
        pass


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sendgrid_destination.emulator",
        description="Serve the SendGrid Marketing Contacts API emulator.",
    )
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
