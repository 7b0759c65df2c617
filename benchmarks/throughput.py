"""Measurements 1, 2 and 6 (in process): our path and the baseline over the same batches.

Contract: ``measure(rows, repeat=..., workdir=...)`` generates ``rows`` contacts once, slices
them into ``BATCH_ROWS`` batches (as the loader reads them) and, ``repeat`` times, runs each
path twice on a fresh state: a first pass (empty state: everything is new) and a second pass
over the same rows (everything unchanged, 0 bodies). The two paths alternate which goes
first, and each repeat's ratio is taken from the same repeat, so load on the machine moves
both sides alike. It returns a JSON-able dict: per-repeat figures and their medians, plus
request efficiency (requests made versus the minimum). ``check_equivalence(rows)`` runs both
paths on a small table and compares the contacts they would send and the rows they refuse.
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from benchmarks import data
from benchmarks.baseline import BaselinePath
from benchmarks.ours import OursPath, PassStats
from sendgrid_destination.contact_model import MAX_CONTACTS_PER_REQUEST, MAX_REQUEST_BYTES

BATCH_ROWS = 100_000  # SendGridConfiguration.read_batch_rows


def batches_of(rows: int, seed: int = 42) -> list[pa.RecordBatch]:
    """The generated table, as the loader would read it."""
    batches: list[pa.RecordBatch] = data.table(rows, seed).to_batches(max_chunksize=BATCH_ROWS)
    return batches


def minimum_requests(body_bytes: int, contacts: int, max_bytes: int = MAX_REQUEST_BYTES) -> int:
    """The fewest requests that could carry these bytes and contacts (both limits)."""
    if contacts == 0:
        return 0
    return max(math.ceil(body_bytes / max_bytes), math.ceil(contacts / MAX_CONTACTS_PER_REQUEST))


def efficiency(stats: PassStats) -> dict[str, int]:
    minimum = minimum_requests(stats.body_bytes, stats.contacts)
    return {
        "requests": stats.requests,
        "minimum": minimum,
        "extra": stats.requests - minimum,
        "body_bytes": stats.body_bytes,
        "contacts": stats.contacts,
    }


def _pass_figures(stats: PassStats) -> dict[str, Any]:
    return {
        "rows": stats.rows,
        "seconds": stats.seconds,
        "path_seconds": stats.path_seconds,
        "rows_per_second": stats.rows / stats.path_seconds if stats.path_seconds else 0.0,
        "requests": stats.requests,
        "contacts": stats.contacts,
        "body_bytes": stats.body_bytes,
        "rejected_rows": stats.rejected_rows,
        "stage_seconds": dict(stats.stage_seconds),
    }


def _run_ours(batches: Sequence[pa.RecordBatch], workdir: Path) -> dict[str, Any]:
    state = workdir / "throughput-state.duckdb"
    state.unlink(missing_ok=True)
    with OursPath(state) as ours:
        first = ours.run_pass(batches)
        second = ours.run_pass(batches)
    state.unlink(missing_ok=True)
    return {
        "first": _pass_figures(first),
        "unchanged": _pass_figures(second),
        "efficiency": efficiency(first),
    }


def _run_baseline(batches: Sequence[pa.RecordBatch], second_pass: bool) -> dict[str, Any]:
    base = BaselinePath(data.CUSTOM_IDS)
    first = base.run_pass(batches)
    out: dict[str, Any] = {"first": _pass_figures(first), "efficiency": efficiency(first)}
    if second_pass:
        out["unchanged"] = _pass_figures(base.run_pass(batches))
    return out


def _repeat_once(
    index: int,
    batches: Sequence[pa.RecordBatch],
    workdir: Path,
    with_baseline: bool,
    baseline_second: bool,
) -> dict[str, Any]:
    steps: list[tuple[str, Callable[[], dict[str, Any]]]] = [
        ("ours", lambda: _run_ours(batches, workdir))
    ]
    if with_baseline:
        steps.append(("baseline", lambda: _run_baseline(batches, baseline_second)))
    if index % 2:
        steps.reverse()
    result: dict[str, Any] = {name: step() for name, step in steps}
    if with_baseline:
        ours_rate = result["ours"]["first"]["rows_per_second"]
        base_rate = result["baseline"]["first"]["rows_per_second"]
        result["ratio"] = ours_rate / base_rate if base_rate else None
    return result


def measure(
    rows: int,
    *,
    repeat: int,
    workdir: Path,
    baseline_repeat: int | None = None,
    baseline_second_pass: bool = True,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Both paths at ``rows`` rows; see the module docstring."""
    batches = batches_of(rows)
    baseline_runs = repeat if baseline_repeat is None else baseline_repeat
    runs = []
    for index in range(repeat):
        runs.append(
            _repeat_once(index, batches, workdir, index < baseline_runs, baseline_second_pass)
        )
        progress(f"  throughput {rows:,} rows: repeat {index + 1}/{repeat}: {_brief(runs[-1])}")
    return {"rows": rows, "repeat": repeat, "runs": runs, "median": _medians(runs)}


def _brief(run: dict[str, Any]) -> str:
    ours = run["ours"]["first"]["rows_per_second"]
    text = f"ours {ours:,.0f} rows/s"
    if "baseline" in run:
        text += f", baseline {run['baseline']['first']['rows_per_second']:,.0f} rows/s"
        text += f", ratio {run['ratio']:.1f}x"
    return text


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def pick(*path: str) -> float | None:
        found: list[float | None] = []
        for run in runs:
            node: Any = run
            for key in path:
                node = node.get(key) if isinstance(node, dict) else None
            found.append(node)
        return _median(found)

    stages = {s for run in runs for s in run["ours"]["first"]["stage_seconds"]}
    return {
        "ours_rows_per_second": pick("ours", "first", "rows_per_second"),
        "ours_seconds": pick("ours", "first", "path_seconds"),
        "ours_record_seconds": pick("ours", "first", "stage_seconds", "record"),
        "ours_unchanged_rows_per_second": pick("ours", "unchanged", "rows_per_second"),
        "ours_unchanged_seconds": pick("ours", "unchanged", "path_seconds"),
        "baseline_rows_per_second": pick("baseline", "first", "rows_per_second"),
        "baseline_seconds": pick("baseline", "first", "path_seconds"),
        "baseline_unchanged_rows_per_second": pick("baseline", "unchanged", "rows_per_second"),
        "ratio": _median([run.get("ratio") for run in runs]),
        "ours_stage_seconds": {s: pick("ours", "first", "stage_seconds", s) for s in stages},
        "ours_efficiency": runs[0]["ours"]["efficiency"],
        "baseline_efficiency": next(
            (run["baseline"]["efficiency"] for run in runs if "baseline" in run), None
        ),
    }


def check_equivalence(rows: int) -> dict[str, Any]:
    """Both paths on ``rows`` rows: same contacts (as parsed JSON), same refused rows?"""
    batches = batches_of(rows)
    ours_contacts: list[str] = []
    base_contacts: list[str] = []
    with tempfile.TemporaryDirectory() as tmp, OursPath(Path(tmp) / "eq.duckdb") as ours:
        ours_stats = ours.run_pass(batches, _collector(ours_contacts), keep_rejects=True)
    base_stats = BaselinePath(data.CUSTOM_IDS).run_pass(
        batches, _collector(base_contacts), keep_rejects=True
    )
    return {
        "rows": rows,
        "contacts_ours": len(ours_contacts),
        "contacts_baseline": len(base_contacts),
        "same_contacts": sorted(ours_contacts) == sorted(base_contacts),
        "rejected_ours": ours_stats.rejected_rows,
        "rejected_baseline": base_stats.rejected_rows,
        "rejected_expected": data.bad_row_count(rows),
        "same_rejected_rows": sorted(ours_stats.rejected_row_numbers)
        == sorted(base_stats.rejected_row_numbers),
    }


def _collector(into: list[str]) -> Callable[[bytes, int], None]:
    def collect(body: bytes, count: int) -> None:
        contacts = json.loads(body)["contacts"]
        assert len(contacts) == count
        into.extend(json.dumps(c, sort_keys=True) for c in contacts)

    return collect
