"""``run --plan``: the counts a run would have (new, changed, unchanged, rejected), from read
calls only, leaving the state file and dlt's working directory byte for byte as they were."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb

from pipelines.sample_warehouse import build, touch
from tests.sync.conftest import SyncEnv, example

CUSTOMERS = 1_000
COMPARED = ("rows_read", "new", "changed", "retried", "unchanged", "rejected", "superseded")


def _fingerprint(*roots: Path) -> dict[str, str]:
    """Every file under ``roots`` (or the file itself) with the MD5 of its bytes."""
    found = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            found[str(path)] = hashlib.md5(path.read_bytes()).hexdigest()
    return found


def test_a_plan_counts_what_the_run_then_does_and_changes_nothing(sync_env: SyncEnv) -> None:
    warehouse = build(sync_env.workdir / "warehouse.duckdb", rows=CUSTOMERS)
    sync_env.run(example("duckdb_customers.toml"))
    changed = touch(warehouse, 9)
    with duckdb.connect(str(warehouse)) as con:  # three new customers
        con.execute(
            "INSERT INTO customers SELECT customer_id + 100000, 'new' || customer_id || "
            "'@example.com', first_name, last_name, city, country, postal_code, phone, plan, "
            "lifetime_value, signed_up_at, updated_at FROM customers WHERE customer_id IN (5, 6, 7)"
        )
    before = _fingerprint(sync_env.state_path.parent, sync_env.pipelines_dir)
    requests_before = len(sync_env.emulator.requests)

    plan = sync_env.run(example("duckdb_customers.toml"), "--plan", "--json")

    assert plan.code == 0, plan.err
    assert _fingerprint(sync_env.state_path.parent, sync_env.pipelines_dir) == before
    during = sync_env.emulator.requests[requests_before:]
    assert during and {r.method for r in during} == {"GET"}
    planned = plan.json()["plan"]["totals"]
    assert (planned["new"], planned["changed"]) == (3, changed)

    run = sync_env.run(example("duckdb_customers.toml"), "--json").json()["totals"]
    assert {k: planned[k] for k in COMPARED} == {k: run[k] for k in COMPARED}
    assert planned["rejected_by_reason"] == run["rejected_by_reason"]


def test_a_plan_before_the_first_run_counts_every_contact_as_new_and_creates_no_state(
    sync_env: SyncEnv,
) -> None:
    build(sync_env.workdir / "warehouse.duckdb", rows=CUSTOMERS)

    result = sync_env.run(example("duckdb_customers.toml"), "--plan", "--json")

    assert result.code == 0, result.err
    plan = result.json()["plan"]
    assert plan["totals"]["new"] == CUSTOMERS + 1 - plan["totals"]["rejected"] - 1
    # A fresh account lacks the mapped custom fields: a run would create them.
    assert plan["custom_fields_to_create"] == ["lifetime_value", "plan", "signed_up_at"]
    assert not sync_env.state_path.exists()
    assert not sync_env.pipelines_dir.exists()
    assert {r.method for r in sync_env.emulator.requests} == {"GET"}
    assert (
        "plan (nothing was sent or changed)"
        in sync_env.run(example("duckdb_customers.toml"), "--plan").out
    )
