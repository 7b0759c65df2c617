"""Reverse ETL into Twilio SendGrid Marketing Contacts, as a dlt custom destination.

``from sendgrid_destination import sendgrid`` and use ``dlt.pipeline(destination=sendgrid())``;
see the README for the mapping and every setting.
"""

from sendgrid_destination._version import __version__
from sendgrid_destination.config import SendGridConfiguration
from sendgrid_destination.destination import run_summaries, sendgrid
from sendgrid_destination.dry_run import plan_run
from sendgrid_destination.errors import (
    AuthenticationError,
    ConfigurationError,
    DeletionLimitError,
    SendGridError,
    SendGridTerminalError,
    SendGridTransientError,
)

__all__ = [
    "AuthenticationError",
    "ConfigurationError",
    "DeletionLimitError",
    "SendGridConfiguration",
    "SendGridError",
    "SendGridTerminalError",
    "SendGridTransientError",
    "__version__",
    "plan_run",
    "run_summaries",
    "sendgrid",
]
