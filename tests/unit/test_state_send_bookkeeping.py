"""What a send clears is found whether or not the store counted it before: a deferred contact,
a refusal by SendGrid this run, a row refused for good, each added between two sends of one
open store, is cleared by the second send of its contact; seqs stay one per request."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from sendgrid_destination.schemas import REJECTS, RENDERED
from sendgrid_destination.state import StateStore


def _sent(keys: list[str], *, new: bool = True) -> pa.Table:
    n = len(keys)
    return pa.table(
        {
            "contact_key": keys,
            "content_hash": pa.array([1] * n, pa.uint64()),
            "fingerprint": pa.array([1] * n, pa.uint64()),
            "is_new": [new] * n,
            "ids": pa.nulls(n, pa.string()),
            "list_scope": [""] * n,
        }
    )


def _defer(store: StateStore) -> None:
    row = {name: None for name in RENDERED.names}
    row.update(contact_key="email:x@x.co", row_number=0, is_new=False, pending=False)
    row.update(retry=False, contact_json="{}", list_scope="")
    store.defer("run", "s", pa.Table.from_pylist([row], schema=RENDERED))


def _refuse(store: StateStore) -> None:
    rejects = pa.Table.from_pylist(
        [{"row_number": 0, "contact_key": "email:x@x.co", "column": "email", "reason": "bad"}],
        schema=REJECTS,
    )
    store.record_rejects(run_id="run", stream="s", rejects=rejects, stage="api")


def _refuse_for_good(store: StateStore) -> None:
    refused = pa.table(
        {
            "contact_key": ["email:x@x.co"],
            "fingerprint": pa.array([1], pa.uint64()),
            "reason": ["bad"],
            "content_hash": pa.array([1], pa.uint64()),
        }
    )
    store.record_refused_for_good("run", "s", refused)


@pytest.mark.parametrize(
    ("add", "table"),
    [(_defer, "deferred"), (_refuse, "rejects"), (_refuse_for_good, "refused")],
)
def test_a_row_added_between_two_sends_is_cleared_by_the_send_of_its_contact(
    tmp_path: Path, add: Callable[[StateStore], None], table: str
) -> None:
    with StateStore.open(tmp_path / "state.duckdb") as store:
        for job in ("j1", "j2"):  # the second send finds nothing to clear
            keys = [f"email:{job}@x.co"]
            store.record_sent(
                run_id="run", stream="s", job_id=job, contacts=_sent(keys), body_bytes=1
            )
        add(store)
        assert store.con.execute(f"SELECT count(*) FROM {table}").fetchall() == [(1,)]

        store.record_sent(
            run_id="run", stream="s", job_id="j3", contacts=_sent(["email:x@x.co"]), body_bytes=1
        )

        assert store.con.execute(f"SELECT count(*) FROM {table}").fetchall() == [(0,)]
        seqs = store.con.execute("SELECT seq FROM requests ORDER BY seq").fetchall()
        assert seqs == [(1,), (2,), (3,)]


def test_seqs_go_on_from_the_file_after_reopening_and_after_a_failed_recording(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.duckdb"
    with StateStore.open(path) as store:
        store.record_sent(run_id="r", stream="s", job_id="j1", contacts=_sent(["a"]), body_bytes=1)
        with pytest.raises(duckdb.ConstraintException):  # the job id is taken
            store.record_sent(
                run_id="r", stream="s", job_id="j1", contacts=_sent(["b"]), body_bytes=1
            )
        store.record_sent(run_id="r", stream="s", job_id="j2", contacts=_sent(["c"]), body_bytes=1)
    with StateStore.open(path) as store:
        store.record_sent(run_id="r", stream="s", job_id="j3", contacts=_sent(["d"]), body_bytes=1)
        seqs = store.con.execute("SELECT job_id, seq FROM requests ORDER BY seq").fetchall()
    assert seqs == [("j1", 1), ("j2", 2), ("j3", 3)]


def test_the_counters_a_killed_attempt_kept_are_adopted_once_or_pruned_with_its_run(
    tmp_path: Path,
) -> None:
    progress = {"requests": 1, "contacts_sent": 1}
    with StateStore.open(tmp_path / "state.duckdb") as store:
        for run in ("r1", "r2"):
            store.start_run(run, "s")
            store.record_sent(
                run_id=run, stream="s", job_id=f"j-{run}", contacts=_sent([f"email:{run}@x.co"]),
                body_bytes=1, progress=progress,
            )  # fmt: skip
        # r2's next attempt adopts what its killed attempt kept, once.
        assert store.adopt_killed_attempt("r2", "f") is True
        assert store.adopt_killed_attempt("r2", "f") is False
        (row,) = store.con.execute("SELECT sent FROM run_files WHERE run_id = 'r2'").fetchall()
        assert '"contacts_sent": 1' in row[0]
        # r1 never completes: its counters go with its run when runs are pruned.
        store.start_run("r3", "s")
        store.prune_runs("s", keep=1)
        left = store.con.execute("SELECT key FROM meta WHERE prefix(key, 'attempt.')").fetchall()
    assert left == []
