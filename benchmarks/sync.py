"""Measurements 3, 4, 5 and 7: real dlt syncs, each in a fresh child, into an emulator here.

Contract: ``hosted_emulator()`` starts an ``Emulator`` in this (the parent) process, with
``retain_contacts=False`` when the emulator accepts it (it then validates and answers every
upsert but keeps no contact data), and defines the three custom fields. ``run_sync`` runs
``python -m benchmarks.stream`` in a subprocess against it and adds what the emulator saw
(upsert requests, their bytes and contacts). ``measure(sizes, ...)`` builds one DuckDB
warehouse per size and, ``repeat`` times on a fresh state file: a first sync (everything new;
its peak RSS is measurement 5, its step split measurement 7 at the rerun size), then at
``rerun_rows`` an unchanged rerun (3) and a rerun where ``changed_fraction`` of the contacts
changed (4), and the reference for issue 16's targets 4 and 5: dlt loading the same
warehouse into its own duckdb destination (``dlt_duckdb``; wall and CPU seconds of its
``pipeline.run``); ``repeat`` may depend on the size. These syncs set ``bulk = "never"``: they
measure the upsert path. Unless ``bulk`` is None, each repeat then makes the same first sync
on a fresh state with that ``bulk`` setting (``"auto"`` by default, the destination's:
CSV imports once a load has more than 200,000 new contacts), and at ``rerun_rows`` its
unchanged rerun (``bulk_unchanged``); the emulator's imports, files and their bytes are
counted apart (``imports``). Returns JSON-able per-run figures and medians.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks import data
from benchmarks.throughput import minimum_requests
from sendgrid_destination.emulator import Emulator

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "SG.bench-key"
UPSERT_ROUTE = "PUT /v3/marketing/contacts"
IMPORT_ROUTE = "PUT /v3/marketing/contacts/imports"
UPLOAD_ROUTE = "PUT /_uploads/{job_id}"
CHILD_TIMEOUT_SECONDS = 4 * 3600


@contextmanager
def hosted_emulator() -> Iterator[Emulator]:
    """An emulator for benchmarks, keeping no contacts if it can (see the module docstring)."""
    try:
        emulator = Emulator(api_key=API_KEY, job_polls_until_done=0, retain_contacts=False)
    except TypeError:  # an emulator without the benchmark mode: it keeps every contact
        emulator = Emulator(api_key=API_KEY, job_polls_until_done=0)
    with emulator:
        for name, field_type in data.CUSTOM_TYPES.items():
            emulator.add_custom_field(name, field_type)
        yield emulator


def run_sync(
    emulator: Emulator,
    warehouse: Path,
    rows: int,
    state: Path,
    workdir: Path,
    bulk: str = "never",
) -> dict[str, Any]:
    """One sync in a child process; its own report plus what the emulator recorded: upserts
    and CSV imports."""
    seen = len(emulator.requests)
    out = workdir / "stream-result.json"
    command = [
        sys.executable, "-m", "benchmarks.stream",
        "--warehouse", str(warehouse), "--rows", str(rows),
        "--base-url", emulator.base_url, "--api-key", API_KEY,
        "--state", str(state), "--workdir", str(workdir), "--out", str(out), "--bulk", bulk,
    ]  # fmt: skip
    result = _child(command, workdir, out)
    result["emulator"] = _upserts(emulator, seen)
    result["imports"] = _imports(emulator, seen)
    return result


def run_reference(warehouse: Path, rows: int, workdir: Path) -> dict[str, Any]:
    """dlt loading the same source into its own duckdb destination, in a child process."""
    out = workdir / "reference-result.json"
    command = [
        sys.executable, "-m", "benchmarks.stream", "--destination", "duckdb",
        "--warehouse", str(warehouse), "--rows", str(rows),
        "--workdir", str(workdir), "--out", str(out), "--pipeline-name", "bench_reference",
    ]  # fmt: skip
    return _child(command, workdir, out)


def _child(command: list[str], workdir: Path, out: Path) -> dict[str, Any]:
    out.unlink(missing_ok=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT), RUNTIME__DLTHUB_TELEMETRY="false")
    done = subprocess.run(
        command, cwd=workdir, env=env, capture_output=True, text=True,
        timeout=CHILD_TIMEOUT_SECONDS, check=False,
    )  # fmt: skip
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"benchmarks.stream failed ({done.returncode}):\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def _upserts(emulator: Emulator, seen: int) -> dict[str, int]:
    upserts = [r for r in emulator.requests[seen:] if r.route == UPSERT_ROUTE]
    accepted = [r for r in upserts if r.status == 202]
    body_bytes = sum(r.body_bytes for r in accepted)
    contacts = sum(r.contact_count or 0 for r in accepted)
    minimum = minimum_requests(body_bytes, contacts)
    return {
        "upserts": len(upserts),
        "accepted": len(accepted),
        "body_bytes": body_bytes,
        "contacts": contacts,
        "minimum": minimum,
        "extra": len(accepted) - minimum,
    }


def _imports(emulator: Emulator, seen: int) -> dict[str, int]:
    """The CSV imports of one sync: imports requested, files taken, and every byte they cost
    on the wire (the import requests' JSON and the gzip files)."""
    recorded = emulator.requests[seen:]
    requested = [r for r in recorded if r.route == IMPORT_ROUTE]
    taken = [r for r in recorded if r.route == UPLOAD_ROUTE and r.status == 200]
    job_ids = {r.path.rsplit("/", 1)[-1] for r in taken}
    contacts = sum(j["contact_count"] for j in emulator.jobs() if j["id"] in job_ids)
    request_bytes = sum(r.body_bytes for r in requested)
    file_bytes = sum(r.body_bytes for r in taken)
    return {
        "imports": len(requested),
        "files": len(taken),
        "contacts": contacts,
        "file_bytes": file_bytes,
        "request_bytes": request_bytes,
        "wire_bytes": file_bytes + request_bytes,
    }


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _one_repeat(
    emulator: Emulator,
    warehouses: dict[str, Path],
    rows: int,
    workdir: Path,
    bulk: str | None,
) -> dict[str, Any]:
    run_dir = _fresh(workdir / "run")
    state = run_dir / "state.duckdb"
    result = {"first": run_sync(emulator, warehouses["first"], rows, state, run_dir)}
    if "changed" in warehouses:
        result["unchanged"] = run_sync(emulator, warehouses["first"], rows, state, run_dir)
        result["changed"] = run_sync(emulator, warehouses["changed"], rows, state, run_dir)
        reference_dir = _fresh(workdir / "reference")
        result["dlt_duckdb"] = run_reference(warehouses["first"], rows, reference_dir)
        shutil.rmtree(reference_dir, ignore_errors=True)
    if bulk is not None:  # the same first load, by CSV import if ``bulk`` says so
        run_dir = _fresh(workdir / "run")
        result["bulk"] = run_sync(emulator, warehouses["first"], rows, state, run_dir, bulk)
        if "changed" in warehouses:
            result["bulk_unchanged"] = run_sync(
                emulator, warehouses["first"], rows, state, run_dir, bulk
            )
    shutil.rmtree(run_dir, ignore_errors=True)
    return result


def _warehouses(rows: int, rerun: bool, fraction: float, workdir: Path) -> dict[str, Any]:
    first = data.write_warehouse(workdir / f"warehouse-{rows}.duckdb", rows)
    found: dict[str, Any] = {"first": first}
    if rerun:
        changed = workdir / f"warehouse-{rows}-changed.duckdb"
        shutil.copyfile(first, changed)
        found["changed"] = changed
        found["changed_contacts"] = data.touch(changed, fraction)
    return found


def measure(
    sizes: Sequence[int],
    *,
    rerun_rows: int,
    repeat: int | Callable[[int], int],
    workdir: Path,
    changed_fraction: float = 0.01,
    bulk: str | None = "auto",
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Syncs at every size (see the module docstring)."""
    results: dict[str, Any] = {"sizes": {}, "rerun_rows": rerun_rows}
    with hosted_emulator() as emulator:
        for rows in sizes:
            made = _warehouses(rows, rows == rerun_rows, changed_fraction, workdir)
            paths = {k: v for k, v in made.items() if isinstance(v, Path)}
            runs = []
            times = repeat(rows) if callable(repeat) else repeat
            for index in range(times):
                runs.append(_one_repeat(emulator, paths, rows, workdir, bulk))
                progress(f"  sync {rows:,} rows: repeat {index + 1}/{times}: {_brief(runs[-1])}")
            results["sizes"][str(rows)] = {
                "rows": rows,
                "changed_contacts": made.get("changed_contacts"),
                "runs": runs,
                "median": _medians(runs),
            }
            for path in paths.values():
                path.unlink(missing_ok=True)
    return results


def _brief(run: dict[str, Any]) -> str:
    first = run["first"]
    text = (
        f"first {first['wall_seconds']:.1f}s, peak RSS {first['peak_rss_bytes'] / 2**20:,.0f} "
        f"MiB, {first['emulator']['accepted']} upserts"
    )
    for kind in ("unchanged", "changed"):
        if kind in run:
            text += f"; {kind}: {run[kind]['emulator']['upserts']} upserts"
    if "bulk" in run:
        found = run["bulk"]["imports"]
        text += (
            f"; bulk: {found['files']} files, {found['wire_bytes']:,} bytes, "
            f"{run['bulk']['emulator']['upserts']} upserts, {run['bulk']['wall_seconds']:.1f}s"
        )
    return text


def _medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    medians: dict[str, Any] = {}
    for kind in ("first", "unchanged", "changed", "bulk", "bulk_unchanged"):
        present = [run[kind] for run in runs if kind in run]
        if present:
            medians[kind] = _kind_medians(present)
    references = [run["dlt_duckdb"] for run in runs if "dlt_duckdb" in run]
    if references:
        medians["dlt_duckdb"] = {
            "wall_seconds": _median_of([r["wall_seconds"] for r in references]),
            "cpu_seconds": _median_of([r.get("cpu_seconds") for r in references]),
            "steps": {s: _step_medians(references, s) for s in sorted(references[0]["steps"])},
            "peak_rss_bytes": _median_of([r["peak_rss_bytes"] for r in references]),
        }
    return medians


def _median_of(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _step_medians(results: list[dict[str, Any]], step: str) -> dict[str, float | None]:
    figures = [r["steps"].get(step, {}) for r in results]
    return {
        "seconds": _median_of([f.get("seconds") for f in figures]),
        "peak_rss_bytes": _median_of([f.get("peak_rss_bytes") for f in figures]),
    }


def _breakdown_medians(results: list[dict[str, Any]]) -> dict[str, float | None]:
    buckets = sorted({b for r in results for b in r.get("load_breakdown", {})})
    return {
        b: _median_of([r["load_breakdown"].get(b, {}).get("seconds") for r in results])
        for b in buckets
    }


def _kind_medians(results: list[dict[str, Any]]) -> dict[str, Any]:
    step_names = sorted({s for r in results for s in r["steps"]})
    return {
        "wall_seconds": _median_of([r["wall_seconds"] for r in results]),
        "cpu_seconds": _median_of([r.get("cpu_seconds") for r in results]),
        "steps": {s: _step_medians(results, s) for s in step_names},
        "peak_rss_bytes": _median_of([r["peak_rss_bytes"] for r in results]),
        "rss_before_run_bytes": _median_of([r["rss_before_run_bytes"] for r in results]),
        "upserts": _median_of([r["emulator"]["upserts"] for r in results]),
        "load_breakdown": _breakdown_medians(results),
        "emulator": results[0]["emulator"],
        "imports": results[0]["imports"],
        "summary": results[0]["summary"],
    }
