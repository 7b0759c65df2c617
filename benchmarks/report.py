"""BENCHMARKS.md from the results dict that ``benchmarks.run`` builds.

Contract: ``targets(results)`` judges each target of issues 5 and 16 (met, missed, or not
measured at these sizes) with the measured value; ``render(results)`` returns the whole
Markdown document: machine facts, the command to reproduce, the targets, one table per
measurement (medians of the repeats), the equivalence check of the two paths, and what
limits the figures. The "what limits it" prose is part of this module, so a rerun
regenerates the whole file.
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
    names = (
        "Our path at 1M rows >= 1,000,000 rows/s",
        "First pass with state writes at 1M >= 10x the per-row baseline (wall)",
        "First pass with state writes at 1M >= 4x the per-row baseline (CPU seconds)",
        "First pass with state writes at 1M within 2x of the render floor (wall)",
    )
    if at is None:
        return [Verdict(name, "-", None) for name in names]
    over = at.get("over_floor", {}).get("wall")
    rate = at["ours_rows_per_second"]
    per_row = at.get("baselines", {}).get("per_row", {})
    found = per_row.get("ratios", {})
    wall, cpu = found.get("wall_with_state"), found.get("cpu_with_state")
    # What a path doing nothing but the floor's JSON and MD5 would score: no path that
    # renders these contacts scores more (issue 16.2's ratios are bounded by it).
    bound = {
        kind: _ratio(per_row.get(f"{prefix}seconds"), at.get(f"floor_{prefix}seconds"))
        for kind, prefix in (("wall", ""), ("cpu", "cpu_"))
    }
    return [
        Verdict(names[0], f"{_rate(rate)} rows/s{_at(rows)}", rate is not None and rate >= 1e6),
        Verdict(
            names[1],
            _times(wall) + _at(rows),
            None if wall is None else wall >= 10,
            _floor_note(bound["wall"]),
        ),
        Verdict(
            names[2],
            _times(cpu) + _at(rows),
            None if cpu is None else cpu >= 4,
            _floor_note(bound["cpu"]),
        ),
        Verdict(
            names[3],
            f"{_times(over)} the floor's {_secs(at.get('floor_seconds'))} s{_at(rows)}",
            None if over is None else over <= 2,
        ),
    ]


def _times(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.1f}x"


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return None if numerator is None or not denominator else numerator / denominator


def _floor_note(bound: float | None) -> str:
    return "" if bound is None else f"the render floor alone scores {bound:.1f}x"


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


def _reference_targets(results: dict[str, Any]) -> list[Verdict]:
    """Issue 16, points 4 and 5: against dlt loading the same source into its own duckdb."""
    names = (
        "Unchanged 1M rerun: the whole pipeline.run <= 0.6x dlt -> duckdb (wall)",
        "Whole first 1M sync: the syncing process's CPU seconds <= 1.5x dlt -> duckdb",
    )
    ref = _reference_rows(results)
    at = _sync_at(results, ref)
    if at is None or "dlt_duckdb" not in at:
        return [Verdict(name, "-", None) for name in names]
    duck = at["dlt_duckdb"]
    verdicts = []
    for name, kind, key, bound in (
        (names[0], "unchanged", "wall_seconds", 0.6),
        (names[1], "first", "cpu_seconds", 1.5),
    ):
        ours, theirs = at.get(kind, {}).get(key), duck.get(key)
        if ours is None or not theirs:
            verdicts.append(Verdict(name, "-", None))
            continue
        ratio = ours / theirs
        measured = f"{ratio:.2f}x: {ours:.2f} s vs {theirs:.2f} s{_at(ref)}"
        note = _least_rerun_note(results, at) if kind == "unchanged" else ""
        verdicts.append(Verdict(name, measured, ratio <= bound, note))
    return verdicts


def _least_rerun_note(results: dict[str, Any], at: dict[str, Any]) -> str:
    """The least an unchanged rerun's whole run could take on this run's figures: dlt's own
    extract and normalize of it, plus the rerun floor (read, key, hash and join every row
    natively, nothing else: ``benchmarks.rerun_floor``), over dlt -> duckdb."""
    floor = results.get("rerun_floor", {}).get("floor", {}).get("seconds")
    rerun, theirs = at["unchanged"], at["dlt_duckdb"].get("wall_seconds")
    extract, normalize = _step(rerun, "extract"), _step(rerun, "normalize")
    if floor is None or extract is None or normalize is None or not theirs:
        return ""
    least = extract + normalize + floor
    return (
        f"the least possible here: {least / theirs:.2f}x, dlt's extract and normalize "
        f"{extract + normalize:.2f} s + the rerun floor {floor:.2f} s"
    )


BULK_ROWS = 10_000_000


def _bulk_at(results: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, Any]] | None:
    """The largest sync size with a bulk first sync: (rows, bulk sync, upsert first sync)."""
    for rows in sorted((int(n) for n in results["sync"]["sizes"]), reverse=True):
        at = _sync_at(results, rows)
        if at is not None and "bulk" in at:
            return rows, at["bulk"], at["first"]
    return None


def bulk_figures(bulk: dict[str, Any], upserts: dict[str, Any]) -> dict[str, Any]:
    """Jobs and bytes on the wire of a bulk first sync, against the upsert-only one."""
    imports, upserted = bulk["imports"], bulk["emulator"]
    wire = imports["wire_bytes"] + upserted["body_bytes"]
    baseline = upserts["emulator"]["body_bytes"]
    return {
        "jobs": imports["imports"] + upserted["accepted"],
        "files": imports["files"],
        "upserts": upserted["accepted"],
        "wire_bytes": wire,
        "upsert_bytes": baseline,
        "upsert_jobs": upserts["emulator"]["accepted"],
        "share": wire / baseline if baseline else None,
    }


def _bulk_targets(results: dict[str, Any]) -> list[Verdict]:
    names = (
        "10M new contacts by CSV import in <= 12 import jobs",
        "10M new contacts by CSV import: <= 25% of the upsert bytes on the wire",
    )
    found = _bulk_at(results)
    if found is None:
        return [Verdict(name, "-", None) for name in names]
    rows, bulk, upserts = found
    f = bulk_figures(bulk, upserts)
    at = "" if rows >= BULK_ROWS else f" [at {rows:,} rows, not 10M]"
    judged = rows >= BULK_ROWS
    share = "-" if f["share"] is None else f"{f['share']:.1%}"
    return [
        Verdict(
            names[0],
            f"{f['jobs']} jobs ({f['files']} CSV files, {f['upserts']} upserts) vs "
            f"{f['upsert_jobs']} upserts{at}",
            (f["jobs"] <= 12) if judged else None,
        ),
        Verdict(
            names[1],
            f"{share}: {f['wire_bytes']:,} vs {f['upsert_bytes']:,} bytes{at}",
            (f["share"] is not None and f["share"] <= 0.25) if judged else None,
        ),
    ]


def _state_write_targets(results: dict[str, Any]) -> list[Verdict]:
    """Issue 16, point 3: state writes (recording, job outcomes, the closing checkpoint)
    linear in rows, and a small share of the first pass."""
    names = (
        "State writes linear in rows: per row at the largest size <= 1.1x per row at 1M "
        "(5M / 1M <= 5.5x)",
        "State writes <= 15% of the first pass with state writes at 1M",
    )
    by_rows = {int(t["rows"]): t["median"] for t in results["throughput"]}
    base = by_rows.get(TARGET_ROWS)
    if base is None or not base.get("ours_record_seconds"):
        return [Verdict(name, "-", None) for name in names]
    record, path = base["ours_record_seconds"], base["ours_seconds"]
    share = record / (record + path)
    shared = Verdict(
        names[1], f"{share:.0%}: {record:.2f} s of {record + path:.2f} s", share <= 0.15
    )
    big_rows = max(by_rows)
    big = by_rows[big_rows].get("ours_record_seconds")
    if big_rows <= TARGET_ROWS or not big:
        return [Verdict(names[0], "-", None), shared]
    growth = (big / big_rows) / (record / TARGET_ROWS)
    measured = (
        f"{growth:.2f}x per row: {big:.2f} s at {big_rows:,} vs {record:.2f} s at {TARGET_ROWS:,}"
    )
    return [Verdict(names[0], measured, growth <= 1.1), shared]


def targets(results: dict[str, Any]) -> list[Verdict]:
    return [
        *_speed_targets(results),
        *_state_write_targets(results),
        _rerun_target(results),
        _memory_target(results),
        _requests_target(results),
        _e2e_target(results),
        *_reference_targets(results),
        *_bulk_targets(results),
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


BASELINE_LABELS = {"per_row": "per-row", "vectorized": "vectorized"}


def _throughput(results: dict[str, Any]) -> list[str]:
    rows = []
    for t in results["throughput"]:
        m = t["median"]
        bases = m.get("baselines", {})
        rows.append(
            [
                f"{t['rows']:,}",
                _rate(m["ours_rows_per_second"]),
                *(_rate(bases.get(name, {}).get("rows_per_second")) for name in BASELINE_LABELS),
                f"{_secs(m['ours_seconds'])} / {_secs(m['ours_cpu_seconds'])}",
                f"{_secs(m['ours_record_seconds'])} / {_secs(m['ours_record_cpu_seconds'])}",
                f"{_secs(m.get('floor_seconds'))} / {_secs(m.get('floor_cpu_seconds'))}",
                *(
                    f"{_secs(bases.get(n, {}).get('seconds'))} / "
                    f"{_secs(bases.get(n, {}).get('cpu_seconds'))}"
                    for n in BASELINE_LABELS
                ),
                _rate(m["ours_unchanged_rows_per_second"]),
                *(
                    _rate(bases.get(name, {}).get("unchanged_rows_per_second"))
                    for name in BASELINE_LABELS
                ),
            ]
        )
    header = [
        "Rows",
        "Ours rows/s",
        "Per-row rows/s",
        "Vectorized rows/s",
        "Ours s (wall / CPU)",
        "State write s (not in ours)",
        "Render floor s",
        "Per-row s",
        "Vectorized s",
        "Ours unchanged rows/s",
        "Per-row unchanged rows/s",
        "Vectorized unchanged rows/s",
    ]
    lines = [
        "## 1-2. RecordBatch to request bodies: our path versus two baselines",
        "",
        "Same generated batches (100,000 rows each, 12 columns, 1% bad rows) through three "
        "paths, first pass on an empty state. *Ours*, as the loader runs a job file: the plan "
        "(`Plan.build`: map, coerce, validate, fingerprint, last row of each key, one join with "
        "the state) over all rows, then per batch `Plan.render` (JSON, MD5, comparison) and "
        "`Packer.add`; the state writes (`record_sent` after each body, the jobs' outcomes "
        "once the bodies are out, as the sync follows its jobs, and the checkpoint that "
        "closing the store makes; the baselines do a dict update) are timed apart. *Per-row* "
        "(`benchmarks/baseline.py`), "
        "what a competent user writes: `to_pylist`, a dict per contact built with the same "
        "rules, `re` validation, one `orjson.dumps`, `hashlib.md5`, a dict as the state, and "
        "the destination's greedy packing. *Vectorized* (`benchmarks/vectorized.py`): the "
        "cleaning and checks in `pyarrow.compute`, then `orjson` and MD5 per valid row, the "
        "same packing. All three send byte-identical bodies (checked on every repeat: same "
        "requests, bytes, contacts and refused rows). *Render floor* (`benchmarks/floor.py`): "
        "only the JSON and MD5 of the same mapped columns, one DuckDB query per batch on both "
        "cores (scanned in chunks, as our render scans), nothing cleaned, checked or compared "
        "(until 2026-12-01 it scanned each batch whole, on one core: about twice its time "
        "now). Times are wall / CPU seconds (CPU of the whole process: "
        "DuckDB's threads count).",
        "",
        *_table(header, rows),
        *_ratios(results),
    ]
    return lines + _stages(results)


def _ratios(results: dict[str, Any]) -> list[str]:
    rows = []
    for t in results["throughput"]:
        bases = t["median"].get("baselines", {})
        for name, label in BASELINE_LABELS.items():
            found = bases.get(name, {}).get("ratios")
            if not found:
                continue
            rows.append(
                [
                    f"{t['rows']:,}",
                    label,
                    *(
                        _times(found.get(k))
                        for k in ("wall", "cpu", "wall_with_state", "cpu_with_state")
                    ),
                ]
            )
    header = [
        "Rows",
        "Baseline",
        "Wall, path alone",
        "CPU, path alone",
        "Wall, with state writes",
        "CPU, with state writes",
    ]
    return [
        "Baseline time over ours (above 1x: ours is faster), median of per-repeat ratios:",
        "",
        *_table(header, rows),
    ]


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
        _secs(kind.get("cpu_seconds")),
        _secs(_step(kind, "extract")),
        _secs(_step(kind, "normalize")),
        _secs(_step(kind, "load")),
        f"{kind['upserts']:.0f}",
        str(kind.get("imports", {}).get("files", 0)),
        f"{summary.get('contacts_sent', 0):,}",
        f"{summary.get('unchanged', 0):,}",
    ]


def _reruns(results: dict[str, Any]) -> list[str]:
    rerun = results["sync"]["rerun_rows"]
    at = _sync_at(results, rerun)
    if at is None:
        return []
    entry = results["sync"]["sizes"][str(rerun)]
    rows = [_sync_row("first sync (all new), upserts only", at["first"])]
    if "unchanged" in at:
        rows.append(_sync_row("3. unchanged rerun", at["unchanged"]))
    if "changed" in at:
        rows.append(_sync_row(f"4. rerun, {entry['changed_contacts']:,} changed", at["changed"]))
    bulk = results["config"].get("bulk", "auto")
    if "bulk" in at:
        rows.append(_sync_row(f"first sync (all new), bulk = {bulk}", at["bulk"]))
    if "bulk_unchanged" in at:
        rows.append(_sync_row(f"its unchanged rerun (bulk = {bulk})", at["bulk_unchanged"]))
    if "dlt_duckdb" in at:
        duck = at["dlt_duckdb"]
        rows.append(
            [
                "reference: dlt -> its duckdb destination, same source",
                _secs(duck["wall_seconds"]),
                _secs(duck.get("cpu_seconds")),
                _secs(_step(duck, "extract")),
                _secs(_step(duck, "normalize")),
                f"{_secs(_step(duck, 'load'))} (dlt's)",
                "-",
                "-",
                "-",
                "-",
            ]
        )
    header = [
        "Run",
        "Wall s",
        "CPU s",
        "dlt extract s",
        "dlt normalize s",
        "load s (ours)",
        "Upserts",
        "CSV files",
        "Contacts sent",
        "Unchanged",
    ]
    return [
        f"## 3-4, 7. Syncs of {rerun:,} contacts: DuckDB -> dlt -> emulator",
        "",
        "Real `dlt.pipeline(...).run(customers_source(...))` runs "
        "(`pipelines/warehouse_to_sendgrid.py`), each in a fresh process, into the emulator "
        "running in the harness process (upserts counted there). The first sync and its "
        'reruns set `bulk = "never"` (the upsert path); the bulk rows repeat the first '
        "sync on a fresh state with the bulk setting shown (section 7b). Step times from "
        "`pipeline.last_trace`; the load step is our destination, HTTP to the emulator and "
        "job polling included (the emulator parses and validates every body in Python, on "
        "the same 2 cores). CPU s is the syncing process's (every thread; the emulator's "
        "is not counted). The reference row is dlt loading the same warehouse into its own "
        "duckdb destination, in a fresh process too (issue 16, targets 4 and 5).",
        "",
        *_table(header, rows),
        *_breakdown(at),
    ]


BUCKETS = (
    "read_parquet",
    "plan",
    "render",
    "pack",
    "csv_file",
    "state_write",
    "waiting_for_api",
    "jobs",
)


def _breakdown(at: dict[str, Any]) -> list[str]:
    rows = []
    for kind in ("first", "unchanged", "changed", "bulk"):
        if kind not in at:
            continue
        found = at[kind].get("load_breakdown") or {}
        load = _step(at[kind], "load") or 0.0
        other = load - sum(v or 0.0 for v in found.values())
        rows.append([kind, _secs(load), *(_secs(found.get(b)) for b in BUCKETS), _secs(other)])
    return [
        "Inside the load step (seconds, median; timed by wrapping the package's functions in "
        "the sync process, see `benchmarks/instrument.py`). `waiting_for_api` is the load "
        "thread blocked on in-flight upserts or uploads, i.e. the emulator's time, and `jobs` "
        "includes the emulator applying CSV files while it is polled; `other` is dlt's "
        "loader and whatever is not wrapped:",
        "",
        *_table(["Run", "load", *BUCKETS, "other"], rows),
    ]


def _bulk(results: dict[str, Any]) -> list[str]:
    bulk_setting = results["config"].get("bulk", "auto")
    rows = []
    for entry in sorted(results["sync"]["sizes"].values(), key=lambda e: e["rows"]):
        median = entry["median"]
        if "bulk" not in median:
            continue
        bulk, first = median["bulk"], median["first"]
        f = bulk_figures(bulk, first)
        rerun = median.get("bulk_unchanged")
        rows.append(
            [
                f"{entry['rows']:,}",
                f"{f['files']} files + {f['upserts']} upserts",
                f"{bulk['imports']['contacts']:,}",
                f"{f['wire_bytes']:,}",
                f"{f['upsert_bytes']:,} ({f['upsert_jobs']} upserts)",
                "-" if f["share"] is None else f"{f['share']:.1%}",
                _secs(bulk["wall_seconds"]) + " / " + _secs(first["wall_seconds"]),
                _mib(bulk["peak_rss_bytes"]) + " / " + _mib(first["peak_rss_bytes"]),
                "-" if rerun is None else _rerun_sent(rerun),
            ]
        )
    if not rows:
        return []
    header = [
        "Rows",
        "Jobs (bulk)",
        "Contacts imported",
        "Bytes on the wire (bulk)",
        "Upsert bytes (upserts only)",
        "Share",
        "Wall s (bulk / upserts)",
        "Peak RSS MiB (bulk / upserts)",
        "Unchanged rerun sent",
    ]
    return [
        "## 7b. Bulk first loads: CSV import against upserts (issue 16.7)",
        "",
        f'The first sync of each size again, on a fresh state, with `bulk = "{bulk_setting}"`: '
        "new contacts by email go as gzip CSV files of up to 1,000,000 contacts "
        "(`PUT /v3/marketing/contacts/imports`, then the file to its upload URL), once a load "
        "has more than `bulk_threshold` (200,000) of them with `auto`. Bytes on the wire are the "
        "import requests, the files and any upsert bodies, against the upsert bodies of the "
        "upsert-only first sync of the same size; jobs are imports plus upserts. Wall time "
        "includes following the jobs: the emulator parses and checks every CSV row in Python "
        "when polled, on the same two cores.",
        "",
        *_table(header, rows),
    ]


def _rerun_sent(kind: dict[str, Any]) -> str:
    upserts, files = kind["emulator"]["upserts"], kind["imports"]["imports"]
    return f"{upserts:.0f} upserts, {files} imports"


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
        found = {"ours (in process)": t["median"].get("ours_efficiency")}
        for name, label in BASELINE_LABELS.items():
            base = t["median"].get("baselines", {}).get(name)
            found[f"{label} baseline (in process)"] = base and base.get("efficiency")
        for label, e in found.items():
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
        "Minimum = max(ceil(total body bytes / 6,000,000), ceil(contacts / 30,000)). The "
        "baselines send the destination's bytes, so their rows must equal ours.",
        "",
        *_table(header, rows),
    ]


def _equivalence(results: dict[str, Any]) -> list[str]:
    eq = results["equivalence"]
    paths = eq["paths"]
    rows = [
        [
            name,
            f"{p['contacts']:,}",
            str(p["requests"]),
            f"{p['body_bytes']:,}",
            f"{p['rejected_rows']:,}",
            "-" if name == "ours" else _same(eq[name]),
        ]
        for name, p in paths.items()
    ]
    return [
        "## Same output",
        "",
        f"On {eq['rows']:,} rows ({eq['rejected_expected']:,} generated bad), each path's "
        "bodies, compared with ours byte for byte, its contacts (as parsed JSON) and its "
        "refused row numbers (a difference stops `make bench`):",
        "",
        *_table(
            ["Path", "Contacts", "Requests", "Body bytes", "Refused rows", "Same as ours"], rows
        ),
    ]


def _same(found: dict[str, bool]) -> str:
    return (
        "**yes**"
        if all(found.values())
        else "NO: " + ", ".join(k for k, v in found.items() if not v)
    )


LIMITS = """## What limits it

Analysis of the run above; `python -m benchmarks.profile` reproduces the profile (DuckDB
`EXPLAIN ANALYZE` of the check and the render, cProfile of a pass), and
`python -m benchmarks.rerun_floor` the rerun floor. The run had the machine to itself (20
minutes, load average 1.5 at the start); the machine was a little slower than for the
previous report (the per-row baseline ran at 73,146 rows/s against 87,152, our path at
223,020 against 241,584, the rerun floor took 0.76 s against 0.65 s; dlt loaded 1M rows into
duckdb in 2.08 s against 2.16 s). Ratios within one run compare; across reports they compare
only roughly.

**What changed since the previous report.** The run above measured commit 2914b56. Since the
last report:
- The warehouse's `customers` table is scanned under a 64 MB DuckDB cap instead of 256 MB
  (a `query` keeps 256 MB): DuckDB kept up to the cap of pages it had scanned, which a scan
  never reads again. The extract of 10M rows peaked at 352 MiB, against 529.
- The state merges the contacts it spooled under the render's 64 MB cap: mid-load, the plan's
  table no longer stays resident beside the merge (measured apart at 10M: 564-571 MiB
  against 579-609).

* **Our path and its ratios (missed: 223,020 rows/s at 1M; with its state writes 2.3x the
  per-row baseline in wall time and 1.4x in CPU seconds, 1.4x and 0.8x the vectorized one;
  targets 10x and 4x).** At 1M: render (JSON and MD5 in DuckDB) 2.58 s, plan (check,
  fingerprint, last row per key, join) 1.74 s, packing 0.15 s, state writes 0.82 s. The render
  floor alone scores 19.6x the per-row baseline in wall time and 10.5x in CPU seconds. Our
  checks, cleaning and state cost 4.6 s of the 5.3 s: that is what keeps the path below the
  targets.
* **Render floor (missed: 7.0x the floor's 0.70 s at 1M; target 2x).** The floor only turns
  the mapped columns into JSON and MD5 (`to_json(struct_pack(...))`). Our render also cleans
  every value: trims, case, number and date text, omitting empty fields. The plan checks,
  fingerprints and deduplicates every row and joins it with the state. Our render alone
  (2.58 s) is 3.7x the floor. In DuckDB's operator time, building the JSON
  text is about 30% of our render and the MD5 25% (`benchmarks.profile`, an earlier run). The
  fingerprint's MD5 of the row's text as one JSON object costs about 0.7 s per 1M on the
  slower machine. Digests of a length-prefixed concatenation instead were no faster in DuckDB
  (0.57-0.85 s there), and DuckDB's own `hash` of text is too weak to stand for a row.
  Polars as the render was tried apart on 2026-12-03 (a prototype, byte-identical bodies and
  hashes after fix-ups for escapes, float layout and omitted nulls; 1M rows, medians of 5 on a
  loaded machine): 1.3x faster in wall and CPU time with MD5, 1.9x with xxh3 (a change of
  content hash, hence a migration); not adopted, for about 211 MB of dependencies, a second
  engine whose memory is outside DuckDB's caps, and a fallback for the mappings it lacks.
* **State writes (linear met: 0.94x per row from 1M to 10M, 0.82 and 7.67 s, target 1.1x;
  share missed, narrowly: 15.5% of the pass at 1M, 0.82 s of 5.30 s, target 15%).** Both move
  between runs: per row 1.04x, 1.26x, 1.06x, 0.99x, 1.58x and 1.13x in the six reports before,
  the share 14% and 15.5% in the two before. The state writes at 1M ranged from 0.65 to 0.97 s
  in repeated passes on this machine today. Each request costs about five DuckDB statements
  and the journal. Merging the spooled rows means DuckDB writing 1M rows into the file: 0.31 s
  per 960,000 rows under the state's cap, 0.34 s under the render's cap the merge now runs
  under (medians of 5, measured apart; inserting four numeric columns alone takes 0.2 s).
* **Unchanged rerun (0.6x dlt -> duckdb missed: 1.30x, 2.71 s vs 2.08 s; under 3 s met: load
  step 1.83 s).** Of the load step, the plan is 1.62 s; dlt's extract and normalize take
  0.92 s of our run. The rerun floor (read the job file natively, key, digest and join every
  row with the state; nothing checked or deduplicated) took 0.76 s in this run. dlt's own steps
  plus that floor come to 0.81x, so the target is below what any rerun that reads every row
  could reach here. Our plan in process took 1.55 s, 2.0x the floor. On a slower machine of
  an earlier report it split into: reading the file, keying and digesting every row, about
  1.9 s (pyarrow's read 0.5 s, key and MD5 fingerprint 1.0 s, the temporary table 0.4 s); the
  join with the state, 0.6 s; duplicates, 0.17 s. Rows refused last time cost nothing: they
  are refused again from the state.
* **Changed rerun (1M rows, 10,000 changed: load step 2.57 s, one upsert).** It reads the
  job file twice: once for keys and fingerprints, once to check the changed rows, whose read
  is kept and rendered (the render reads no file).
* **First sync CPU against dlt -> duckdb (missed: 3.89x, 11.00 vs 2.83 CPU-s; target
  1.5x).** dlt's own load of 1M rows is one bulk insert. Ours validates, renders JSON, hashes,
  packs, records 48 requests and their jobs, and talks HTTP. At 1.5x, about 4.2 CPU-s would
  be the whole sync's, dlt's extract and normalize included, and the render floor alone takes
  1.30 CPU-s.
* **10M rows streamed (met, narrowly: 559 MiB at 10M vs 512 MiB at 1M, +9%; target 10%).**
  The three 1M repeats peaked at 512, 506 and 539 MiB: against the lowest the 10M peak is
  +10.5%, so the margin is within one repeat's spread (+14% in the previous report). The
  extract no longer counts: 352 MiB at 10M (529 before its scan cap). Sampled by function in
  separate syncs (psutil every 10 ms, `duckdb_memory()` every 0.5 s): at 1M the peak comes
  while the plan is built (DuckDB at its 160 MB cap); at 10M the plan's build reaches 549 MiB
  (DuckDB: 141 MB of the plan's table, then a 94 MB hash table), and the send then holds
  DuckDB to 40-60 MB while the process moves between 465 and 565 MiB, its highest samples
  during renders and sends: the 10M peak is the highest of ten times as many batches, not
  memory that grows.
* **End-to-end 1M (missed: load 8.04 s without the 8.86 s blocked on the emulator, vs
  extract and normalize 1.00 s).** Validation, JSON, MD5, the plan's join and the state writes
  are per-row work dlt does not do.
* **Bulk first loads (met: 10 import jobs against 472 upserts, 14.8% of the upsert bytes, at
  10M).** A file carries the same contacts as 48 upserts in 42 MB of gzip CSV instead of
  282 MB of JSON (level-1 gzip). Building the files (`csv_file`) took 2.49 s at 1M. The bulk
  syncs' longer wall time (288 s vs 183 s at 10M) is the emulator's: it applies each 1M-row
  file in Python before it answers the next request, where SendGrid takes minutes per import
  anyway. The bulk loads peaked higher than the upserts (652 MiB at 10M, 583 at 1M): a file's
  contacts (key, hashes, ids) wait in a DuckDB temporary table until its upload is accepted,
  up to 1M rows per file."""


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
        *_bulk(results),
        *_memory(results),
        *_efficiency(results),
        *_equivalence(results),
        LIMITS,
    ]
    return "\n".join(lines)
