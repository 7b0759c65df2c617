"""The benchmark refuses to compare paths that do different work.

A ratio between our path and a baseline only means something when both send the same
bodies: these tests break a baseline on purpose (``json.dumps`` with its default spaces, a
check left out) and expect ``EquivalenceError`` from the equivalence check and from a
throughput repeat, and expect the real baselines to pass both.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import baseline, data, throughput
from benchmarks.baseline import PerRowBaseline
from benchmarks.throughput import EquivalenceError, check_equivalence, measure

ROWS = 1_000


class _SpacedJson(PerRowBaseline):
    """Encodes with ``json.dumps`` defaults: the same contacts in more bytes."""

    encode = staticmethod(lambda contact: json.dumps(contact).encode())


def test_the_real_baselines_send_the_destinations_bytes_and_refuse_its_rows() -> None:
    found = check_equivalence(ROWS)

    assert found["same"]
    assert found["paths"]["per_row"] == found["paths"]["vectorized"] == found["paths"]["ours"]
    assert found["paths"]["ours"]["rejected_rows"] == data.bad_row_count(ROWS) > 0


def test_a_baseline_sending_other_bytes_stops_the_equivalence_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(throughput.BASELINES, "per_row", lambda: _SpacedJson(data.CUSTOM_IDS))

    with pytest.raises(EquivalenceError, match="per_row: different bodies"):
        check_equivalence(ROWS)


def test_a_baseline_sending_other_bytes_stops_a_throughput_repeat(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(throughput.BASELINES, "vectorized", lambda: _SpacedJson(data.CUSTOM_IDS))

    with pytest.raises(EquivalenceError, match=r"vectorized baseline .*\(body_bytes"):
        measure(ROWS, repeat=1, workdir=tmp_path, progress=lambda _: None)


def test_a_baseline_refusing_other_rows_stops_the_equivalence_check(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(baseline.MAX_LENGTH, "first_name", None)  # forgets a maxLength

    with pytest.raises(EquivalenceError, match="different rejected_rows"):
        check_equivalence(ROWS)
