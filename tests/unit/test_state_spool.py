"""The spool: a request's contact rows, written beside the state before its recording commits
and merged into ``contacts`` in bulk, are never lost, never merged twice, and never taken
from a recording that did not commit."""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from sendgrid_destination.state import StateStore
from sendgrid_destination.state import spool as spool_module
from sendgrid_destination.state import store as store_module
from sendgrid_destination.state.snapshot import read_snapshot
from sendgrid_destination.state.spool import spool_dir

ROOT = Path(__file__).resolve().parents[2]


def _sent(n: int, first: int = 0) -> pa.Table:
    return pa.table(
        {
            "contact_key": [f"email:u{i}@x.co" for i in range(first, first + n)],
            "content_hash": pa.array(range(first, first + n), pa.uint64()),
            "fingerprint": pa.array([7] * n, pa.uint64()),
            "is_new": [True] * n,
            "ids": pa.nulls(n, pa.string()),
            "list_scope": ["L1"] * n,
        }
    )


def _record(store: StateStore, job: str, contacts: pa.Table) -> None:
    store.record_sent(run_id="r1", stream="s", job_id=job, contacts=contacts, body_bytes=1)


def _contacts(store: StateStore) -> list[tuple[object, ...]]:
    return store.con.execute(
        "SELECT contact_key, content_md5, fingerprint, seq, first_seq, lists FROM contacts "
        "ORDER BY contact_key"
    ).fetchall()


def _killed_after_recording(state: Path, requests: int) -> None:
    """A process that records ``requests`` requests of 3 contacts and dies (no close)."""
    code = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from tests.unit.test_state_spool import _record, _sent
        from sendgrid_destination.state import StateStore
        with StateStore.open(Path({str(state)!r})) as store:
            for i in range({requests}):
                _record(store, f"j{{i}}", _sent(3, first=3 * i))
            os._exit(0)
        """
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_recorded_contacts_are_in_the_state_as_soon_as_anything_reads_it(tmp_path: Path) -> None:
    with StateStore.open(tmp_path / "s.duckdb") as store:
        _record(store, "j1", _sent(2))
        _record(store, "j2", _sent(2, first=2))
        assert len(list(spool_dir(store.path).iterdir())) == 2

        rows = _contacts(store)

    assert [r[0] for r in rows] == [f"email:u{i}@x.co" for i in range(4)]
    # (content hash, fingerprint, seq, first seq, lists): each request's own seq
    assert [r[1:] for r in rows] == [
        (0, 7, 1, 1, "L1"),
        (1, 7, 1, 1, "L1"),
        (2, 7, 2, 2, "L1"),
        (3, 7, 2, 2, "L1"),
    ]
    assert list(spool_dir(tmp_path / "s.duckdb").iterdir()) == []


def test_a_killed_process_s_recorded_contacts_are_merged_when_the_state_is_next_opened(
    tmp_path: Path,
) -> None:
    state = tmp_path / "s.duckdb"
    _killed_after_recording(state, requests=3)
    assert len(list(spool_dir(state).glob("*.arrow"))) == 3

    with StateStore.open(state) as store:
        assert len(_contacts(store)) == 9
    with StateStore.open(state) as store:  # merged once, not again
        assert len(_contacts(store)) == 9
        assert store.con.execute("SELECT count(*) FROM requests").fetchall() == [(3,)]


def test_a_read_only_open_after_a_killed_process_sees_its_recorded_contacts(
    tmp_path: Path,
) -> None:
    state = tmp_path / "s.duckdb"
    _killed_after_recording(state, requests=2)

    with StateStore.open(state, read_only=True) as store:
        assert len(_contacts(store)) == 6


def test_the_rows_of_a_recording_that_did_not_commit_are_never_merged(tmp_path: Path) -> None:
    state = tmp_path / "s.duckdb"
    _killed_after_recording(state, requests=1)
    # As if the process had died after writing request 2's file, before its commit.
    uncommitted = (spool_dir(state) / "1.arrow").read_bytes()
    (spool_dir(state) / "2.arrow").write_bytes(uncommitted)

    with StateStore.open(state) as store:
        assert len(_contacts(store)) == 3
        assert store.con.execute("SELECT DISTINCT seq FROM contacts").fetchall() == [(1,)]
    assert list(spool_dir(state).iterdir()) == []


def test_files_left_by_a_merge_that_committed_are_not_merged_again(tmp_path: Path) -> None:
    state = tmp_path / "s.duckdb"
    with StateStore.open(state) as store:
        _record(store, "j1", _sent(3))
        left = (spool_dir(state) / "1.arrow").read_bytes()
        assert len(_contacts(store)) == 3  # merged: the file is gone
    # As if the process died between the merge's commit and deleting its files.
    (spool_dir(state) / "1.arrow").write_bytes(left)

    with StateStore.open(state) as store:
        assert len(_contacts(store)) == 3
    assert list(spool_dir(state).iterdir()) == []


def test_an_unreadable_spool_file_costs_a_resend_of_its_contacts_not_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "s.duckdb"
    _killed_after_recording(state, requests=2)
    damaged = spool_dir(state) / "2.arrow"
    damaged.write_bytes(damaged.read_bytes()[:100])  # the machine went down mid-write

    with caplog.at_level(logging.WARNING), StateStore.open(state) as store:
        keys = [r[0] for r in _contacts(store)]

    assert keys == [f"email:u{i}@x.co" for i in range(3)]
    assert "request 2 are not known as sent" in caplog.text
    assert "@" not in caplog.text


def test_recorded_rows_are_merged_once_they_reach_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "MERGE_ROWS", 5)
    with StateStore.open(tmp_path / "s.duckdb") as store:
        _record(store, "j1", _sent(3))
        assert store._spool.rows == 3
        _record(store, "j2", _sent(3, first=3))
        assert store._spool.rows == 0
        assert list(spool_dir(store.path).iterdir()) == []


def test_a_snapshot_taken_during_a_load_holds_the_contacts_it_has_not_merged_yet(
    tmp_path: Path,
) -> None:
    with StateStore.open(tmp_path / "s.duckdb") as store:
        _record(store, "j1", _sent(3))
        _record(store, "j2", _sent(2, first=3))

        with read_snapshot(store.path) as snapshot:
            assert len(_contacts(snapshot)) == 5
        assert len(list(spool_dir(store.path).glob("*.arrow"))) == 2  # the load's own, intact


def _interrupt_after_commit(module: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next transaction of ``module`` commits, then raises (dlt's second Ctrl-C, or an
    error DuckDB reports after its commit took effect)."""
    original = module.transaction  # type: ignore[attr-defined]
    fired: list[bool] = []

    @contextlib.contextmanager
    def interrupted(cur: Any) -> Iterator[None]:
        with original(cur):
            yield
        if not fired:
            fired.append(True)
            raise KeyboardInterrupt

    monkeypatch.setattr(module, "transaction", interrupted)


def test_a_recording_interrupted_after_its_commit_keeps_its_contacts_in_the_same_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with StateStore.open(tmp_path / "s.duckdb") as store:
        _record(store, "j1", _sent(3))  # in the spool
        _interrupt_after_commit(store_module, monkeypatch)
        with pytest.raises(KeyboardInterrupt):
            _record(store, "j2", _sent(3, first=3))  # committed, never counted
        monkeypatch.undo()

        per_seq = store.con.execute("SELECT seq, count(*) FROM contacts GROUP BY ALL ORDER BY 1")
        assert per_seq.fetchall() == [(1, 3), (2, 3)]


def test_a_merge_interrupted_after_its_commit_is_not_merged_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with StateStore.open(tmp_path / "s.duckdb") as store:
        _record(store, "j1", _sent(3))
        _interrupt_after_commit(spool_module, monkeypatch)
        with pytest.raises(KeyboardInterrupt):
            store.con  # noqa: B018 (the merge)
        monkeypatch.undo()
        _record(store, "j2", _sent(2, first=3))

        keys = [r[0] for r in _contacts(store)]
    assert keys == [f"email:u{i}@x.co" for i in range(5)]  # each once


def test_a_committed_request_whose_spool_file_is_missing_is_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = tmp_path / "s.duckdb"
    _killed_after_recording(state, requests=2)
    (spool_dir(state) / "2.arrow").unlink()  # the machine went down before it reached disk

    with caplog.at_level(logging.WARNING), StateStore.open(state) as store:
        assert len(_contacts(store)) == 3
    assert "request 2 are not known as sent" in caplog.text


def test_a_merge_that_failed_is_made_by_the_next_use_of_the_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = spool_module._insert

    def fails_once(*args: Any) -> None:
        monkeypatch.setattr(spool_module, "_insert", original)
        raise OSError("No space left on device")  # before anything was written

    with StateStore.open(tmp_path / "s.duckdb") as store:
        _record(store, "j1", _sent(3))
        monkeypatch.setattr(spool_module, "_insert", fails_once)
        with pytest.raises(OSError):
            store.con  # noqa: B018 (the merge)

        assert len(_contacts(store)) == 3
