"""Airflow: the warehouse's customers into SendGrid every hour, with dlt's PipelineTasksGroup.

``customers_to_sendgrid`` syncs one account (``main``). ``decompose="serialize"`` runs the
source's resources one after another in one line of tasks; the parallel modes would put two
writers on one state file (the second would stop: the state is locked). ``max_active_runs=1``
keeps two runs of the DAG from overlapping.

``customers_to_sendgrid_by_account`` scales out: one task group per account in ``ACCOUNTS``,
running in parallel, each with its own key, rate limit and state file. That is the way to go
wider: workers on one account would share its rate limit and split its state.

PipelineTasksGroup gives dlt a fresh working directory per run and drops the pipeline first:
dlt's incremental cursor and pending packages do not survive it, but this destination's state
lives elsewhere (``state_path``; put it on object storage for ephemeral workers), so a second
run sends no unchanged contact. Settings are in ``pipelines/orchestrated.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from airflow.sdk import dag
from dlt.helpers.airflow_helper import PipelineTasksGroup

from pipelines.orchestrated import ACCOUNTS, customers_source, pipeline_for

DEFAULTS = {
    "start_date": datetime(2026, 1, 1, tzinfo=UTC),
    "schedule": "@hourly",
    "catchup": False,
    "max_active_runs": 1,
    "tags": ["sendgrid"],
}


def add_account(account: str) -> None:
    tasks = PipelineTasksGroup(
        f"sendgrid_{account}",
        use_data_folder=False,
        wipe_local_data=True,
        # No retry_policy (dlt's default: none): a failed load fails the task, and the
        # destination's own retries have already run; the next scheduled run resumes.
    )
    tasks.add_run(
        pipeline_for(account),
        customers_source(),
        decompose="serialize",
        trigger_rule="all_done",
    )


@dag(**DEFAULTS)
def customers_to_sendgrid() -> None:
    add_account("main")


@dag(**DEFAULTS)
def customers_to_sendgrid_by_account() -> None:
    for account in ACCOUNTS:
        add_account(account)


single_account = customers_to_sendgrid()
by_account = customers_to_sendgrid_by_account()
