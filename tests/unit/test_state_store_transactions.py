"""The state store's multi-statement writes are all-or-nothing."""

from __future__ import annotations

import stat
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from sendgrid_destination.errors import ConfigurationError
from sendgrid_destination.state import ContactStatus, StateStore


def _sent(n: int) -> pa.Table:
    return pa.table(
        {
            "contact_key": [f"email:u{i}@x.co" for i in range(n)],
            "content_hash": pa.array([1] * n, pa.uint64()),
            "fingerprint": pa.array([1] * n, pa.uint64()),
            "is_new": [True] * n,
            "ids": pa.nulls(n, pa.string()),
            "list_scope": [""] * n,
        }
    )


def _count(store: StateStore, table: str) -> int:
    return int(store.con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])


def test_a_recording_that_fails_half_way_leaves_neither_the_request_nor_its_contacts(
    tmp_path: Path,
) -> None:
    with StateStore.open(tmp_path / "state.duckdb") as store:
        # A jobs row already holding the id makes the second statement of record_sent fail
        # after the first (the requests row) succeeded.
        store.con.execute(
            "INSERT INTO jobs (job_id, run_id, stream, status) VALUES ('j1', 'r0', 's', 'x')"
        )

        with pytest.raises(duckdb.ConstraintException):
            store.record_sent(
                run_id="r1", stream="s", job_id="j1", contacts=_sent(3), body_bytes=10
            )

        assert (_count(store, "requests"), _count(store, "contacts")) == (0, 0)
        # The store is still usable: the next recording commits.
        store.record_sent(run_id="r1", stream="s", job_id="j2", contacts=_sent(3), body_bytes=10)
        assert (_count(store, "requests"), _count(store, "contacts")) == (1, 3)


def test_a_job_outcome_that_fails_half_way_changes_nothing(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "state.duckdb") as store:
        store.record_sent(run_id="r1", stream="s", job_id="j1", contacts=_sent(2), body_bytes=1)
        job = {
            "id": "j1",
            "status": "errored",
            "created_count": 1,
            "updated_count": 0,
            "errored_count": 1,
            "errors_url": None,
        }
        # The failed contacts' table lacks the reason column: the statement after the job's
        # update fails.
        broken = pa.table({"contact_key": ["email:u0@x.co"]})

        with pytest.raises(KeyError):
            store.record_job_outcome(job, failed=broken, contacts_status=ContactStatus.ACCEPTED)

        status = store.con.execute("SELECT status FROM jobs WHERE job_id = 'j1'").fetchall()
        assert status == [("pending",)]


def test_a_lock_file_replaced_by_a_symbolic_link_is_refused_and_its_target_untouched(
    tmp_path: Path,
) -> None:
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    target.chmod(0o644)
    state = tmp_path / "state.duckdb"
    (tmp_path / "state.duckdb.lock").symlink_to(target)

    with pytest.raises(ConfigurationError, match="symbolic link"), StateStore.open(state):
        pass

    assert target.read_text() == "keep me"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
