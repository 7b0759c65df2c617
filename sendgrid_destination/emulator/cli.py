"""``sendgrid-destination emulator``: serve the emulator in the foreground.

Contract: ``configure_parser`` adds the options to a parser (the lead mounts it as a
sub-command); ``run`` starts an ``Emulator``, prints its base URL and API key, serves
until SIGINT (Ctrl-C) or SIGTERM, stops it and returns 0.

Both signal handlers are installed explicitly, because a process started with SIGINT
ignored (under ``nohup``, ``&`` in a non-interactive shell, some CI runners) inherits the
ignore and Python then never raises ``KeyboardInterrupt``. The previous handlers are put
back when ``run`` returns.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from .facade import Emulator

DEFAULT_PORT = 3030
DEFAULT_API_KEY = "SG.test-emulator-key"
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# How often the serving loop looks for a stop request: a signal handler only sets a flag,
# so stopping takes at most this long.
_POLL_SECONDS = 0.1


def _port(text: str) -> int:
    port = int(text) if text.isdigit() else -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (0 to 65535)")
    return port


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a count (0 or more)")
    return int(text)


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return seconds


def _key(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("the API key must not be empty")
    return text


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to bind (default %(default)s)"
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help="port; 0 picks a free one (default %(default)s)",
    )
    parser.add_argument(
        "--api-key",
        type=_key,
        default=DEFAULT_API_KEY,
        help="the Bearer key to accept (default %(default)s)",
    )
    parser.add_argument(
        "--job-polls-until-done",
        type=_count,
        default=1,
        help="GETs of /imports/{id} a job stays pending for (default %(default)s)",
    )
    parser.add_argument(
        "--job-delay-seconds",
        type=_seconds,
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
        type=_seconds,
        default=0.0,
        help="seconds before a new custom field is accepted by upserts (default %(default)s)",
    )
    parser.add_argument(
        "--no-retain",
        dest="retain_contacts",
        action="store_false",
        help="validate and answer upserts, complete their jobs, but keep no contact "
        "(for pushing millions of contacts through it)",
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
        retain_contacts=args.retain_contacts,
    )
    stop = StopRequest()
    try:
        emulator.start()
    except OSError as exc:  # the port taken, the host not this machine's
        print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr)
        return 1
    with stop.installed():
        try:
            print(f"SendGrid emulator listening on {emulator.base_url}", flush=True)
            print(f"API key: {emulator.api_key}", flush=True)
            if not args.retain_contacts:
                print("Contacts are not retained (--no-retain).", flush=True)
            print("Press Ctrl-C to stop.", flush=True)
            stop.wait()
        finally:
            emulator.stop()
    print("SendGrid emulator stopped.", flush=True)
    return 0


class StopRequest:
    """Set by SIGINT or SIGTERM; ``wait`` returns once it is."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def installed(self) -> _Installed:
        return _Installed(self._on_signal)

    def wait(self) -> None:
        # Serving until told to stop is this command's job: the loop ends only on a signal.
        while self.signal is None:
            time.sleep(_POLL_SECONDS)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum


class _Installed:
    """Installs the stop handler for SIGINT and SIGTERM, and restores the previous ones."""

    def __init__(self, handler: Callable[[int, FrameType | None], None]) -> None:
        self._handler = handler
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> None:
        # Signal handlers can only be set from the main thread; elsewhere nothing changes.
        if threading.current_thread() is threading.main_thread():
            for signum in _STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handler)

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


def main(
    argv: list[str] | None = None, prog: str = "python -m sendgrid_destination.emulator"
) -> int:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve the SendGrid Marketing Contacts API emulator.",
    )
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
