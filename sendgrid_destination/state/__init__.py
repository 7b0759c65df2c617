"""The state file: ``store`` (open, decide, record), ``schema`` (tables and upgrades),
``reports`` (read-only questions), ``lock`` (one writer)."""

from sendgrid_destination.state.schema import SCHEMA_VERSION, ContactStatus
from sendgrid_destination.state.store import StateStore

__all__ = ["SCHEMA_VERSION", "ContactStatus", "StateStore"]
