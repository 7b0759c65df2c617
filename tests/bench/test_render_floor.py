"""The render floor (``benchmarks.floor``) does the work it claims, and no more than our path."""

from __future__ import annotations

import hashlib
import json

import duckdb

from benchmarks import data
from benchmarks.floor import floor_sql, render_floor
from benchmarks.throughput import batches_of


def test_the_floor_hashes_each_contact_json_as_our_path_keeps_its_hashes() -> None:
    batch = batches_of(300)[0]
    con = duckdb.connect()
    con.register("b", batch)
    rendered = con.sql(floor_sql("b")).to_arrow_table()
    assert rendered.num_rows == batch.num_rows
    for text, digest in zip(
        rendered["contact_json"].to_pylist(), rendered["content_hash"].to_pylist(), strict=True
    ):
        contact = json.loads(text)
        assert set(contact["custom_fields"]) == set(data.CUSTOM_IDS.values())
        # The first 64 bits of the MD5, as a number: what the state keeps of our JSON.
        assert digest == int.from_bytes(hashlib.md5(text.encode()).digest()[:8], "big")


def test_the_floor_renders_every_row_of_every_batch() -> None:
    batches = batches_of(40_000)
    found = render_floor(batches)
    assert found["rows"] == sum(b.num_rows for b in batches)
    assert found["seconds"] > 0 and found["cpu_seconds"] > 0
