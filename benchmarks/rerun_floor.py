"""The rerun floor of issue 16.4: what an unchanged rerun checked against a state must at least
do, with nothing of ours on top, beside our own plan of the same rows.

    python -m benchmarks.rerun_floor [--rows 1000000] [--repeat 3]

Contract: writes the benchmark's ``rows`` contacts (``throughput.batches_of``) to a parquet
file, as dlt hands a job file over, and records them in a state file with a first pass of
``OursPath``. Then, ``repeat`` times and in turns, it times (wall and CPU seconds, medians):

* ``floor``: one DuckDB query over the state's database, under the state's memory cap: read
  the parquet file natively (every core, no Python), key each row by its lower-cased email,
  digest its mapped values (text through MD5, as any digest that misses no edit must),
  join the state's contacts on (stream, key) and count the rows whose stored fingerprint
  equals the digest. No cleaning, no checks, no last row per key: a lower bound of any rerun
  that compares every row with a state;
* ``plan``: ``Plan.build`` over the same file (``SourceRows.from_file``), which finds every row
  unchanged (its summary's ``to_render`` must be 0).

Prints one JSON object. Measures only; writes nothing but temporary files.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from benchmarks import data
from benchmarks.ours import OursPath, bindings
from benchmarks.stats import mark
from benchmarks.throughput import BATCH_ROWS, batches_of
from sendgrid_destination.contact_sql import ContactSql, first_64_bits, ident, literal
from sendgrid_destination.plan import Plan
from sendgrid_destination.source_rows import SourceRows


def floor_sql(path: Path, columns: list[str], text: list[str]) -> str:
    """The floor's query; ``text``: the columns of text, which a digest that tells every
    change apart must take through MD5 (DuckDB's ``hash`` of strings misses edits of the last
    byte of 8-byte blocks: ``contact_sql._fingerprint``); the others go through ``hash``."""
    packed = ", ".join(f"{ident(c)} := {ident(c)}" for c in text)
    digest = first_64_bits(f"md5(CAST(to_json(struct_pack({packed})) AS VARCHAR))")
    others = "".join(f", {ident(c)}" for c in columns if c not in text)
    rows = (
        f"SELECT 'email:' || lower(email) AS k, hash({digest}{others}) AS f "
        f"FROM read_parquet({literal(str(path))})"
    )
    return (
        f"SELECT count(*) FILTER (WHERE c.fingerprint = p.f) FROM ({rows}) p "
        f"JOIN contacts c ON c.stream = {literal(data.STREAM)} AND c.contact_key = p.k"
    )


def measure(rows: int, repeat: int) -> dict[str, Any]:
    batches = batches_of(rows)
    columns = batches[0].schema.names
    times: dict[str, list[tuple[float, float]]] = {"floor": [], "plan": []}
    with tempfile.TemporaryDirectory() as tmp, OursPath(Path(tmp) / "s.duckdb") as ours:
        path = Path(tmp) / "job.parquet"
        # Row groups of a batch, as a job file of many batches has: DuckDB reads one group per
        # thread (one group of 1M rows kept the floor on one core).
        pq.write_table(pa.Table.from_batches(batches), path, row_group_size=BATCH_ROWS)
        ours.run_pass(batches)
        sql = ContactSql(bindings(batches[0].schema))
        schema = batches[0].schema
        text = [c for c in columns if pa.types.is_string(schema.field(c).type)]
        for attempt in range(repeat):
            started = mark()
            with ours.store.workspace() as cur:
                cur.execute(floor_sql(path, columns, text)).fetchall()
            done = mark()
            times["floor"].append((done[0] - started[0], done[1] - started[1]))
            source = SourceRows.from_file(str(path), columns, BATCH_ROWS)
            with Plan.build(ours.store, sql, data.STREAM, f"floor-{attempt}", source) as plan:
                finished = mark()
                assert plan.counts.to_render == 0, "the rerun must find every row unchanged"
            times["plan"].append((finished[0] - done[0], finished[1] - done[1]))
    medians = {
        name: {
            "seconds": statistics.median(t[0] for t in found),
            "cpu_seconds": statistics.median(t[1] for t in found),
        }
        for name, found in times.items()
    }
    return {
        "rows": rows,
        "repeat": repeat,
        **medians,
        "plan_over_floor": medians["plan"]["seconds"] / medians["floor"]["seconds"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print(json.dumps(measure(args.rows, args.repeat), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
