"""Several job files of one table read as one source: rows numbered on across the files, a
column some files lack null in their rows, types widened to one, or refused when none holds
both."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sendgrid_destination.arrow_utils import ROW_COLUMN
from sendgrid_destination.errors import ConfigurationError
from sendgrid_destination.source_rows import SourceRows


def _write(tmp_path: Path, name: str, table: pa.Table) -> str:
    path = tmp_path / name
    pq.write_table(table, path)
    return str(path)


def _read(rows: SourceRows, only: np.ndarray | None = None) -> pa.Table:
    return rows.reader(only).read_all()


def test_rows_are_numbered_on_across_the_files_in_the_order_given(tmp_path: Path) -> None:
    first = _write(tmp_path, "a.parquet", pa.table({"email": ["a@x.co", "b@x.co", "c@x.co"]}))
    second = _write(tmp_path, "b.parquet", pa.table({"email": ["d@x.co", "e@x.co"]}))

    read = _read(SourceRows.from_files([second, first], ["email"], batch_rows=2))

    assert read["email"].to_pylist() == ["d@x.co", "e@x.co", "a@x.co", "b@x.co", "c@x.co"]
    assert read[ROW_COLUMN].to_pylist() == [0, 1, 2, 3, 4]


def test_a_column_one_file_lacks_is_null_in_its_rows(tmp_path: Path) -> None:
    old = _write(tmp_path, "a.parquet", pa.table({"email": ["a@x.co"]}))
    new = _write(tmp_path, "b.parquet", pa.table({"email": ["b@x.co"], "city": ["Oslo"]}))

    rows = SourceRows.from_files([old, new], ["email", "city"], batch_rows=10)

    assert rows.schema.names == ["email", "city"]
    assert _read(rows)["city"].to_pylist() == [None, "Oslo"]
    assert rows.values_read == {"email": 2, "city": 1}


def test_a_column_missing_from_every_file_reads_every_column_so_the_check_can_name_it(
    tmp_path: Path,
) -> None:
    one = _write(tmp_path, "a.parquet", pa.table({"email": ["a@x.co"], "x": [1]}))
    two = _write(tmp_path, "b.parquet", pa.table({"email": ["b@x.co"], "y": ["z"]}))

    rows = SourceRows.from_files([one, two], ["email", "city"], batch_rows=10)

    assert set(rows.schema.names) == {"email", "x", "y"}
    assert _read(rows)["y"].to_pylist() == [None, "z"]


def test_a_column_typed_differently_is_read_in_the_type_both_widen_to(tmp_path: Path) -> None:
    narrow = pa.table({"email": ["a@x.co"], "score": pa.array([1], pa.int32())})
    wide = pa.table({"email": ["b@x.co"], "score": pa.array([2**40], pa.int64())})
    paths = [_write(tmp_path, "a.parquet", narrow), _write(tmp_path, "b.parquet", wide)]

    rows = SourceRows.from_files(paths, ["email", "score"], batch_rows=10)

    assert rows.schema.field("score").type == pa.int64()
    assert _read(rows)["score"].to_pylist() == [1, 2**40]


def test_a_column_with_no_type_holding_both_files_values_is_refused_naming_it(
    tmp_path: Path,
) -> None:
    text = pa.table({"email": ["a@x.co"], "score": ["high"]})
    number = pa.table({"email": ["b@x.co"], "score": pa.array([2], pa.int64())})
    paths = [_write(tmp_path, "a.parquet", text), _write(tmp_path, "b.parquet", number)]

    with pytest.raises(ConfigurationError, match="score"):
        SourceRows.from_files(paths, ["email", "score"], batch_rows=10)


def test_only_picks_rows_by_their_number_across_the_files(tmp_path: Path) -> None:
    first = _write(tmp_path, "a.parquet", pa.table({"email": ["a@x.co", "b@x.co"]}))
    second = _write(tmp_path, "b.parquet", pa.table({"email": ["c@x.co", "d@x.co"]}))
    rows = SourceRows.from_files([first, second], ["email"], batch_rows=10)

    read = _read(rows, only=np.array([1, 2], dtype=np.int64))

    assert read["email"].to_pylist() == ["b@x.co", "c@x.co"]
    assert read[ROW_COLUMN].to_pylist() == [1, 2]
    assert rows.rows_read == 4


def _awkward_table(n: int, offset: int) -> pa.Table:
    """Values the reader must normalize: text that is not UTF-8, a dictionary, a time zone."""
    raw = [f"p{offset + i}@x.co".encode() if i % 3 else b"\xff\xfe" for i in range(n)]
    return pa.table(
        {
            "email": pa.array(raw, pa.binary()).view(pa.string()),
            "plan": pa.array([["free", "pro"][i % 2] for i in range(n)]).dictionary_encode(),
            "seen": pa.array(
                [1_700_000_000_000_000 + i for i in range(n)], pa.timestamp("us", tz="UTC")
            ),
        }
    )


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 9), min_size=1, max_size=3),
    batch_rows=st.integers(1, 5),
    picks=st.sets(st.integers(0, 26)),
)
def test_a_second_read_yields_the_asked_rows_exactly_as_a_whole_read_does(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], batch_rows: int, picks: set[int]
) -> None:
    folder = tmp_path_factory.mktemp("files")
    paths, offset = [], 0
    for i, n in enumerate(sizes):
        paths.append(_write(folder, f"{i}.parquet", _awkward_table(n, offset)))
        offset += n
    columns = ["email", "plan", "seen"]
    whole = _read(SourceRows.from_files(paths, columns, batch_rows))
    only = np.array(sorted(p for p in picks if p < offset), dtype=np.int64)
    rows = SourceRows.from_files(paths, columns, batch_rows)

    picked = _read(rows, only)

    expected = whole.filter(pa.array(np.isin(np.arange(offset), only)))
    assert picked.to_pylist() == expected.to_pylist()
    assert picked.schema == whole.schema
    assert rows.rows_read == offset
