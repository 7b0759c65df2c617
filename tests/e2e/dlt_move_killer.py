"""A process SIGKILLed inside one of dlt's two-step package moves, for
``test_killed_package_moves.py``.

Usage: python -m tests.e2e.dlt_move_killer POINT (sink PIPELINES_DIR OUT | cli ARGS...)

POINT is where the process kills itself: ``normalize-commit`` (normalize renamed
``load/new/<id>`` to ``load/normalized/<id>`` and has not deleted ``normalize/extracted/<id>``),
``package-complete`` (the loader wrote ``package_completed.json`` and has not renamed the package
to ``load/loaded/<id>``) or ``none``. ``sink`` runs ``sink_run`` (a pending load, then new rows,
into a custom destination that appends each load id it receives to OUT, one per line); ``cli``
runs ``sendgrid-destination ARGS``.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

import dlt
from dlt.common.storages.load_package import PackageStorage
from dlt.common.storages.load_storage import LoadStorage


def kill_at(point: str) -> None:
    def killing(original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
            return result

        return wrapper

    if point == "normalize-commit":
        LoadStorage.commit_new_load_package = killing(LoadStorage.commit_new_load_package)
    elif point == "package-complete":
        PackageStorage.complete_loading_package = killing(PackageStorage.complete_loading_package)
    else:
        assert point == "none", point


def sink_run(pipelines_dir: str, out: str, *, finish_moves: bool = True) -> None:
    """What a scheduled task does: a pending load first, then one new row."""
    from sendgrid_destination.dlt_packages import finish_interrupted_moves

    @dlt.destination(batch_size=0, name="recording")
    def recording(items: Any, table: Any) -> None:
        with open(out, "a") as f:
            f.write(dlt.current.load_package_state()["load_id"] + "\n")

    pipeline = dlt.pipeline("moves", destination=recording, pipelines_dir=pipelines_dir)
    if finish_moves:
        finish_interrupted_moves(pipeline)
    if pipeline.has_pending_data:
        pipeline.load()
    pipeline.run([{"id": 1}], table_name="items")


if __name__ == "__main__":
    kill_at(sys.argv[1])
    if sys.argv[2] == "sink":
        sink_run(sys.argv[3], sys.argv[4], finish_moves=os.environ.get("FINISH_MOVES") != "0")
    else:
        from sendgrid_destination.cli import main

        sys.exit(main(sys.argv[3:]))
