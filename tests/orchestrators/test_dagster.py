"""The Dagster example (``pipelines/dagster/definitions.py``) materialized in-process: its
second run sends no contact, and its partitions sync each account into its own state."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest

from sendgrid_destination.emulator import Emulator
from tests.orchestrators.conftest import CUSTOMERS, require, undeclared_imports, upserted

pytestmark = pytest.mark.orchestrator


def _definitions() -> ModuleType:
    require("dagster_dlt", "dagster")
    import pipelines.orchestrated

    importlib.reload(pipelines.orchestrated)  # it reads the environment when imported
    import pipelines.dagster.definitions as definitions

    return importlib.reload(definitions)


def _materialize(assets: object, partition: str | None = None) -> bool:
    from dagster import DagsterInstance, materialize
    from dagster_dlt import DagsterDltResource

    result = materialize(
        [assets],  # type: ignore[list-item]
        resources={"dlt": DagsterDltResource()},
        instance=DagsterInstance.ephemeral(),
        partition_key=partition,
    )
    return bool(result.success)


def test_the_second_materialization_sends_no_contact(accounts: dict[str, Emulator]) -> None:
    definitions = _definitions()
    main = accounts["main"]

    assert _materialize(definitions.customers_to_sendgrid)
    first = upserted(main)
    after_first = len(main.requests)
    assert _materialize(definitions.customers_to_sendgrid)

    assert 0 < first <= CUSTOMERS + 1
    assert len(main.contacts()) == first
    assert upserted(main, after_first) == 0


def test_partitions_sync_each_account_into_its_own_state(
    accounts: dict[str, Emulator], tmp_path: object
) -> None:
    definitions = _definitions()

    for account in ("main", "eu"):
        assert _materialize(definitions.customers_to_sendgrid_by_account, account)
    again = {name: len(emulator.requests) for name, emulator in accounts.items()}
    assert _materialize(definitions.customers_to_sendgrid_by_account, "eu")

    sent = {name: upserted(emulator) for name, emulator in accounts.items()}
    assert sent["main"] == sent["eu"] > 0
    assert upserted(accounts["eu"], again["eu"]) == 0


def test_the_example_and_its_tests_import_only_what_the_dagster_extra_declares() -> None:
    require("dagster_dlt", "dagster")
    assert (
        undeclared_imports(
            [
                "pipelines/dagster",
                "pipelines/orchestrated.py",
                "tests/orchestrators/conftest.py",
                "tests/orchestrators/test_dagster.py",
            ],
            "dagster",
        )
        == []
    )
