"""BENCHMARKS.md from the results dict that ``benchmarks.run`` builds.

Contract: ``targets(results)`` judges each target of issue 5 (met, missed, or not measured at
these sizes) with the measured value; ``render(results)`` returns the whole Markdown document:
machine facts, the command to reproduce, the targets, one table per measurement (medians of
the repeats), the equivalence check of the two paths, and what limits the figures. The
"what limits it" prose is part of this module, so a rerun regenerates the whole file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GIB = 2**30
MIB = 2**20
TARGET_ROWS = 1_000_000


@dataclass(frozen=True)
class Verdict:
    target: str
    measured: str
    met: bool | None  # None: not measured at the sizes of this run
    note: str = ""

    @property
    def mark(self) -> str:
        return {True: "met", False: "**missed**", None: "not measured"}[self.met]


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value / MIB:,.0f}"


def _throughput_at(results: dict[str, Any], rows: int) -> dict[str, Any] | None:
    return next((t["median"] for t in results["throughput"] if t["rows"] == rows), None)


def _sync_at(results: dict[str, Any], rows: int) -> dict[str, Any] | None:
    entry = results["sync"]["sizes"].get(str(rows))
    return None if entry is None else dict(entry["median"])


def _step(kind: dict[str, Any], step: str) -> float | None:
    value = kind["steps"].get(step, {}).get("seconds")
    return None if value is None else float(value)


# -- targets ---------------------------------------------------------------------------------


def _reference_rows(results: dict[str, Any]) -> int:
    """The size the 1M targets are judged at: 1M, or this run's rerun size."""
    return int(results["config"]["rerun_rows"])


def _at(rows: int) -> str:
    return "" if rows == TARGET_ROWS else f" [at {rows:,} rows, not 1M]"


def _speed_targets(results: dict[str, Any]) -> list[Verdict]:
    sizes = [t["rows"] for t in results["throughput"]]
    ref = _reference_rows(results)
    rows = min(sizes, key=lambda n: abs(n - ref)) if sizes else ref
    at = _throughput_at(results, rows)
    if at is None:
        return [
            Verdict("Our path at 1M rows >= 1,000,000 rows/s", "-", None),
            Verdict("Our path at 1M rows >= 20x the baseline", "-", None),
        ]
    rate, ratio = at["ours_rows_per_second"], at["ratio"]
    return [
        Verdict(
            "Our path at 1M rows >= 1,000,000 rows/s",
            f"{_rate(rate)} rows/s{_at(rows)}",
            rate is not None and rate >= 1_000_000,
        ),
        Verdict(
            "Our path at 1M rows >= 20x the baseline",
            "-" if ratio is None else f"{ratio:.1f}x{_at(rows)}",
            None if ratio is None else ratio >= 20,
        ),
    ]


def _rerun_target(results: dict[str, Any]) -> Verdict:
    ref = _reference_rows(results)
    at = _sync_at(results, ref)
    name = "Unchanged rerun of 1M contacts: 0 upserts, under 3 s"
    if at is None or "unchanged" not in at:
        return Verdict(name, "-", None)
    kind = at["unchanged"]
    load = _step(kind, "load")
    upserts = kind["upserts"]
    met = upserts == 0 and load is not None and load < 3.0
    return Verdict(
        name,
        f"{upserts:.0f} upserts; load step {_secs(load)} s "
        f"(whole dlt run {_secs(kind['wall_seconds'])} s){_at(ref)}",
        met,
        "timed on the destination's load step; dlt's extract and normalize of 1M rows come on top",
    )


def _memory_target(results: dict[str, Any]) -> Verdict:
    name = "10M rows streamed: peak RSS < 1 GiB and within 10% of the 1M peak"
    ref_rows = _reference_rows(results)
    big_rows = max(int(n) for n in results["sync"]["sizes"])
    big, ref = _sync_at(results, big_rows), _sync_at(results, ref_rows)
    if big is None or ref is None or big_rows <= ref_rows:
        return Verdict(name, "-", None)
    peak, base = big["first"]["peak_rss_bytes"], ref["first"]["peak_rss_bytes"]
    growth = peak / base - 1
    met = peak < GIB and growth <= 0.10
    measured = (
        f"{_mib(peak)} MiB at {big_rows:,} vs {_mib(base)} MiB at {ref_rows:,} ({growth:+.0%})"
    )
    return Verdict(name, measured, met)


def _requests_target(results: dict[str, Any]) -> Verdict:
    extras = [
        entry["median"]["first"]["emulator"]["extra"] for entry in results["sync"]["sizes"].values()
    ]
    extras += [t["median"]["ours_efficiency"]["extra"] for t in results["throughput"]]
    if not extras:
        return Verdict("Requests: at most one more than the minimum", "-", None)
    worst = max(extras)
    return Verdict(
        "Requests: at most one more than the minimum",
        f"worst case {worst:+d} over the minimum",
        worst <= 1,
    )


def _e2e_target(results: dict[str, Any]) -> Verdict:
    name = "End-to-end 1M: our load step < dlt's extract + normalize"
    ref = _reference_rows(results)
    at = _sync_at(results, ref)
    if at is None:
        return Verdict(name, "-", None)
    first = at["first"]
    load, extract, normalize = (_step(first, s) for s in ("load", "extract", "normalize"))
    if load is None or extract is None or normalize is None:
        return Verdict(name, "-", None)
    waiting = first.get("load_breakdown", {}).get("waiting_for_api") or 0.0
    ours = load - waiting
    measured = (
        f"load {ours:.2f} s without the {waiting:.2f} s blocked on the emulator "
        f"({load:.2f} s with it) vs extract + normalize {extract + normalize:.2f} s{_at(ref)}"
    )
    return Verdict(name, measured, ours < extract + normalize, "judged without the API's time")


def targets(results: dict[str, Any]) -> list[Verdict]:
    return [
        *_speed_targets(results),
        _rerun_target(results),
        _memory_target(results),
        _requests_target(results),
        _e2e_target(results),
    ]


# -- sections --------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _repeats_text(config: dict[str, Any]) -> str:
    text = f"{config['repeat']}"
    if any(n > config["big_rows"] for n in [*config["sizes"], *config["sync_sizes"]]):
        text += (
            f"; {config['big_repeat']} above {config['big_rows']:,} rows, where the baseline "
            "runs once (first pass only)"
        )
    return text


def _machine(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    rows = [
        ["Date", m["date"]],
        ["CPU", f"{m['cpu']}, {m['cores']} cores"],
        ["RAM", f"{m['ram_bytes'] / GIB:.1f} GiB"],
        ["OS", m["os"]],
        ["Python", m["python"]],
        ["Libraries", versions],
        ["Load average at start", " / ".join(str(x) for x in m["load_average_at_start"])],
        ["Repeats (medians reported)", _repeats_text(results["config"])],
    ]
    return ["## Machine", "", *_table(["", ""], rows)]


def _reproduce(results: dict[str, Any]) -> list[str]:
    return [
        "## Reproduce",
        "",
        "```sh",
        "make bench    # = .venv/bin/python -m benchmarks.run with the defaults",
        results["config"]["command"] + "    # the command that produced this report",
        "```",
        "",
        "Raw figures of every repeat: `benchmarks/results/latest.json`. Chart:",
        "",
        "![throughput and memory versus rows](benchmarks/results/throughput_memory.png)",
        "",
    ]


def _targets(results: dict[str, Any]) -> list[str]:
    rows = [
        [v.target, v.measured, v.mark + (f" ({v.note})" if v.note else "")]
        for v in targets(results)
    ]
    return ["## Targets (2-core machine)", "", *_table(["Target", "Measured", "Verdict"], rows)]


def _throughput(results: dict[str, Any]) -> list[str]:
    rows = []
    for t in results["throughput"]:
        m = t["median"]
        ratio = "-" if m["ratio"] is None else f"{m['ratio']:.1f}x"
        rows.append(
            [
                f"{t['rows']:,}",
                _rate(m["ours_rows_per_second"]),
                _rate(m["baseline_rows_per_second"]),
                ratio,
                _secs(m["ours_seconds"]),
                _secs(m["baseline_seconds"]),
                _secs(m["ours_record_seconds"]),
                _rate(m["ours_unchanged_rows_per_second"]),
                _rate(m["baseline_unchanged_rows_per_second"]),
            ]
        )
    header = [
        "Rows",
        "Ours rows/s",
        "Baseline rows/s",
        "Ours/baseline",
        "Ours s",
        "Baseline s",
        "State write s (not in ours)",
        "Ours unchanged pass rows/s",
        "Baseline unchanged pass rows/s",
    ]
    lines = [
        "## 1-2. RecordBatch to request bodies: our path versus the baseline",
        "",
        "Same generated batches (100,000 rows each, 12 columns, 1% bad rows) through both "
        "paths, first pass on an empty state. *Ours*, as the loader runs a job file: "
        "the plan (`build_plan`: map, coerce, validate, fingerprint, last row of each key, "
        "one join with the state) over all rows, then per batch `Plan.render` (JSON, "
        "MD5, comparison) and `Packer.add`; the state write "
        "after each body (`record_sent` + job outcome, which the baseline does as a dict "
        "update) is timed apart. *Baseline*: `to_pylist`, a dict per contact, `re` "
        "validation, `json.dumps`, `hashlib.md5`, a dict as the state, greedy packing by "
        "`len(json.dumps(...).encode())`. The ratio is the median of per-repeat ratios.",
        "",
        *_table(header, rows),
    ]
    return lines + _stages(results)


def _stages(results: dict[str, Any]) -> list[str]:
    names = ["plan", "render", "pack", "record"]
    rows = []
    for t in results["throughput"]:
        stages = t["median"]["ours_stage_seconds"]
        total = sum(v for k, v in stages.items() if k != "record" and v) or 1.0
        cells = []
        for name in names:
            value = stages.get(name)
            share = "" if name == "record" or value is None else f" ({value / total:.0%})"
            cells.append(_secs(value) + share)
        rows.append([f"{t['rows']:,}", *cells])
    return [
        "Where our path spends its time (seconds, median; share of the path):",
        "",
        *_table(["Rows", *names], rows),
    ]


def _sync_row(label: str, kind: dict[str, Any]) -> list[str]:
    summary = kind["summary"]
    return [
        label,
        _secs(kind["wall_seconds"]),
        _secs(_step(kind, "extract")),
        _secs(_step(kind, "normalize")),
        _secs(_step(kind, "load")),
        f"{kind['upserts']:.0f}",
        f"{summary.get('contacts_sent', 0):,}",
        f"{summary.get('unchanged', 0):,}",
    ]


def _reruns(results: dict[str, Any]) -> list[str]:
    rerun = results["sync"]["rerun_rows"]
    at = _sync_at(results, rerun)
    if at is None:
        return []
    entry = results["sync"]["sizes"][str(rerun)]
    rows = [_sync_row("first sync (all new)", at["first"])]
    if "unchanged" in at:
        rows.append(_sync_row("3. unchanged rerun", at["unchanged"]))
    if "changed" in at:
        rows.append(_sync_row(f"4. rerun, {entry['changed_contacts']:,} changed", at["changed"]))
    header = [
        "Run",
        "Wall s",
        "dlt extract s",
        "dlt normalize s",
        "load s (ours)",
        "Upserts",
        "Contacts sent",
        "Unchanged",
    ]
    return [
        f"## 3-4, 7. Syncs of {rerun:,} contacts: DuckDB -> dlt -> emulator",
        "",
        "Real `dlt.pipeline(...).run(customers_source(...))` runs "
        "(`pipelines/warehouse_to_sendgrid.py`), each in a fresh process, into the emulator "
        "running in the harness process (upserts counted there). Step times from "
        "`pipeline.last_trace`; the load step is our destination, HTTP to the emulator and "
        "job polling included (the emulator parses and validates every body in Python, on "
        "the same 2 cores).",
        "",
        *_table(header, rows),
        *_breakdown(at),
    ]


BUCKETS = (
    "read_parquet",
    "plan",
    "render",
    "pack",
    "state_write",
    "waiting_for_api",
    "jobs",
)


def _breakdown(at: dict[str, Any]) -> list[str]:
    rows = []
    for kind in ("first", "unchanged", "changed"):
        if kind not in at:
            continue
        found = at[kind].get("load_breakdown") or {}
        load = _step(at[kind], "load") or 0.0
        other = load - sum(v or 0.0 for v in found.values())
        rows.append([kind, _secs(load), *(_secs(found.get(b)) for b in BUCKETS), _secs(other)])
    return [
        "Inside the load step (seconds, median; timed by wrapping the package's functions in "
        "the sync process, see `benchmarks/instrument.py`). `waiting_for_api` is the load "
        "thread blocked on in-flight upserts, i.e. the emulator's time; `other` is dlt's "
        "loader and whatever is not wrapped:",
        "",
        *_table(["Run", "load", *BUCKETS, "other"], rows),
    ]


def _memory(results: dict[str, Any]) -> list[str]:
    rows = []
    for entry in sorted(results["sync"]["sizes"].values(), key=lambda e: e["rows"]):
        first = entry["median"]["first"]
        steps = first["steps"]
        peaks = {
            s: steps.get(s, {}).get("peak_rss_bytes") for s in ("extract", "normalize", "load")
        }
        top = max((s for s in peaks if peaks[s]), key=lambda s: peaks[s] or 0, default="-")
        rows.append(
            [
                f"{entry['rows']:,}",
                _mib(first["peak_rss_bytes"]),
                _mib(peaks["extract"]),
                _mib(peaks["normalize"]),
                _mib(peaks["load"]),
                top,
                _mib(first["rss_before_run_bytes"]),
                _secs(first["wall_seconds"]),
            ]
        )
    header = [
        "Rows",
        "Peak RSS MiB",
        "during extract",
        "during normalize",
        "during load",
        "Peak step",
        "RSS before run",
        "Wall s",
    ]
    return [
        "## 5. Peak memory streaming through a real dlt pipeline",
        "",
        "Peak resident memory of the sync process (`VmHWM`), and the peak of a 50 ms "
        "psutil sampler within each dlt step. The source yields 50,000-row Arrow batches; "
        "the destination reads its job file in `read_batch_rows` = 100,000-row batches.",
        "",
        *_table(header, rows),
        *_memory_notes(results),
    ]


def _memory_notes(results: dict[str, Any]) -> list[str]:
    entries = sorted(results["sync"]["sizes"].values(), key=lambda e: e["rows"])
    if len(entries) < 2:
        return []
    low, high = entries[0], entries[-1]
    peak_low = low["median"]["first"]["peak_rss_bytes"]
    peak_high = high["median"]["first"]["peak_rss_bytes"]
    growth = peak_high / peak_low - 1
    load_low = low["median"]["first"]["steps"].get("load", {}).get("peak_rss_bytes")
    load_high = high["median"]["first"]["steps"].get("load", {}).get("peak_rss_bytes")
    text = (
        f"From {low['rows']:,} to {high['rows']:,} rows ({high['rows'] // low['rows']}x the "
        f"input) the peak grows from {_mib(peak_low)} to {_mib(peak_high)} MiB ({growth:+.0%})"
    )
    if load_low and load_high:
        text += f"; during the load step from {_mib(load_low)} to {_mib(load_high)} MiB"
    return [text + ".", ""]


def _efficiency(results: dict[str, Any]) -> list[str]:
    rows = []
    for t in results["throughput"]:
        for label, key in (
            ("ours (in process)", "ours_efficiency"),
            ("baseline (in process)", "baseline_efficiency"),
        ):
            e = t["median"].get(key)
            if e:
                rows.append(
                    [
                        label,
                        f"{t['rows']:,}",
                        f"{e['contacts']:,}",
                        f"{e['body_bytes']:,}",
                        str(e["requests"]),
                        str(e["minimum"]),
                        f"{e['extra']:+d}",
                    ]
                )
    for entry in sorted(results["sync"]["sizes"].values(), key=lambda e: e["rows"]):
        e = entry["median"]["first"]["emulator"]
        rows.append(
            [
                "ours, dlt sync (emulator)",
                f"{entry['rows']:,}",
                f"{e['contacts']:,}",
                f"{e['body_bytes']:,}",
                str(e["accepted"]),
                str(e["minimum"]),
                f"{e['extra']:+d}",
            ]
        )
    header = ["Path", "Rows", "Contacts", "Body bytes", "Requests", "Minimum", "Extra"]
    return [
        "## 6. Request efficiency",
        "",
        "Minimum = max(ceil(total body bytes / 6,000,000), ceil(contacts / 30,000)), from "
        "each path's own bytes (the baseline's `json.dumps` escapes non-ASCII and adds "
        "spaces, so its bodies are larger).",
        "",
        *_table(header, rows),
    ]


def _equivalence(results: dict[str, Any]) -> list[str]:
    eq = results["equivalence"]
    same = eq["same_contacts"] and eq["same_rejected_rows"]
    return [
        "## Same output",
        "",
        f"On {eq['rows']:,} rows both paths send the same contacts (compared as parsed JSON: "
        f"{eq['contacts_ours']:,} vs {eq['contacts_baseline']:,}) and refuse the same rows "
        f"({eq['rejected_ours']:,} vs {eq['rejected_baseline']:,}; "
        f"{eq['rejected_expected']:,} generated bad): **{'yes' if same else 'NO'}**.",
        "",
    ]


LIMITS = """## What limits it

Analysis of the run above; `python -m benchmarks.profile` reproduces the profile (DuckDB
`EXPLAIN ANALYZE` of the check and the render, cProfile of a pass).

**This machine was 2-3x slower than for the previous report** (same 2 cores, low load
average, no steal reported): for identical work dlt's extract of 1M rows took 1.9 s instead
of 0.69 s and the per-row baseline ran at 25,000 instead of 53,000 rows/s. Read the ratios,
not the rates. Interleaved on this machine, the previous commit's path and this one ran at
the same speed within noise (157,000-165,000 vs 157,000-175,000 rows/s at 1M), the render
about 10% faster. The slowdown hit our path (DuckDB on both cores) harder than the
single-threaded baseline, so the ratio fell from 8.5x (idle run) to 7.0x.

**What changed since the previous report**: memory. pyarrow's `ParquetFile` pre-buffers by
default and kept every row group read until the file was closed: streaming a 10M-row job
file grew the load step by ~600 MiB. The job file is now read without it. The transform
runs on the state's DuckDB instance (one 160 MB cap for the duplicate scan, the plan, the
render and the state, instead of two caps of 256 MB), and the sample warehouse source caps
DuckDB's page cache (dlt's extract of 10M rows held the whole 350 MB file: 646 MiB). This
run's extract column was measured with a 64 MB cap (350 MiB at 10M); the cap was then
raised to 256 MB because a heavier `query` (a GROUP BY over 10M keys) ran out of memory at
64 MB, and an extract-only run of 10M rows then peaks at 538 MiB, still under the load
step's peak, so the whole-sync figures below stand.
The content hash is MD5 instead of SHA-256 (DuckDB's SHA-256 was ~45% of the render).

* **Our path at 1M rows (missed: 169,612 rows/s here, 7.0x; ~450,000 rows/s and 8.5x on
  the idle machine).** The render (`Plan.render`) is 57% of it, the plan 25%, the
  duplicate-key scan 14%. In the render, computing the values costs ~0.4 s per 1M rows,
  building the JSON by string concatenation ~1.1 s and MD5 ~0.5-0.9 s (on this machine).
  Tried and dropped: `concat` of pieces instead of `concat_ws` (no gain), escaping with
  `replace` instead of `to_json` (slower), `to_json` of a STRUCT (40% faster, but it writes
  nulls, which must be omitted, and `json_merge_patch` to drop them costs more than it
  saves); DuckDB has no faster stable hash (`hash` may change between DuckDB releases,
  `md5_number` is slower than `md5`). 1,000,000 rows/s means 2 microseconds of CPU per row
  on 2 cores for everything; the render alone takes more. What remains: folding the
  duplicate-key scan into the plan (computing the keys is 75% of its time) and building
  the JSON outside DuckDB from Arrow buffers.
* **Unchanged rerun (missed here: 3.41 s; met in the previous report's idle run: 1.35 s).** Only the
  duplicate-key scan (0.93 s) and the plan (2.16 s: read the file, check, fingerprint,
  join 1M keys) run; relative to dlt's own extract + normalize of the same rows the load
  step costs the same as before (1.6x here, 1.9x idle). Folding the scan into the plan
  would save up to a quarter of it.
* **10M rows streamed (met: 624 MiB at 10M vs 572 MiB at 1M, +9%).** A probe sampling RSS
  through a 10M sync (every 0.25 s) saw the load step stay in one band, 500-600 MiB, from
  its first minute to its last; what differs from 1M is most likely DuckDB filling its
  160 MB cap as the state grows. The margin is small: a body or batch in flight moves a
  single peak by 20-30 MiB.
* **End-to-end 1M (missed: load 14.91 s without the emulator vs extract + normalize
  2.00 s).** dlt writes an Arrow source to parquet at ~500,000 rows/s here (over 1M idle)
  and normalize passes the file through, so the load step would need ~500,000 rows/s
  here including the render (4.66 s), state writes (3.80 s: a transaction per 202
  inserting its ~20,000 contacts) and following the jobs (1.21 s, mostly one UPDATE per
  completed job of its contacts' status).
  Next: derive a contact's outcome from its job's row instead of updating every contact
  when a job completes. The emulator's time (it parses and validates each
  6 MB body in Python on the same two cores: 15.70 s here) is excluded.
"""


def render(results: dict[str, Any]) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`python -m benchmarks.run`, code in `benchmarks/`); do not "
        "edit by hand. Every figure is the median of the repeats; speeds are also given as a "
        "ratio to a baseline measured in the same run on the same data, because the absolute "
        "rates move with the machine's load.",
        "",
        *_machine(results),
        *_reproduce(results),
        *_targets(results),
        *_throughput(results),
        *_reruns(results),
        *_memory(results),
        *_efficiency(results),
        *_equivalence(results),
        LIMITS,
    ]
    return "\n".join(lines)
