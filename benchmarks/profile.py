"""Where our path spends its time: the profile behind BENCHMARKS.md's "What limits it".

    python -m benchmarks.profile [--rows 1000000] [--top 15]

Contract: prints, for ``rows`` generated contacts, (1) DuckDB ``EXPLAIN ANALYZE`` of the
transform's two queries (the check the plan runs, the render) over the whole table: each
operator's time (CPU time summed over DuckDB's threads) and what it projects; (2) wall and
CPU time of ``Transformer.run`` over 100,000-row batches, with and without splitting each
batch into 25,000-row chunks (DuckDB gives one thread to one Arrow batch); (3) cProfile's
top functions of one first pass of ``OursPath``. Measures only; writes nothing.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import re
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from benchmarks import data
from benchmarks.ours import OursPath, bindings
from benchmarks.throughput import BATCH_ROWS
from sendgrid_destination.transform import ROW_COLUMN, Transformer, normalize_arrow, utc_cursor

_OPERATOR = re.compile(r"╭─\s*([A-Za-z_ ]+?)\s*─")
_TIMING = re.compile(r"([\d,]+) rows\s+([\d.]+)(m?s)")


def explain(table: pa.Table, query: str) -> list[tuple[str, float, str]]:
    """(operator, seconds, first projections) for each operator of one of the transform's
    queries: ``check`` or ``render``."""
    transformer = Transformer(bindings(table.schema))
    cur = utc_cursor(transformer._con)
    rows = pa.array(np.arange(table.num_rows, dtype=np.int64))
    cur.register("src", normalize_arrow(table).append_column(ROW_COLUMN, rows))
    sql = transformer._sql if query == "check" else transformer._render_sql
    plan = str(cur.sql("EXPLAIN ANALYZE " + sql).fetchall()[0][1])
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


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(work: Callable[[], object]) -> tuple[float, float]:
    cpu, wall = _cpu(), time.perf_counter()
    work()
    return time.perf_counter() - wall, _cpu() - cpu


def batch_split(table: pa.Table) -> dict[str, tuple[float, float]]:
    """(wall, cpu) of Transformer.run over 100k batches, whole or as 25k-row chunks."""
    transformer = Transformer(bindings(table.schema))
    superseded = transformer.superseded_rows(table)
    batches = table.to_batches(max_chunksize=BATCH_ROWS)

    def whole() -> None:
        for i, b in enumerate(batches):
            transformer.run(b, i * BATCH_ROWS, superseded)

    def chunked() -> None:
        for i, b in enumerate(batches):
            parts = pa.Table.from_batches([b]).to_batches(max_chunksize=BATCH_ROWS // 4)
            transformer.run(pa.Table.from_batches(parts), i * BATCH_ROWS, superseded)

    return {"100k batches": _timed(whole), "100k batches as 4 chunks": _timed(chunked)}


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
    print(f"\nTransformer.run over {args.rows:,} rows:")
    for label, (wall, cpu) in batch_split(table).items():
        print(f"  {label:<26} wall {wall:6.2f} s  cpu {cpu:6.2f} s  {args.rows / wall:,.0f} rows/s")
    print("\ncProfile of one first pass of OursPath:")
    python_profile(table, args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
