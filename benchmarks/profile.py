"""Where our path spends its time: the profile behind BENCHMARKS.md's "What limits it".

    python -m benchmarks.profile [--rows 1000000] [--top 15]

Contract: prints, for ``rows`` generated contacts, (1) DuckDB ``EXPLAIN ANALYZE`` of the
compiled queries (``ContactSql``: the check the plan runs, the render) over the whole table,
in a state store's workspace: each operator's time (CPU time summed over DuckDB's threads)
and what it projects; (2) cProfile's top functions of one first pass of ``OursPath``.
Measures only; writes nothing but a temporary state file.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import re
import tempfile
from pathlib import Path

import pyarrow as pa

from benchmarks import data
from benchmarks.ours import OursPath, bindings
from benchmarks.throughput import BATCH_ROWS
from sendgrid_destination.arrow_utils import chunked, with_row_numbers
from sendgrid_destination.contact_sql import ContactSql
from sendgrid_destination.state import StateStore

_OPERATOR = re.compile(r"╭─\s*([A-Za-z_ ]+?)\s*─")
_TIMING = re.compile(r"([\d,]+) rows\s+([\d.]+)(m?s)")


def explain(table: pa.Table, query: str) -> list[tuple[str, float, str]]:
    """(operator, seconds, first projections) for each operator of one of the transform's
    queries: ``check`` or ``render``."""
    sql = ContactSql(bindings(table.schema))
    compiled = sql.check("src") if query == "check" else sql.render("src")
    with (
        tempfile.TemporaryDirectory() as tmp,
        StateStore.open(Path(tmp) / "p.duckdb") as store,
        store.workspace() as cur,
    ):
        cur.register("src", chunked(with_row_numbers(table, 0)))
        plan = str(cur.sql("EXPLAIN ANALYZE " + compiled).fetchall()[0][1])
    found = []
    for block in plan.split("╭─")[1:]:
        name = _OPERATOR.match("╭─" + block)
        timing = _TIMING.search(block)
        if name is None or timing is None:
            continue
        seconds = float(timing.group(2)) / (1000 if timing.group(3) == "ms" else 1)
        projected = re.findall(r"Projections: ([^│]*)", block)
        found.append((name.group(1), seconds, projected[0].strip()[:50] if projected else ""))
    return found


def python_profile(table: pa.Table, top: int) -> None:
    batches = table.to_batches(max_chunksize=BATCH_ROWS)
    with tempfile.TemporaryDirectory() as tmp, OursPath(Path(tmp) / "p.duckdb") as ours:
        profiler = cProfile.Profile()
        profiler.enable()
        ours.run_pass(batches)
        profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    table = data.table(args.rows)
    for query in ("check", "render"):
        operators = explain(table, query)
        total = sum(seconds for _, seconds, _ in operators) or 1.0
        print(f"EXPLAIN ANALYZE of the {query} over {args.rows:,} rows (operator CPU time):")
        for name, seconds, projected in operators:
            print(f"  {name:<12} {seconds:7.2f} s {seconds / total:5.0%}  {projected}")
    print("\ncProfile of one first pass of OursPath:")
    python_profile(table, args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
