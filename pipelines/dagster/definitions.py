"""Dagster: the warehouse's customers into SendGrid as dlt assets (``dagster-dlt``).

* ``customers_to_sendgrid``: one account (``main``), ``@dlt_assets`` run by
  ``DagsterDltResource``. ``pool="sendgrid-main"`` gives it a concurrency pool: with the pool's
  limit at 1 (``dagster instance concurrency set sendgrid-main 1``) two runs never load the
  account at once (the second would stop anyway: the state is locked).
* ``customers_to_sendgrid_by_account``: the same assets partitioned by account, one partition
  per entry of ``ACCOUNTS``, each with its own key, rate limit and state file: the way to scale
  out. Partitions of different accounts may run in parallel; one account's runs must not
  overlap: limit the run queue per partition (``tag_concurrency_limits`` on
  ``dagster/partition`` with ``applyLimitPerUniqueValue: true`` and ``limit: 1``).

``DagsterDltResource`` drops the pipeline's local state before each run (unless the
environment sets ``RESTORE_FROM_DESTINATION=false``): dlt's incremental cursor and pending
packages do not survive it, but this destination's state lives elsewhere (``state_path``; put
it on object storage for ephemeral workers), so a second run sends no unchanged contact.
Settings are in ``pipelines/orchestrated.py``. ``dagster dev -m pipelines.dagster.definitions``
serves them.
"""

# No ``from __future__ import annotations``: Dagster checks the ``context`` annotation's object.
from collections.abc import Iterator
from typing import Any

from dagster import AssetExecutionContext, Definitions, StaticPartitionsDefinition
from dagster_dlt import DagsterDltResource, dlt_assets

from pipelines.orchestrated import ACCOUNTS, customers_source, pipeline_for

by_account = StaticPartitionsDefinition(list(ACCOUNTS))


@dlt_assets(
    dlt_source=customers_source(),
    dlt_pipeline=pipeline_for("main"),
    name="customers_to_sendgrid",
    group_name="sendgrid",
    pool="sendgrid-main",
)
def customers_to_sendgrid(context: AssetExecutionContext, dlt: DagsterDltResource) -> Iterator[Any]:
    yield from dlt.run(context=context)


@dlt_assets(
    dlt_source=customers_source(),
    dlt_pipeline=pipeline_for("main"),
    name="customers_to_sendgrid_by_account",
    group_name="sendgrid_by_account",
    partitions_def=by_account,
)
def customers_to_sendgrid_by_account(
    context: AssetExecutionContext, dlt: DagsterDltResource
) -> Iterator[Any]:
    account = context.partition_key
    yield from dlt.run(
        context=context, dlt_source=customers_source(), dlt_pipeline=pipeline_for(account)
    )


defs = Definitions(
    assets=[customers_to_sendgrid],
    resources={"dlt": DagsterDltResource()},
)
# A separate code location for the partitioned variant: both define the same asset keys.
defs_by_account = Definitions(
    assets=[customers_to_sendgrid_by_account],
    resources={"dlt": DagsterDltResource()},
)
