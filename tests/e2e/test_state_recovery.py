"""A state file that lost what it recorded, or cannot be read, is refused with what to do,
never silently replaced; the copy taken after the last complete run puts it back."""

from __future__ import annotations

import shutil

import duckdb
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from sendgrid_destination.errors import CorruptStateError
from sendgrid_destination.state import StateStore
from sendgrid_destination.state.recovery import backup_path, journal_path, write_journal
from tests.e2e.conftest import cause_of, cli, contacts_table, upserts


def _lose_the_log_of_one_more_recorded_request(state_path) -> None:
    """As a crash before a checkpoint followed by a lost write-ahead log: a request is
    recorded (committed in the log, noted in the journal), then the log is gone."""
    with StateStore.open(state_path) as store:
        store.con.execute("PRAGMA disable_checkpoint_on_shutdown")
        seq = store.con.execute("SELECT max(seq) FROM requests").fetchall()[0][0]
        store.con.execute(
            "INSERT INTO requests VALUES ('lost-job', 'r', 'contacts', 1, 1, now(), ?)", [seq + 1]
        )
        write_journal(state_path, seq + 1)
    wal = state_path.with_name(state_path.name + ".wal")
    assert wal.exists()
    wal.unlink()


def test_a_state_file_that_lost_its_write_ahead_log_is_refused_naming_the_way_back(
    emulator, destination, run, state_path
) -> None:
    run(contacts_table(10), destination())
    _lose_the_log_of_one_more_recorded_request(state_path)
    emulator.clear_requests()

    with pytest.raises(PipelineStepFailed) as failed:
        run(contacts_table(20), destination())

    message = str(cause_of(failed.value, CorruptStateError))
    assert "lost 1 recorded request" in message and "restore-state" in message
    assert upserts(emulator) == []  # nothing resent silently


def test_restoring_the_copy_resends_only_what_came_after_it(
    emulator, destination, run, state_path, capsys
) -> None:
    run(contacts_table(10), destination())
    assert backup_path(state_path).exists()
    _lose_the_log_of_one_more_recorded_request(state_path)

    out = cli(capsys, "restore-state", "--state", str(state_path))
    emulator.clear_requests()
    run(contacts_table(15), destination())

    assert "restored" in out
    assert sum(r.contact_count or 0 for r in upserts(emulator)) == 5  # only the new ones


def test_a_state_file_that_is_not_a_database_any_more_is_refused_not_retried(
    emulator, destination, run, state_path
) -> None:
    run(contacts_table(3), destination())
    state_path.write_bytes(b"\x00garbage" * 1000)
    emulator.clear_requests()

    with pytest.raises(PipelineStepFailed) as failed:
        run(contacts_table(3), destination())

    message = str(cause_of(failed.value, CorruptStateError))
    assert "cannot be opened" in message and "restore-state" in message
    assert upserts(emulator) == []


def test_a_deleted_state_file_whose_journal_remains_is_refused(
    emulator, destination, run, state_path
) -> None:
    run(contacts_table(3), destination())
    state_path.unlink()
    emulator.clear_requests()

    with pytest.raises(PipelineStepFailed) as failed:
        run(contacts_table(3), destination())

    assert "is missing" in str(cause_of(failed.value, CorruptStateError))
    assert upserts(emulator) == []
    # Moving the journal aside too is the way to start over on purpose.
    shutil.move(journal_path(state_path), state_path.parent / "old.journal")
    run(contacts_table(3), destination())
    assert sum(r.contact_count or 0 for r in upserts(emulator)) == 3


def test_the_journal_follows_every_recorded_request(emulator, destination, run, state_path) -> None:
    run(contacts_table(250), destination(max_contacts_per_request=100))

    with duckdb.connect(str(state_path), read_only=True) as con:
        (seq,) = con.execute("SELECT max(seq) FROM requests").fetchone()
    assert journal_path(state_path).read_text() == f'{{"seq": {seq}}}'
