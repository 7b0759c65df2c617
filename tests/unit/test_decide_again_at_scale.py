"""Held-back contacts decided again at scale: the state's DuckDB sees their keys and
fingerprints only, never their JSON, so a million of them fit its memory cap."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from benchmarks.ours import _InMemoryRows, bindings
from benchmarks.throughput import batches_of
from sendgrid_destination.contact_sql import ContactSql
from sendgrid_destination.plan import Plan
from sendgrid_destination.schemas import RENDERED
from sendgrid_destination.state import StateStore


@pytest.mark.slow
def test_a_million_held_back_contacts_of_400_bytes_are_decided_again_within_the_cap(
    tmp_path: Path,
) -> None:
    n, path = 1_000_000, tmp_path / "state.duckdb"
    jobs = n // 30_000 + 1
    with StateStore.open(path) as store:  # every contact's previous send still pending
        store.con.execute(
            "INSERT INTO requests SELECT 'job' || s, 'r1', 'contacts', 30000, 6000000, now(), "
            f"s FROM range({jobs}) t(s)"
        )
        store.con.execute(
            "INSERT INTO jobs SELECT 'job' || s, 'r1', 'contacts', 'pending', 30000, 0, 0, 0, "
            f"NULL, NULL, now(), NULL, NULL FROM range({jobs}) t(s)"
        )
        store.con.execute(
            "INSERT INTO contacts (stream, contact_key, fingerprint, seq, content_md5, "
            "first_seq) SELECT 'contacts', 'email:u' || i || '@x.com', hash(i), i // 30000, "
            f"hash(i), i // 30000 FROM range({n}) t(i)"
        )
    held = duckdb.sql(
        "SELECT i AS row_number, 'email:u' || i || '@x.com' AS contact_key, "
        "hash(i + 1) AS fingerprint, false AS is_new, NULL::UBIGINT AS prev_hash, "
        "NULL AS prev_sha256, true AS pending, false AS retry, NULL::UBIGINT AS refused_hash, "
        "repeat('x', 400) || i AS contact_json, hash(i + 2) AS content_hash, NULL AS ids, "
        f"'' AS list_scope FROM range({n} - 1, -1, -1) t(i)"  # in reverse row order
    ).to_arrow_table()
    held = held.select(RENDERED.names).cast(RENDERED)

    with StateStore.open(path) as store:
        # Under the cap (96 of 160 MB): the held-back JSON (400 MB) never passes through DuckDB
        # (the JSON sorted in DuckDB failed at this limit; keys and fingerprints pass at 48 MB).
        store.con.execute("SET memory_limit = '96MB'")
        batches = batches_of(10)
        sql = ContactSql(bindings(batches[0].schema))
        with Plan(store, sql, "contacts", "r2", _InMemoryRows(batches)) as plan:
            decided = plan.decide_again(held)

    assert decided.to_send.num_rows == n and decided.unchanged.num_rows == 0
    assert decided.to_send["row_number"][0].as_py() == 0  # back in row order
    assert decided.to_send["pending"].to_pylist()[:3] == [True, True, True]
