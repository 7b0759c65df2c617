"""A tiny run of the whole benchmark harness, so ``make bench`` cannot rot.

Runs ``benchmarks.run`` at 2,000 rows, two repeats (each on a fresh state), into a temporary
directory, and checks the shape of what it writes and the facts that do not depend on the
machine: our path and both
baselines send the same bodies and refuse the same rows, every ratio (wall and CPU) is
there, the unchanged rerun sends nothing, the changed rerun sends only the changed contacts,
every sync stays within one request of the minimum, and the bulk first sync (``--bulk
always``) imports every contact in one CSV file in fewer bytes, after which a rerun sends
nothing; and the rerun floor (``benchmarks.rerun_floor``) runs. No timing is asserted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import report
from benchmarks.run import main
from benchmarks.throughput import BASELINES

ROWS = 2_000

# The harness takes ~9 s to set up: `make test-slow` (and CI) runs it, `make test` does not.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str, Path]:
    out = tmp_path_factory.mktemp("bench")
    code = main(
        [
            "--sizes", str(ROWS), "--repeat", "2", "--bulk", "always",
            "--report", str(out / "BENCHMARKS.md"), "--results-dir", str(out / "results"),
            "--workdir", str(out / "work"),
        ]
    )  # fmt: skip
    assert code == 0
    results = json.loads((out / "results" / "latest.json").read_text())
    return results, (out / "BENCHMARKS.md").read_text(), out


def test_it_writes_the_report_the_json_and_the_chart(bench: tuple[dict[str, Any], str, Path]):
    results, text, out = bench
    assert set(results) >= {"machine", "config", "equivalence", "throughput", "sync"}
    assert results["machine"]["cores"] >= 1 and results["machine"]["versions"]["dlt"]
    png = (out / "results" / "throughput_memory.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    for heading in (
        "## Machine",
        "## Reproduce",
        "## Targets",
        "## 1-2.",
        "## 3-4, 7.",
        "## 7b. Bulk first loads",
        "## 5. Peak memory",
        "## 6. Request efficiency",
        "## What limits it",
    ):
        assert heading in text
    assert "python -m benchmarks.run --sizes 2000 --repeat 2" in text
    assert len(report.targets(results)) == 14


def test_state_writes_are_judged_per_row_against_1m_and_as_a_share_of_the_first_pass():
    def size(rows: int, record: float, path: float) -> dict[str, object]:
        return {"rows": rows, "median": {"ours_record_seconds": record, "ours_seconds": path}}

    results = {"throughput": [size(1_000_000, 4.0, 6.0), size(10_000_000, 44.0, 60.0)]}
    linear, share = report._state_write_targets(results)
    assert (linear.met, share.met) == (True, False)
    assert linear.measured.startswith("1.10x per row: 44.00 s at 10,000,000")
    assert share.measured == "40%: 4.00 s of 10.00 s"
    results = {"throughput": [size(1_000_000, 1.0, 9.0), size(5_000_000, 6.0, 45.0)]}
    linear, share = report._state_write_targets(results)
    assert (linear.met, share.met) == (False, True)  # 5M / 1M = 6x > 5.5x; 10%


def test_every_path_sends_the_same_bodies_and_refuses_the_same_rows(bench):
    eq = bench[0]["equivalence"]
    assert eq["same"]
    ours = eq["paths"]["ours"]
    assert ours["contacts"] > 0 and ours["rejected_rows"] == eq["rejected_expected"] > 0
    for name in BASELINES:
        assert eq[name] == {"contacts": True, "bodies": True, "rejected_rows": True}
        assert eq["paths"][name] == ours


def test_the_in_process_paths_measured_both_passes_and_every_ratio(bench):
    (entry,) = bench[0]["throughput"]
    run = entry["runs"][0]
    assert run["ours"]["unchanged"]["requests"] == 0
    for name in BASELINES:
        for key in ("requests", "body_bytes", "contacts", "rejected_rows"):
            assert run[name]["first"][key] == run["ours"]["first"][key]
        assert run[name]["unchanged"]["requests"] == 0
        assert run[name]["first"]["cpu_seconds"] > 0
        ratios = entry["median"]["baselines"][name]["ratios"]
        assert set(ratios) == {"wall", "cpu", "wall_with_state", "cpu_with_state"}
        assert all(value > 0 for value in ratios.values())
    assert entry["median"]["ours_rows_per_second"] > 0
    assert entry["median"]["ours_cpu_seconds"] > 0
    # The render floor renders every generated row (bad ones too: it checks nothing).
    assert run["floor"]["rows"] == ROWS and run["floor"]["seconds"] > 0
    assert entry["median"]["over_floor"]["wall"] > 0


def test_reruns_send_nothing_unchanged_and_only_what_changed(bench):
    sizes = bench[0]["sync"]["sizes"]
    entry = sizes[str(ROWS)]
    run = entry["runs"][0]
    assert run["first"]["summary"]["rows_read"] == ROWS
    assert run["unchanged"]["emulator"]["upserts"] == 0
    assert run["unchanged"]["summary"]["contacts_sent"] == 0
    assert run["changed"]["summary"]["contacts_sent"] == entry["changed_contacts"] > 0
    assert run["changed"]["emulator"]["contacts"] == entry["changed_contacts"]


def test_the_reference_is_dlt_loading_the_same_source_into_duckdb_and_the_report_judges_it(
    bench,
):
    results, text, _ = bench
    entry = results["sync"]["sizes"][str(ROWS)]
    reference = entry["runs"][0]["dlt_duckdb"]
    assert reference["destination"] == "duckdb"
    assert reference["wall_seconds"] > 0 and reference["cpu_seconds"] > 0
    assert entry["median"]["dlt_duckdb"]["cpu_seconds"] > 0
    assert entry["median"]["first"]["cpu_seconds"] > 0
    judged = {v.target: v for v in report.targets(results)}
    for target in (
        "Unchanged 1M rerun: the whole pipeline.run <= 0.6x dlt -> duckdb (wall)",
        "Whole first 1M sync: the syncing process's CPU seconds <= 1.5x dlt -> duckdb",
    ):
        assert judged[target].met is not None and "x: " in judged[target].measured
    assert "reference: dlt -> its duckdb destination, same source" in text
    # The least the rerun could take here: dlt's own steps of it plus the rerun floor.
    assert results["rerun_floor"]["rows"] == ROWS
    rerun = judged["Unchanged 1M rerun: the whole pipeline.run <= 0.6x dlt -> duckdb (wall)"]
    assert rerun.note.startswith("the least possible here: ")


def test_requests_stay_within_one_of_the_minimum(bench):
    results = bench[0]
    for entry in results["sync"]["sizes"].values():
        first = entry["runs"][0]["first"]["emulator"]
        assert first["accepted"] >= 1 and first["extra"] <= 1
    for entry in results["throughput"]:
        assert entry["median"]["ours_efficiency"]["extra"] <= 1


def test_the_bulk_first_sync_imports_every_contact_in_one_file_and_its_rerun_sends_nothing(
    bench,
):
    run = bench[0]["sync"]["sizes"][str(ROWS)]["runs"][0]
    imports, upserted = run["bulk"]["imports"], run["first"]["emulator"]
    assert (imports["imports"], imports["files"]) == (1, 1)
    assert imports["contacts"] == upserted["contacts"] > 0
    assert run["bulk"]["emulator"]["upserts"] == 0
    assert 0 < imports["wire_bytes"] < upserted["body_bytes"]
    assert run["bulk"]["summary"]["imports"] == 1
    assert run["bulk_unchanged"]["emulator"]["upserts"] == 0
    assert run["bulk_unchanged"]["imports"]["imports"] == 0
    assert run["bulk_unchanged"]["summary"]["unchanged"] == imports["contacts"]


def test_memory_and_steps_are_reported(bench):
    first = bench[0]["sync"]["sizes"][str(ROWS)]["runs"][0]["first"]
    assert first["peak_rss_bytes"] > 0
    assert set(first["steps"]) == {"extract", "normalize", "load"}


def test_missed_speed_targets_say_what_the_render_floor_alone_would_score():
    at = {
        "ours_rows_per_second": 2e5,
        "floor_seconds": 2.0,
        "floor_cpu_seconds": 4.0,
        "over_floor": {"wall": 2.5},
        "baselines": {
            "per_row": {
                "seconds": 18.0,
                "cpu_seconds": 18.0,
                "ratios": {"wall_with_state": 3.5, "cpu_with_state": 2.2},
            }
        },
    }
    results = {"config": {"rerun_rows": 1_000_000}, "throughput": [
        {"rows": 1_000_000, "median": at}
    ]}  # fmt: skip
    _, wall, cpu, _ = report._speed_targets(results)
    assert (wall.met, wall.note) == (False, "the render floor alone scores 9.0x")
    assert (cpu.met, cpu.note) == (False, "the render floor alone scores 4.5x")


def test_the_least_possible_rerun_is_dlts_own_steps_plus_the_rerun_floor():
    steps = {"extract": {"seconds": 0.9}, "normalize": {"seconds": 0.1}, "load": {"seconds": 1.5}}
    at = {"unchanged": {"steps": steps}, "dlt_duckdb": {"wall_seconds": 2.5}}
    results = {"rerun_floor": {"floor": {"seconds": 0.5}}}
    assert report._least_rerun_note(results, at) == (
        "the least possible here: 0.60x, dlt's extract and normalize 1.00 s + the rerun floor "
        "0.50 s"
    )
    assert report._least_rerun_note({}, at) == ""  # a report of a run without the floor


def test_the_rerun_floor_times_its_query_and_our_plan_of_every_row_found_unchanged() -> None:
    from benchmarks import rerun_floor

    found = rerun_floor.measure(ROWS, repeat=1)

    assert found["rows"] == ROWS
    for name in ("floor", "plan"):
        assert found[name]["seconds"] > 0 and found[name]["cpu_seconds"] >= 0
    assert found["plan_over_floor"] > 0  # measure() asserts the plan rendered nothing
