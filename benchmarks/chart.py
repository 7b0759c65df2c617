"""The PNG chart: throughput and peak memory versus rows (matplotlib, Agg backend).

Contract: ``draw(results, path)`` reads the dict ``benchmarks.run`` builds (keys
``throughput`` and ``sync``) and writes one PNG with two panels: rows per second of our path
and of the two baselines (log-log), and the peak RSS of the streaming syncs (the bulk first
sync's too). Missing series are skipped, so a partial run still draws.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # the backend must be chosen first


def _series(points: list[tuple[int, float | None]]) -> tuple[list[int], list[float]]:
    kept = [(x, y) for x, y in points if y is not None]
    return [x for x, _ in kept], [y for _, y in kept]


def draw(results: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (speed, memory) = plt.subplots(1, 2, figsize=(11, 4.2))
    throughput = results.get("throughput", [])
    series = {
        "our path": [(t["rows"], t["median"].get("ours_rows_per_second")) for t in throughput]
    }
    for name, label in (
        ("per_row", "per-row baseline (orjson)"),
        ("vectorized", "vectorized baseline (pyarrow + orjson)"),
    ):
        series[label] = [
            (t["rows"], t["median"].get("baselines", {}).get(name, {}).get("rows_per_second"))
            for t in throughput
        ]
    for label, points in series.items():
        xs, ys = _series(points)
        if xs:
            speed.plot(xs, ys, marker="o", label=label)
    speed.set(
        xscale="log",
        yscale="log",
        xlabel="rows",
        ylabel="rows per second (median)",
        title="RecordBatch -> request bodies",
    )
    speed.grid(True, which="both", alpha=0.3)
    speed.legend()
    sizes = results.get("sync", {}).get("sizes", {})
    points = sorted(
        (int(rows), entry["median"]["first"]["peak_rss_bytes"]) for rows, entry in sizes.items()
    )
    xs, ys = _series(points)
    if xs:
        memory.plot(xs, [y / 2**20 for y in ys], marker="o", label="whole sync (VmHWM)")
    bulk_points = sorted(
        (int(rows), entry["median"]["bulk"]["peak_rss_bytes"])
        for rows, entry in sizes.items()
        if "bulk" in entry["median"]
    )
    xs, ys = _series(bulk_points)
    if xs:
        memory.plot(xs, [y / 2**20 for y in ys], marker="s", label="bulk first sync (VmHWM)")
    for step in ("extract", "normalize", "load"):
        step_points = [
            (int(rows), entry["median"]["first"]["steps"].get(step, {}).get("peak_rss_bytes"))
            for rows, entry in sizes.items()
        ]
        xs, ys = _series(sorted(step_points))
        if xs:
            memory.plot(
                xs,
                [y / 2**20 for y in ys],
                marker=".",
                linestyle="--",
                label=f"during {step} (sampled)",
            )
    memory.set(
        xscale="log",
        xlabel="rows",
        ylabel="MiB",
        ylim=(0, None),
        title="Peak RSS streaming through dlt into the emulator",
    )
    memory.grid(True, which="both", alpha=0.3)
    memory.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
