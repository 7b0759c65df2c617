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

**This machine** ran the per-row baseline at 38,000-52,000 rows/s (53,000 in session 2's
idle run, 25,000 in the previous report's slow one) and dlt's extract of 1M rows in 1.1 s
(0.69 s and 1.9 s). Session 2's code, run on this machine beside this one, did its first 1M
pass at 327,000-358,000 rows/s: the 450,000 rows/s of that report were a faster machine, not
code that was later lost. Read the ratios.

**What changed since the previous report**: (1) a contact's outcome is now its job's (state
schema 6, view `contact_status`): finishing a job writes one row instead of updating each of
its ~20,000 contacts, and contacts no longer carry job id, run id and time. Measured on this
machine before and after, the state writes of a 1M first pass fell from 2.2 s to 1.0-1.15 s;
in the sync they took 1.31 s and following the jobs 0.42 s (3.80 s and 1.21 s in the
previous report, on a machine 2-3x slower). (2) The separate duplicate-key scan is gone: the
plan finds superseded rows from its own check (the job file is read once, keys computed
once), grouping 64-bit hashes of the keys before the keys themselves. (3) The render selects
a batch's rows by mask instead of `take`. (4) The plan table, which stays in DuckDB's memory
through the render beside the contacts being recorded, keeps no key or problem masks for ok
rows (the render computes the key again): half its size, 5-8% off the 1M pass in an
interleaved comparison (a full run between changes (3) and (4) peaked at 623 MiB at 10M,
this one at 609 MiB).

* **Our path at 1M rows (missed: 377,618 rows/s, 8.5x).** The render is 61% of it, the plan
  31%. DuckDB's `EXPLAIN ANALYZE` of the render over 1M rows, in CPU seconds summed over
  both threads: computing the values 0.63, building the JSON by string concatenation 0.68,
  MD5 of 282 MB of JSON 0.58 (~500 MB/s, MD5's own speed), the Arrow scan 0.09: ~2 CPU-s,
  i.e. 1 s of wall time on 2 cores for the render alone, where 1,000,000 rows/s allows 2
  CPU-microseconds per row for everything. Tried and dropped: `concat` instead of
  `concat_ws` (no gain), `replace` instead of `to_json` for escaping (slower), `to_json` of
  a STRUCT (40% faster, but it writes nulls, which must be omitted, and `json_merge_patch`
  to drop them costs more than it saves), the pieces from DuckDB joined by pyarrow's
  `binary_join_element_wise` (no faster: 1.0 s against 0.9 s for 1M); DuckDB has no faster
  stable hash (`hash` may change between releases, `md5_number` is slower than `md5`).
  DuckDB's memory cap also costs speed: before change (4), with the state's cap at 512 MB
  instead of 160 MB the 1M pass ran at 410,000-430,000 rows/s and the unchanged pass in 0.85
  s instead of 1.2 s, but with a 320 MB cap a 10M sync peaked at 793 MiB against 624 MiB at
  1M (+27%): the flat-memory target sets the cap. What remains: building the JSON outside
  DuckDB from Arrow buffers (a compiled extension, which the project's "DuckDB SQL or
  pyarrow.compute" rule has kept out), and hashing fewer bytes (the keys are 52% of a
  contact's JSON here, but any change of what is hashed makes every stored hash differ
  once).
* **Unchanged rerun (met: load step 1.78 s; 0 upserts).** Only the plan runs (read the job
  file, check, fingerprint, group the keys' hashes, one join with 1M contacts); nothing is
  rendered. dlt's own extract of the same rows took 1.09 s.
* **10M rows streamed (met: 609 MiB at 10M vs 566 MiB at 1M, +7%).** The margin is thin: a
  probe sampling RSS through a 10M sync (previous report) saw the load step stay in one band
  from its first minute to its last, where a body or batch in flight moves a single peak by
  20-30 MiB; the 1M peak itself ranged 563-572 MiB over the three repeats. What differs from
  1M is DuckDB filling its 160 MB cap as the state grows.
* **End-to-end 1M (missed: load 7.91 s without the 7.63 s blocked on the emulator vs extract
  and normalize 1.11 s).** dlt writes an Arrow source to parquet at ~1M rows/s and normalize
  passes the file through: no per-row work. The load step has to do per-row work dlt does
  not: validate, render and hash 282 MB of JSON (2.53 s here against 1.61 s in process: the
  emulator parses every body in Python on the same two cores), plan and join with the state
  (1.29 s), record 1M contacts (1.31 s) and follow 48 jobs (0.42 s). `other` (1.73 s)
  includes the state's final checkpoint when the file is closed (0.47 s measured apart for
  1M new contacts); the rest is dlt's loader and the threads sending bodies, not broken down
  further. Its floor is the in-process path with its state writes (3.7 s for 1M here), over
  three times dlt's extract and normalize."""


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
