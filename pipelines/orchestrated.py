"""What the Airflow and Dagster examples share: the warehouse source, the mapping, and one
SendGrid destination per account.

Settings come the dlt way, per account: the destination of account ``main`` is named
``sendgrid_main``, so its key is ``DESTINATION__SENDGRID_MAIN__API_KEY`` (or ``api_key`` under
``[destination.sendgrid_main]`` in ``.dlt/secrets.toml``, or an Airflow Variable through dlt's
Airflow secrets provider), and ``DESTINATION__SENDGRID_MAIN__BASE_URL`` or ``...__STATE_PATH``
override what ``ACCOUNTS`` says. The warehouse is ``SENDGRID_EXAMPLE_WAREHOUSE`` (default
``warehouse.duckdb``, as ``make warehouse`` builds it).

Each account has its own state file (by default one per API host and subuser; or
``state_path``, an fsspec URL such as ``s3://bucket/sendgrid/main.duckdb`` on ephemeral
workers): the orchestrators' dlt helpers wipe dlt's working directory before every run, and the
state is what keeps a second run from resending unchanged contacts. One writer per account:
both examples run an account's load as one task, never in parallel with itself.
"""

from __future__ import annotations

import os
from typing import Any

import dlt
from dlt.extract.resource import DltResource

from sendgrid_destination import sendgrid
from sendgrid_destination.sources import resource_for
from sendgrid_destination.sync_file import SourceSpec

MAPPING: dict[str, Any] = {
    "email": "email",
    "first_name": "first_name",
    "last_name": "last_name",
    "city": "city",
    "country": "country",
    "custom_fields": {"plan": "plan", "lifetime_value": "lifetime_value"},
}

# One entry per SendGrid account (or subuser): settings that differ between them. Keys and
# anything else come from the account's own config section, destination.sendgrid_<account>.
ACCOUNTS: dict[str, dict[str, Any]] = {
    "main": {},
    "eu": {"base_url": "https://api.eu.sendgrid.com"},
}


def warehouse() -> str:
    return os.environ.get("SENDGRID_EXAMPLE_WAREHOUSE", "warehouse.duckdb")


def customers() -> DltResource:
    """The warehouse's ``customers`` table, streamed as Arrow batches."""
    return resource_for(
        SourceSpec(kind="duckdb", path=warehouse(), table="customers", resource="customers")
    )


@dlt.source(name="warehouse")
def customers_source() -> Any:
    return customers()


def destination_for(account: str) -> sendgrid:
    """The SendGrid destination of one account, configured in ``destination.sendgrid_<account>``."""
    settings = {k: v for k, v in ACCOUNTS[account].items() if not _overridden(account, k)}
    return sendgrid(
        destination_name=f"sendgrid_{account}",
        mapping=MAPPING,
        create_missing_custom_fields=True,
        **settings,
    )


def _overridden(account: str, key: str) -> bool:
    """An environment variable for this setting wins over ``ACCOUNTS`` (an explicit argument
    would beat it: dlt treats arguments as explicit)."""
    return f"DESTINATION__SENDGRID_{account.upper()}__{key.upper()}" in os.environ


def pipeline_for(account: str) -> dlt.Pipeline:
    return dlt.pipeline(
        pipeline_name=f"customers_to_sendgrid_{account}",
        destination=destination_for(account),
        progress="log",  # periodic log lines: the right display in a task log
    )
