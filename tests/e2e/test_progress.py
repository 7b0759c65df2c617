"""Progress a person can watch: contacts planned, sent and confirmed reach the collector of the
dlt pipeline that loads (``progress=...``), whichever kind it is."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dlt
import pytest
from dlt.common.runtime.collector import Collector

from sendgrid_destination import sendgrid
from sendgrid_destination.emulator import Emulator
from sendgrid_destination.progress import CONFIRMED, PLANNED, SENT, DltProgress
from tests.e2e.conftest import contacts_table


class RecordingCollector(Collector):
    """Keeps every counter and total it was given (dlt's DictCollector forgets at the end)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = defaultdict(int)
        self.totals: dict[str, int] = defaultdict(int)

    def update(
        self,
        name: str,
        inc: int = 1,
        total: int | None = None,
        inc_total: int | None = None,
        message: str | None = None,
        label: str | None = None,
    ) -> None:
        if name not in self.counts and total:
            self.totals[name] = total
        elif inc_total:
            self.totals[name] += inc_total
        self.counts[name] += inc

    def _start(self, step: str) -> None:
        pass

    def _stop(self) -> None:
        pass


def _run(tmp_path: Path, destination: sendgrid, progress: Any, rows: int) -> None:
    pipeline = dlt.pipeline(
        "progress", destination=destination, pipelines_dir=str(tmp_path / "dlt"), progress=progress
    )
    pipeline.run(contacts_table(rows), table_name="contacts")


def test_planned_sent_and_confirmed_contacts_reach_the_pipelines_collector(
    tmp_path: Path, destination: Callable[..., sendgrid]
) -> None:
    collector = RecordingCollector()

    _run(tmp_path, destination(max_contacts_per_request=40), collector, 100)

    assert collector.counts[PLANNED] == 100
    assert (collector.counts[SENT], collector.totals[SENT]) == (100, 100)
    assert (collector.counts[CONFIRMED], collector.totals[CONFIRMED]) == (100, 100)


def test_an_unchanged_rerun_plans_nothing(
    tmp_path: Path, destination: Callable[..., sendgrid]
) -> None:
    _run(tmp_path, destination(), RecordingCollector(), 30)
    collector = RecordingCollector()

    _run(tmp_path, destination(), collector, 30)

    assert collector.counts[PLANNED] == 0
    assert collector.counts[SENT] == 0


@pytest.mark.parametrize("kind", ["log", "tqdm"])
def test_dlts_own_collectors_show_the_counters(
    kind: str,
    tmp_path: Path,
    destination: Callable[..., sendgrid],
    capsys: pytest.CaptureFixture[str],
) -> None:
    _run(tmp_path, destination(), kind, 20)

    captured = capsys.readouterr()
    assert SENT in captured.out + captured.err


def test_alive_progress_keeps_to_its_one_bar_and_the_load_goes_on(
    tmp_path: Path, destination: Callable[..., sendgrid], emulator: Emulator
) -> None:
    # alive_progress cannot show two bars at once: dlt's collector shows the first counter of
    # each step only (the load's jobs), and the destination's updates must not disturb it.
    _run(tmp_path, destination(), "alive_progress", 20)

    assert len(emulator.contacts()) == 20


def test_outside_a_pipeline_progress_is_silently_off() -> None:
    from dlt.common.configuration.container import Container
    from dlt.common.pipeline import PipelineContext

    Container()[PipelineContext].deactivate()  # an earlier test's pipeline may be active
    progress = DltProgress()

    progress.planned(5)
    progress.sent(5)
    progress.confirmed(5)

    assert progress._collector is None
