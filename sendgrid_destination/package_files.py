"""The job files of one table in the load package dlt is loading: the file a sink call was
handed, and the table's other files still to come.

dlt writes a table in several job files when it rotates files (``file_max_items``,
``file_max_bytes``) or when the table's schema changes during extraction, and calls the sink
once per file, one at a time (``max_parallel_load_jobs = 1``), in the order of a directory
listing. Planned file by file, a contact with rows in two files was sent twice in one load,
and whichever file dlt happened to load last decided its value, differently from one run to
the next (so reruns of unchanged data sent it again). So the first call of a table in a load
takes every file of the table still to come, and the calls for those files find them taken.

* ``table_files(stream, path)``: ``path`` and the table's other job files waiting in the
  package (``new_jobs``, ``started_jobs``), in the order dlt wrote them: by modification
  time, so that a later file's rows come after an earlier one's and the last row of a contact
  wins across the load as within a file. dlt promises no order across files, and this one is
  the order it finished writing them: its normalize step rewrites a file whose columns must
  change (a column added mid-extraction), which then counts as written last. Files written
  within one tick of the file system's clock are ordered by size, then name, so that the
  same rows come in the same order on a rerun. Outside a dlt load (direct calls): ``[path]``.
* ``last_file(stream, files)``: no job file of the table is left in the package but
  ``files`` (a mirrored table is judged once it has seen every row).
* ``file_key(path)``: a job file's name without its retry count, which dlt's retries of the
  file share;
* ``jobs_left()``: whether the package has job files after the one being loaded (a plan
  removes its copy of the state after the last);
* ``tables_to_come(stream)``: the other tables' job files still waiting, by table (a table
  about to delete looks at what they send: ``tables_to_come`` module), and
  ``package_table(name)``: a table of the package's schema (its hints).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

from dlt.common.configuration.container import Container
from dlt.common.storages.load_package import (
    LoadPackageStateInjectableContext,
    PackageStorage,
    TPackageJobState,
)

_WAITING: tuple[TPackageJobState, ...] = ("new_jobs", "started_jobs")


def file_key(path: str) -> str:
    # dlt names a job file <table>.<file_id>.<retry count>.<format>.
    return os.path.basename(path).rsplit(".", 2)[0]


def table_files(stream: str, path: str) -> list[str]:
    """``path`` and the other waiting job files of ``stream``, oldest first."""
    current = file_key(path)
    others = [p for key, p in _waiting(stream) if key != current]
    return sorted([path, *others], key=_written)


def last_file(stream: str, files: Sequence[str]) -> bool:
    """Whether every waiting job file of ``stream`` is one of ``files``."""
    keys = {file_key(p) for p in files}
    return all(key in keys for key, _ in _waiting(stream))


def tables_to_come(stream: str) -> dict[str, list[str]]:
    """The package's other tables with job files still waiting (dlt's own excepted): their
    full paths, by table, oldest first; none outside a load."""
    found = _package_jobs()
    if found is None:
        return {}
    storage, load_id, jobs = found
    tables: dict[str, list[str]] = {}
    for state in _WAITING:
        for job in jobs.get(state, []):
            if job.table_name == stream or job.table_name.startswith("_dlt"):
                continue
            relative = storage.get_job_file_path(load_id, state, job.file_name())
            tables.setdefault(job.table_name, []).append(storage.storage.make_full_path(relative))
    return {table: sorted(paths, key=_written) for table, paths in tables.items()}


def package_table(name: str) -> dict[str, Any]:
    """The load package schema's table ``name`` (its columns and their hints); empty outside
    a load or when the schema cannot be read."""
    found = _package_jobs()
    if found is None:
        return {}
    storage, load_id, _ = found
    try:
        return dict(storage.load_schema(load_id).tables.get(name) or {})
    except Exception:  # no schema in the package: no hints to read
        return {}


def jobs_left() -> bool:
    """Whether the package has job files after the one being loaded (dlt's own tables, such
    as ``_dlt_pipeline_state``, never reach this destination's sink); False outside a load."""
    found = _package_jobs()
    if found is None:
        return False
    jobs = found[2]
    waiting = [j for j in jobs.get("new_jobs", []) if not j.table_name.startswith("_dlt")]
    started = [j for j in jobs.get("started_jobs", []) if not j.table_name.startswith("_dlt")]
    return bool(waiting) or len(started) > 1


def _waiting(stream: str) -> Iterator[tuple[str, str]]:
    """(key, full path) of each job file of ``stream`` not yet loaded; none outside a load."""
    found = _package_jobs()
    if found is None:  # outside a dlt load (direct calls): the call is the whole table
        return
    storage, load_id, jobs = found
    for state in _WAITING:
        for job in jobs.get(state, []):
            if job.table_name != stream:
                continue
            relative = storage.get_job_file_path(load_id, state, job.file_name())
            yield f"{job.table_name}.{job.file_id}", storage.storage.make_full_path(relative)


def _package_jobs() -> tuple[PackageStorage, str, dict[TPackageJobState, list[Any]]] | None:
    """The package being loaded: its storage, load id and job files by state (dlt's)."""
    try:
        context = Container()[LoadPackageStateInjectableContext]
        jobs = context.storage.get_load_package_jobs(context.load_id)
    except Exception:  # outside a dlt load
        return None
    return context.storage, context.load_id, dict(jobs)


def _written(path: str) -> tuple[int, int, str]:
    found = os.stat(path)
    return found.st_mtime_ns, found.st_size, os.path.basename(path)
