"""Python's CSV cell limit is process-wide: the errors-file reader and the emulator's import
reader widen it under one lock, so neither puts the limit back under the other's feet."""

from __future__ import annotations

import csv
import gzip
import threading
from collections.abc import Callable

import pytest

from sendgrid_destination.api.errors_file import read_rows
from sendgrid_destination.csv_fields import wide_fields
from sendgrid_destination.emulator.csv_import import count_rows, map_columns

LONG = 300_000  # over the csv default of 131,072


def _read_errors_file() -> None:
    (row,) = read_rows(("email,errors\na@example.com," + "x" * LONG + "\n").encode(), "text/csv")
    assert len(row["errors"]) == LONG


def _read_import_file() -> None:
    columns = map_columns(["_rf2_T", "_rf0_T"], {})
    data = gzip.compress(("email,first_name\nb@example.com," + "y" * LONG + "\n").encode())
    assert count_rows(data, columns) == 1


@pytest.mark.parametrize("reader", [_read_errors_file, _read_import_file])
def test_each_reader_waits_for_the_one_lock_and_reads_long_cells_after(
    reader: Callable[[], None],
) -> None:
    default = csv.field_size_limit()
    failures: list[BaseException] = []

    def guarded() -> None:
        try:
            reader()
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    thread = threading.Thread(target=guarded)
    with wide_fields(10):  # another reader holds the lock
        thread.start()
        thread.join(timeout=0.5)
        assert thread.is_alive()  # it waits: one lock for every reader
    thread.join(timeout=30)

    assert not thread.is_alive() and failures == []
    assert csv.field_size_limit() == default


def test_a_limit_is_at_least_the_one_asked_inside_and_the_previous_one_after() -> None:
    before = csv.field_size_limit()
    with wide_fields(before * 4):
        assert csv.field_size_limit() == before * 4
    with wide_fields(10):  # never lowered
        assert csv.field_size_limit() == before
    assert csv.field_size_limit() == before
