"""Parquet sources whose files disagree on a column's type, end to end through the CLI:
read whole where one type holds every file's values, or stopped naming the column, never a
value, a silently changed value, or a cursor compared as text."""

from __future__ import annotations

import datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tests.sync.conftest import SyncEnv


def _parquet_exports(
    sync_env: SyncEnv, files: list[pa.Table], mapped: str = "", source: str = ""
) -> Path:
    """``files`` as exports/1.parquet, 2.parquet...; a sync file of them all (and the
    ``source`` lines), mapping email and the ``mapped`` lines."""
    exports = sync_env.workdir / "exports"
    exports.mkdir()
    for number, table in enumerate(files, start=1):
        pq.write_table(table, exports / f"{number}.parquet")
    return sync_env.write(
        "exports.toml",
        'name = "exports"\n[source]\nkind = "parquet"\npath = "exports/*.parquet"\n'
        f'{source}[destination.sendgrid.mapping]\nemail = "email"\n{mapped}',
    )


def _loads_whole(sync_env: SyncEnv, files: list[pa.Table]) -> None:
    """The files sync with no error and every row is a new contact."""
    result = sync_env.run(_parquet_exports(sync_env, files), "--json")
    assert result.code == 0, result.err
    assert result.json()["totals"]["new"] == sum(f.num_rows for f in files)


def test_parquet_files_whose_columns_differ_are_read_with_every_files_columns(
    sync_env: SyncEnv,
) -> None:
    # A later export adds a mapped column and widens another (int64, then double).
    first = pa.table({"email": ["a@example.com"], "seats": pa.array([3], pa.int64())})
    later = pa.table({"email": ["b@example.com"], "seats": [2.5], "plan": ["pro"]})
    seats = sync_env.emulator.add_custom_field("seats", "Number")
    plan = sync_env.emulator.add_custom_field("plan", "Text")
    mapped = 'custom_fields = { seats = "seats", plan = "plan" }\n'
    sync_file = _parquet_exports(sync_env, [first, later], mapped)

    result = sync_env.run(sync_file, "--json")

    assert result.code == 0, result.err
    sync_env.emulator.process_jobs()
    held = {c["email"]: c["custom_fields"] for c in sync_env.emulator.contacts()}
    assert held == {"a@example.com": {seats: 3}, "b@example.com": {seats: 2.5, plan: "pro"}}


def test_parquet_files_that_encode_a_column_differently_are_read_as_before(
    sync_env: SyncEnv,
) -> None:
    # One export dictionary-encodes a text column and writes times with a zone; the next
    # writes plain text and naive times. No type holds both: the first file's is kept.
    at = pa.array([0], pa.timestamp("us", tz="UTC"))
    first = pa.table(
        {"email": ["a@example.com"], "segment": pa.array(["x"]).dictionary_encode(), "at": at}
    )
    later = pa.table(
        {"email": ["b@example.com"], "segment": ["y"], "at": pa.array([0], pa.timestamp("us"))}
    )
    _loads_whole(sync_env, [first, later])


def test_parquet_files_with_text_in_one_and_numbers_in_another_are_read_as_text(
    sync_env: SyncEnv,
) -> None:
    # Cast to the first file's int64, "02134" became 2134 silently and "n/a" failed the run
    # quoting the value.
    first = pa.table({"email": ["a@example.com"], "zip": pa.array([2134], pa.int64())})
    later = pa.table({"email": ["b@example.com", "c@example.com"], "zip": ["02134", "n/a"]})
    zip_id = sync_env.emulator.add_custom_field("zip", "Text")
    mapped = 'custom_fields = { zip = "zip" }\n'
    sync_file = _parquet_exports(sync_env, [first, later], mapped)

    result = sync_env.run(sync_file, "--json")

    assert result.code == 0, result.err
    sync_env.emulator.process_jobs()
    held = {c["email"]: c["custom_fields"].get(zip_id) for c in sync_env.emulator.contacts()}
    assert held == {"a@example.com": "2134", "b@example.com": "02134", "c@example.com": "n/a"}


def test_parquet_files_whose_column_types_cannot_be_read_as_one_stop_naming_the_column(
    sync_env: SyncEnv,
) -> None:
    first = pa.table({"email": ["a@example.com"], "tags": pa.array([7], pa.int64())})
    later = pa.table({"email": ["b@example.com"], "tags": [["secret-value"]]})
    sync_file = _parquet_exports(sync_env, [first, later])

    result = sync_env.run(sync_file, "--json")

    assert result.code != 0
    assert "Column 'tags' is list<element: string> in 'exports/2.parquet' and int64 in" in (
        result.err
    )
    assert "secret-value" not in result.out + result.err
    assert sync_env.emulator.contacts() == []


def test_a_text_column_one_file_writes_as_string_view_is_read(sync_env: SyncEnv) -> None:
    # Both files hold text; pyarrow keeps a string_view column's type in the file's Arrow
    # schema, which Arrow does not unify with string.
    first = pa.table({"email": ["a@example.com"], "segment": ["x"]})
    later = pa.table({"email": ["b@example.com"], "segment": pa.array(["y"], pa.string_view())})
    _loads_whole(sync_env, [first, later])


def test_string_view_text_beside_numbers_is_read_as_text(sync_env: SyncEnv) -> None:
    first = pa.table({"email": ["a@example.com"], "zip": pa.array([2134], pa.int64())})
    later = pa.table({"email": ["b@example.com"], "zip": pa.array(["02134"], pa.string_view())})
    _loads_whole(sync_env, [first, later])


def test_times_with_another_zone_and_a_finer_unit_are_read(sync_env: SyncEnv) -> None:
    # The first file's zone, the finest unit: a later file's microseconds do not fit the
    # first file's milliseconds.
    at = datetime.datetime(2026, 1, 2, 3, 4, 5)
    first = pa.table({"email": ["a@example.com"], "at": pa.array([at], pa.timestamp("ms", "UTC"))})
    later = pa.table(
        {
            "email": ["b@example.com"],
            "at": pa.array([at.replace(microsecond=123456)], pa.timestamp("us", "Europe/Paris")),
        }
    )
    _loads_whole(sync_env, [first, later])


def test_decimals_in_one_file_and_integers_in_another_are_read(sync_env: SyncEnv) -> None:
    # Arrow unifies decimal128(5, 2) and int64 as decimal128(20, 2), which cannot hold an
    # int64: every scan fails, whatever the values (3 here).
    first = pa.table(
        {"email": ["a@example.com"], "seats": pa.array([Decimal("1.50")], pa.decimal128(5, 2))}
    )
    later = pa.table({"email": ["b@example.com"], "seats": pa.array([3], pa.int64())})
    _loads_whole(sync_env, [first, later])


def test_a_cursor_one_file_holds_as_numbers_and_another_as_text_stops_the_run(
    sync_env: SyncEnv,
) -> None:
    # Read as text, dlt's incremental kept "9" as the highest, and a later row with seq 12
    # ("12" < "9") was dropped silently.
    first = pa.table(
        {"email": [f"p{i}@example.com" for i in range(1, 10)], "seq": pa.array(range(1, 10))}
    )
    later = pa.table({"email": ["p10@example.com", "p11@example.com"], "seq": ["10", "11"]})
    sync_file = _parquet_exports(sync_env, [first, later], source='cursor = "seq"\n')

    result = sync_env.run(sync_file, "--json")

    assert result.code != 0
    assert "Column 'seq' is string in 'exports/2.parquet' and int64 in" in result.err
    assert "it is the cursor" in result.err
    assert sync_env.emulator.contacts() == []


def test_a_scan_error_does_not_echo_a_value_of_the_data(sync_env: SyncEnv) -> None:
    # Arrow's cast errors hold values unquoted (digits), which ``redact`` leaves alone.
    born = datetime.datetime(1987, 6, 5, 4, 3, 2, 123456)
    first = pa.table(
        {"email": ["a@example.com"], "born": pa.array([born], pa.timestamp("ms", "UTC"))}
    )
    later = pa.table(
        {"email": ["b@example.com"], "born": pa.array([born], pa.timestamp("us", "Asia/Tokyo"))}
    )
    sync_file = _parquet_exports(sync_env, [first, later])

    result = sync_env.run(sync_file, "--json")

    value = str(int(born.replace(tzinfo=datetime.UTC).timestamp() * 1_000_000))
    assert value not in result.out + result.err
