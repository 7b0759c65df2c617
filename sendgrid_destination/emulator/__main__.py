"""``python -m sendgrid_destination.emulator``: the CLI without the console script."""

import sys

from .cli import main

sys.exit(main())
