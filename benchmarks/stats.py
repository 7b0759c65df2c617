"""What one pass of any path over the batches did, timed in wall and in CPU seconds.

Contract: every path (``ours``, ``baseline``, ``vectorized``) fills one ``PassStats`` per pass:
rows, requests, bytes, contacts, rejected rows, and the time of the whole pass and of named
stages, each as wall seconds (``time.perf_counter``) and CPU seconds of the process, every
thread included (``time.process_time``: DuckDB's threads count, so a path that wins by
using the second core shows it). ``record`` is the one stage timed apart: our path's state
writes after each "202", which the baselines do as a dict update inside the pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

BodySink = Callable[[bytes, int], None]  # (body bytes, contact count)
Mark = tuple[float, float]  # (wall, CPU) seconds at some instant


def mark() -> Mark:
    """Now, as (wall, CPU) seconds."""
    return time.perf_counter(), time.process_time()


@dataclass
class PassStats:
    """What one pass over the batches did, and how long it took (wall and CPU)."""

    rows: int = 0
    seconds: float = 0.0  # wall time of the whole pass, recording included
    cpu_seconds: float = 0.0  # CPU time of the whole pass, every thread, recording included
    requests: int = 0
    body_bytes: int = 0
    contacts: int = 0
    rejected_rows: int = 0
    rejected_row_numbers: list[int] = field(default_factory=list)
    stage_seconds: dict[str, float] = field(default_factory=dict)  # wall time per stage
    stage_cpu_seconds: dict[str, float] = field(default_factory=dict)  # CPU time per stage

    def add_time(self, stage: str, started: Mark) -> Mark:
        """Charge the time since ``started`` to ``stage``; return now."""
        now = mark()
        self.stage_seconds[stage] = self.stage_seconds.get(stage, 0.0) + now[0] - started[0]
        self.stage_cpu_seconds[stage] = self.stage_cpu_seconds.get(stage, 0.0) + now[1] - started[1]
        return now

    def finish(self, started: Mark) -> None:
        """The whole pass ran from ``started`` until now."""
        now = mark()
        self.seconds, self.cpu_seconds = now[0] - started[0], now[1] - started[1]

    @property
    def record_seconds(self) -> float:
        """Of ``seconds``: writing the state after each "202" (our path only)."""
        return self.stage_seconds.get("record", 0.0)

    @property
    def record_cpu_seconds(self) -> float:
        return self.stage_cpu_seconds.get("record", 0.0)

    @property
    def path_seconds(self) -> float:
        """The path alone: map, coerce, validate, hash, diff, pack."""
        return self.seconds - self.record_seconds

    @property
    def path_cpu_seconds(self) -> float:
        return self.cpu_seconds - self.record_cpu_seconds
