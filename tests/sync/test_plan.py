"""``run --plan``: the counts a run would have (new, changed, unchanged, rejected), from read
calls only, leaving the state file and dlt's working directory byte for byte as they were
(beside the state file, only the latest plan is kept)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pytest

from pipelines.sample_warehouse import build, touch
from tests.sync.conftest import SyncEnv, example

CUSTOMERS = 1_000
COMPARED = ("rows_read", "new", "changed", "retried", "unchanged", "rejected", "superseded")


def _fingerprint(*roots: Path) -> dict[str, str]:
    """Every file under ``roots`` (or the file itself) with the MD5 of its bytes, but the
    latest plan (a report ``status`` shows, not state)."""
    found = {}
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            if path.name.endswith(".plan.json"):
                continue
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
    assert plan.json()["mode"] == "plan"
    planned = plan.json()["totals"]
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
    totals = result.json()["totals"]
    assert totals["new"] == CUSTOMERS + 1 - totals["rejected"] - 1
    # A fresh account lacks the mapped custom fields: a run would create them.
    (table,) = result.json()["tables"]
    created = sorted(n.split("'")[1] for n in table["notes"] if "was not in the account" in n)
    assert created == ["lifetime_value", "plan", "signed_up_at"]
    assert table["plan"] is True and totals["contacts_sent"] == totals["new"]
    assert not sync_env.state_path.exists()
    assert not sync_env.pipelines_dir.exists()
    assert {r.method for r in sync_env.emulator.requests} == {"GET"}
    assert "PLAN (dry run)" in sync_env.run(example("duckdb_customers.toml"), "--plan").out


def test_a_plan_that_finds_the_run_would_fail_on_rejects_exits_1_saying_so(
    sync_env: SyncEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    build(sync_env.workdir / "warehouse.duckdb", rows=CUSTOMERS)  # it has broken rows
    monkeypatch.setenv("DESTINATION__SENDGRID__FAIL_ON_REJECTS", "0")

    planned = sync_env.run(example("duckdb_customers.toml"), "--plan", "--json")
    loaded = sync_env.run(example("duckdb_customers.toml"), "--json")

    assert (planned.code, loaded.code) == (1, 1)
    document = planned.json()
    assert document["ok"] is False
    assert document["error"].startswith("The load would fail: it would send the good rows")
    assert "more than fail_on_rejects allows" in document["error"]
    (table,) = document["tables"]
    assert table["over_rejects_limit"] == loaded.json()["totals"]["rejected"] > 0
    assert table["jobs"] == {} and document["totals"]["jobs"] == {}  # no stand-in jobs
