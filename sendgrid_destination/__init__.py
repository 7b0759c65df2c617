"""Reverse ETL into Twilio SendGrid Marketing Contacts, as a dlt custom destination.

``from sendgrid_destination import sendgrid`` and use ``dlt.pipeline(destination=sendgrid())``;
see the README for the mapping and every setting.

The names below are imported on first use (PEP 562): importing a subpackage, such as the
emulator, which needs only the standard library, does not load dlt, DuckDB and pyarrow.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from sendgrid_destination._version import __version__

if TYPE_CHECKING:
    from sendgrid_destination.config import SendGridConfiguration
    from sendgrid_destination.destination import run_summaries, sendgrid
    from sendgrid_destination.dlt_packages import finish_interrupted_moves
    from sendgrid_destination.dry_run import plan_run
    from sendgrid_destination.errors import (
        AuthenticationError,
        ConfigurationError,
        DeletionLimitError,
        SendGridError,
        SendGridTerminalError,
        SendGridTransientError,
    )

# Each public name and the module that defines it.
_HOMES = {
    "SendGridConfiguration": "config",
    "run_summaries": "destination",
    "sendgrid": "destination",
    "finish_interrupted_moves": "dlt_packages",
    "plan_run": "dry_run",
    "AuthenticationError": "errors",
    "ConfigurationError": "errors",
    "DeletionLimitError": "errors",
    "SendGridError": "errors",
    "SendGridTerminalError": "errors",
    "SendGridTransientError": "errors",
}

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "DeletionLimitError",
    "SendGridConfiguration",
    "SendGridError",
    "SendGridTerminalError",
    "SendGridTransientError",
    "__version__",
    "finish_interrupted_moves",
    "plan_run",
    "run_summaries",
    "sendgrid",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'sendgrid_destination' has no attribute {name!r}")
    value = getattr(import_module(f"sendgrid_destination.{home}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
