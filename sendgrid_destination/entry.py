"""The ``sendgrid-destination`` command's entry point.

``sendgrid-destination emulator ...`` goes straight to the emulator, which needs only the
standard library: it starts in a fraction of a second and about 100 MiB smaller than it
would after loading dlt, DuckDB and pyarrow. Every other command is ``cli.main``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

COMMAND = "sendgrid-destination"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["emulator"]:
        from sendgrid_destination.emulator.cli import main as emulator_main

        return emulator_main(args[1:], prog=f"{COMMAND} emulator")
    from sendgrid_destination.cli import main as cli_main

    return cli_main(args)
