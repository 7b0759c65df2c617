"""Finishing what a killed process left half done in dlt's working folder.

dlt moves a load package between its folders in two steps, and a process killed between them
(SIGKILL, the OOM killer, a lost machine: nothing dlt's signal handling sees) leaves it in two
places. dlt (1.31) neither completes nor undoes those moves, and its own remedies
(``abort_packages()``, ``drop_pending_packages()``) fail the same way, so every later run
fails:

* **normalize committed, its input not yet deleted** (``Normalize.spool_files``: the rename of
  ``load/new/<id>`` to ``load/normalized/<id>``, then the delete of
  ``normalize/extracted/<id>``). The next ``run()`` normalizes the leftover again under the same
  load id and loads it a second time; completing it then fails renaming ``load/normalized/<id>``
  onto the ``load/loaded/<id>`` the first copy became: ``OSError: [Errno 39] Directory not
  empty``. A kill inside the delete leaves part of the input: ``FileNotFoundError`` for its
  ``schema.json``.
* **completed, not yet archived** (``LoadStorage.complete_load_package``: the
  ``package_completed.json`` marker, then the rename to ``load/loaded/<id>``). Every later
  load fails with ``LoadPackageAlreadyCompleted``; so does the ``Directory not empty`` run
  above, which wrote the marker before its rename failed.

``finish_interrupted_moves(pipeline)`` (``run_sync``, ``plan_run`` and the example pipeline
call it before loading) finishes each such move as dlt would have: it deletes the extracted
copy of a package already normalized (what normalize was about to do), archives a package
marked completed (what the loader was about to do; the destination's ``complete_load`` ran
before the marker), and deletes a second, normalized copy of a package already archived. It
touches nothing else: a package also still in ``load/new`` (dlt's rename fell back to moving
file by file, on EMFILE, and was killed part-way) is left as it is, with a warning.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from dlt.common.storages.load_package import PackageStorage
from dlt.common.storages.load_storage import LoadStorage
from dlt.common.storages.normalize_storage import NormalizeStorage

logger = logging.getLogger(__name__)

_COMPLETED = PackageStorage.PACKAGE_COMPLETED_FILE_NAME


def finish_interrupted_moves(pipeline: Any) -> list[str]:
    """Finishes the package moves a killed process left half done in ``pipeline``'s working
    folder (module doc); returns one line for each thing it did (also logged as warnings)."""
    working = Path(pipeline.working_dir)
    extracted = working / "normalize" / NormalizeStorage.EXTRACTED_FOLDER
    normalized = working / "load" / LoadStorage.NORMALIZED_FOLDER
    loaded = working / "load" / LoadStorage.LOADED_FOLDER
    new = working / "load" / LoadStorage.NEW_PACKAGES_FOLDER
    done: list[str] = []

    def archived(load_id: str) -> bool:
        return (loaded / load_id / _COMPLETED).is_file()

    for load_id in _packages(extracted):
        if (new / load_id).exists() and (normalized / load_id).is_dir():
            # The commit's rename fell back to moving file by file (dlt does on EMFILE) and
            # was killed part-way: the input is all that holds the rest. Left to dlt.
            logger.warning(
                "dlt's working folder: %s is in both %s and %s: a process was killed while "
                "dlt moved it; left as it is (if runs keep failing, `dlt pipeline <name> drop` "
                "or delete the pipeline's folder)",
                load_id,
                new,
                normalized,
            )
        elif (normalized / load_id).is_dir() or archived(load_id):
            shutil.rmtree(extracted / load_id)
            done.append(
                f"deleted {extracted / load_id}: a process was killed after normalizing it, "
                "before it deleted this input"
            )
    for load_id in _packages(normalized):
        package = normalized / load_id
        if archived(load_id):
            shutil.rmtree(package)
            done.append(f"deleted {package}: a second copy of {loaded / load_id}")
        elif (package / _COMPLETED).is_file() and not (loaded / load_id).exists():
            os.rename(package, loaded / load_id)
            done.append(
                f"moved {package} to {loaded}: a process was killed after completing it, "
                "before it archived it"
            )
    for line in done:
        logger.warning("dlt's working folder: %s", line)
    return done


def _packages(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    return sorted(entry.name for entry in folder.iterdir() if entry.is_dir())
