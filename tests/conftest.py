"""Settings for the whole suite, applied before any test module imports dlt.

* Offline by default: dlt sends anonymous usage telemetry unless ``RUNTIME__DLTHUB_TELEMETRY``
  is false, so the suite sets it (whatever the shell says) for itself and every subprocess it
  starts. tests/packaging/test_offline_by_default.py checks that a pipeline run here sends none.
* dlt's load loop waits for a finished job with a 1 s timeout, and a job that needs no work
  (the ``_dlt_pipeline_state`` job of a first run, which this destination skips) finishes
  without waking it: every pipeline's first load idled a full second, about 100 s of the
  suite. The loop polls every 50 ms here instead. This changes when dlt notices a job is done,
  not what any job does; subprocesses (crash trials, the wheel and quick-start tests) keep
  dlt's own interval.
"""

from __future__ import annotations

import os
from typing import Any

os.environ["RUNTIME__DLTHUB_TELEMETRY"] = "false"  # before dlt is imported, to be sure

from dlt.load.load import Load

LOAD_LOOP_POLL_SECONDS = 0.05
_dlt_load_init = Load.__init__


def _load_init_polling_faster(self: Load, *args: Any, **kwargs: Any) -> None:
    _dlt_load_init(self, *args, **kwargs)
    # A renamed attribute must fail loudly, not silently bring the idle seconds back.
    assert self._run_loop_sleep_duration == 1.0, "dlt's load loop changed: revisit conftest"
    self._run_loop_sleep_duration = LOAD_LOOP_POLL_SECONDS


Load.__init__ = _load_init_polling_faster  # type: ignore[method-assign]
