"""``make bench``: every measurement of issues 5 and 16 in one run, written to BENCHMARKS.md.

    python -m benchmarks.run [--sizes 100000,1000000,10000000] [--repeat 3] [--quick]
                             [--report BENCHMARKS.md] [--results-dir benchmarks/results]
                             [--big-rows 1000000 --big-repeat 1] [--bulk auto|always|none]

Contract: runs, in order, the equivalence check of our path and the two baselines (it raises
``EquivalenceError`` if they do different work), the in-process throughput of the three paths
at every size (measurements 1, 2, 6), the rerun floor at ``--rerun-rows`` (``rerun_floor``:
what the report's "least possible" for the unchanged rerun adds to dlt's own steps), and the
dlt syncs into the emulator at
every size (3, 4, 5, 7; reruns at ``--rerun-rows``, 1M by default, else the largest size),
each size's first sync once more with ``bulk`` = ``--bulk`` (CSV imports; issue 16.7).
It writes ``<results-dir>/latest.json`` (every repeat's raw figures),
``<results-dir>/throughput_memory.png`` and the report, and returns 0. No timing is asserted
here: targets are judged in the report (``--render-only`` redoes the report and chart from the
saved JSON). ``--quick`` is a small run for a first look. Sizes
above ``--big-rows`` run ``--big-repeat`` times (the 10M runs take minutes each), and the
baselines run there once, first pass only.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import chart, machine, report, rerun_floor, sync, throughput

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SIZES = (100_000, 1_000_000, 10_000_000)
QUICK_SIZES = (10_000, 100_000)
EQUIVALENCE_ROWS = 50_000


def _sizes(text: str) -> list[int]:
    return sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_sizes, help="rows, comma-separated (default 100k,1M,10M)")
    parser.add_argument("--repeat", type=int, help="repeats per measurement (default 3)")
    parser.add_argument("--quick", action="store_true", help="10k and 100k rows, 1 repeat")
    parser.add_argument("--rerun-rows", type=int, help="size of the rerun syncs (default 1M)")
    parser.add_argument("--sync-sizes", type=_sizes, help="dlt sync sizes (default: --sizes)")
    parser.add_argument(
        "--big-rows", type=int, default=1_000_000,
        help="above this size: --big-repeat runs, and the baseline once, first pass only",
    )  # fmt: skip
    parser.add_argument("--big-repeat", type=int, default=1, help="repeats above --big-rows")
    parser.add_argument(
        "--bulk", choices=("auto", "always", "none"), default="auto",
        help="the bulk setting of the extra first sync at each size (none: no such sync)",
    )  # fmt: skip
    parser.add_argument("--report", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--workdir", type=Path, help="scratch directory (default: a temp dir)")
    parser.add_argument(
        "--render-only", action="store_true",
        help="measure nothing: rewrite the report and chart from <results-dir>/latest.json",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.sizes = args.sizes or list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    args.repeat = args.repeat or (1 if args.quick else 3)
    args.sync_sizes = args.sync_sizes or args.sizes
    if args.rerun_rows is None:
        args.rerun_rows = 1_000_000 if 1_000_000 in args.sync_sizes else max(args.sync_sizes)
    if args.rerun_rows not in args.sync_sizes:
        args.sync_sizes = sorted({*args.sync_sizes, args.rerun_rows})
    return args


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _repeats(args: argparse.Namespace) -> Callable[[int], int]:
    def repeats(rows: int) -> int:
        return int(args.big_repeat if rows > args.big_rows else args.repeat)

    return repeats


def _throughput(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    found = []
    for rows in args.sizes:
        big = rows > args.big_rows
        _log(f"throughput at {rows:,} rows")
        measured = throughput.measure(
            rows, repeat=_repeats(args)(rows), workdir=workdir, baseline_repeat=1 if big else None,
            baseline_second_pass=not big, progress=_log,
        )  # fmt: skip
        found.append(measured)
    return found


def collect(args: argparse.Namespace, workdir: Path, command: str) -> dict[str, Any]:
    """Every measurement; the results dict that the report and the chart read."""
    results: dict[str, Any] = {
        "machine": machine.facts(),
        "config": {
            "command": command,
            "sizes": args.sizes,
            "sync_sizes": args.sync_sizes,
            "rerun_rows": args.rerun_rows,
            "repeat": args.repeat,
            "big_rows": args.big_rows,
            "big_repeat": args.big_repeat,
            "batch_rows": throughput.BATCH_ROWS,
            "bulk": args.bulk,
        },
    }
    _log("equivalence of our path and the two baselines")
    results["equivalence"] = throughput.check_equivalence(min(EQUIVALENCE_ROWS, max(args.sizes)))
    results["throughput"] = _throughput(args, workdir)
    _log(f"rerun floor at {args.rerun_rows:,} rows")
    results["rerun_floor"] = rerun_floor.measure(args.rerun_rows, args.repeat)
    _log(f"dlt syncs at {', '.join(f'{n:,}' for n in args.sync_sizes)} rows")
    results["sync"] = sync.measure(
        args.sync_sizes, rerun_rows=args.rerun_rows, repeat=_repeats(args), workdir=workdir,
        bulk=None if args.bulk == "none" else args.bulk, progress=_log,
    )  # fmt: skip
    return results


def write(results: dict[str, Any], report_path: Path, results_dir: Path) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "latest.json").write_text(json.dumps(results, indent=1) + "\n")
    chart.draw(results, results_dir / "throughput_memory.png")
    report_path.write_text(report.render(results))


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    args = parse(raw)
    if args.render_only:
        results = json.loads((args.results_dir / "latest.json").read_text())
        write(results, args.report, args.results_dir)
        _log(f"rewrote {args.report} from {args.results_dir / 'latest.json'}")
        return 0
    command = shlex.join(["python", "-m", "benchmarks.run", *raw])
    started = time.perf_counter()
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
        results = collect(args, args.workdir, command)
    else:
        with tempfile.TemporaryDirectory(prefix="sendgrid-bench-") as tmp:
            results = collect(args, Path(tmp), command)
    results["total_seconds"] = time.perf_counter() - started
    write(results, args.report, args.results_dir)
    for verdict in report.targets(results):
        _log(f"{verdict.mark:>12}: {verdict.target}: {verdict.measured}")
    _log(f"wrote {args.report} and {args.results_dir}/ in {results['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
