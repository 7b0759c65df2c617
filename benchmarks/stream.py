"""One real sync in this process, reporting its own time and peak memory (measurements 3-5, 7).

Run by ``benchmarks.sync`` in a fresh subprocess per sync, against an emulator living in the
parent process, so the memory measured is the pipeline's alone::

    python -m benchmarks.stream --warehouse W.duckdb --rows N --base-url URL --api-key KEY \\
        --state S.duckdb --workdir DIR [--bulk never|auto|always] [--out result.json]
    python -m benchmarks.stream --destination duckdb --warehouse W.duckdb --rows N --workdir DIR

The second form is the reference the issue-16 targets compare with: dlt loading the same source
into its own ``duckdb`` destination (a file in ``--workdir``), nothing of this package involved.

It ``chdir``s into ``--workdir`` (so no ``.dlt/config.toml`` of the repository is read), runs
``dlt.pipeline(...).run(customers_source(W))`` from ``pipelines.warehouse_to_sendgrid`` into
``sendgrid(...)`` with the benchmark mapping (and ``bulk``: ``never`` unless asked, so the
upsert path is what the syncs measure), and writes one JSON object (to ``--out``, else
stdout): wall time and CPU seconds of ``pipeline.run`` (this process, every thread); dlt's
extract, normalize and load step durations from ``last_trace``; peak RSS (``VmHWM`` of
``/proc/self/status``: ``ru_maxrss`` is not used because Linux carries the parent's RSS at
fork over the exec into it) and the peak of a psutil sampler within each step; the
destination's run summary (rows read, new/changed/unchanged, requests, bytes); and, from
``benchmarks.instrument``, where the load step spent its time (``load_breakdown``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

STEPS = ("extract", "normalize", "load")


class RssSampler:
    """Samples this process's RSS every ``interval`` seconds on a daemon thread."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._process = psutil.Process()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            self.samples.append((time.time(), int(self._process.memory_info().rss)))
            if self._stop.wait(self.interval):
                return

    def peak_between(self, start: float, end: float) -> int | None:
        inside = [rss for at, rss in self.samples if start <= at <= end]
        return max(inside) if inside else None


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", type=Path, required=True)
    parser.add_argument("--rows", type=int, required=True, help="rows in the warehouse table")
    parser.add_argument(
        "--destination", choices=("sendgrid", "duckdb"), default="sendgrid",
        help="sendgrid (default), or duckdb: dlt's own destination, the reference",
    )  # fmt: skip
    parser.add_argument("--base-url", help="the emulator (sendgrid only)")
    parser.add_argument("--api-key", help="sendgrid only")
    parser.add_argument("--state", type=Path, help="the state file (sendgrid only)")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--pipeline-name", default="bench_sync")
    parser.add_argument("--read-batch-rows", type=int, default=100_000)
    parser.add_argument(
        "--bulk", choices=("auto", "never", "always"), default="never",
        help="the destination's bulk setting (default never: the upsert path)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path)
    return parser.parse_args(argv)


def peak_rss() -> int:
    """This process's peak RSS in bytes: VmHWM where there is /proc, else ru_maxrss."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _step_times(trace: Any, sampler: RssSampler) -> dict[str, dict[str, float | None]]:
    steps: dict[str, dict[str, float | None]] = {}
    for step in getattr(trace, "steps", None) or []:
        if step.step not in STEPS or step.finished_at is None:
            continue
        start, end = step.started_at.timestamp(), step.finished_at.timestamp()
        peak = sampler.peak_between(start, end)
        steps[step.step] = {"seconds": end - start, "peak_rss_bytes": peak}
    return steps


def _summary(pipeline: Any, info: Any) -> dict[str, Any]:
    from sendgrid_destination import run_summaries

    found = run_summaries(pipeline, info)
    return found[0].as_dict() if found else {}


def _cpu_seconds() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def _destination(args: argparse.Namespace) -> Any:
    if args.destination == "duckdb":
        import dlt

        return dlt.destinations.duckdb(str(args.workdir / "reference.duckdb"))
    from benchmarks.data import MAPPING
    from sendgrid_destination import sendgrid

    return sendgrid(
        api_key=args.api_key,
        base_url=args.base_url,
        mapping=MAPPING,
        state_path=str(args.state),
        job_poll_interval=0.05,
        # The emulator applies a 1M-row CSV file in about a minute of Python on these cores:
        # a 10M bulk load's jobs outlast the default 600 s, which would leave them pending.
        job_wait_timeout=3600.0,
        read_batch_rows=args.read_batch_rows,
        bulk=args.bulk,
    )


def sync(args: argparse.Namespace) -> dict[str, Any]:
    """The sync itself; returns the JSON-able result."""
    import dlt

    from benchmarks.instrument import Timers, install
    from pipelines.warehouse_to_sendgrid import customers_source

    timers = install() if args.destination == "sendgrid" else Timers()
    pipeline = dlt.pipeline(
        args.pipeline_name, destination=_destination(args), pipelines_dir=str(args.workdir / "dlt")
    )
    rss_before = int(psutil.Process().memory_info().rss)
    with RssSampler() as sampler:
        started, cpu_before = time.perf_counter(), _cpu_seconds()
        info = pipeline.run(customers_source(str(args.warehouse.resolve())))
        wall, cpu = time.perf_counter() - started, _cpu_seconds() - cpu_before
    return {
        "rows": args.rows,
        "destination": args.destination,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "steps": _step_times(pipeline.last_trace, sampler),
        "rss_before_run_bytes": rss_before,
        "peak_rss_bytes": peak_rss(),
        "ru_maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_rss_sampled_bytes": max((rss for _, rss in sampler.samples), default=None),
        "summary": _summary(pipeline, info) if args.destination == "sendgrid" else {},
        "load_breakdown": timers.as_dict(),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.destination == "sendgrid" and None in (args.base_url, args.api_key, args.state):
        raise SystemExit("--base-url, --api-key and --state are needed for sendgrid")
    args.state = args.state.resolve() if args.state else None
    args.warehouse = args.warehouse.resolve()
    args.out = args.out.resolve() if args.out else None
    os.chdir(args.workdir)
    args.workdir = Path.cwd()
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    result = json.dumps(sync(args), indent=1)
    if args.out:
        args.out.write_text(result)
    else:
        sys.stdout.write(result + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
