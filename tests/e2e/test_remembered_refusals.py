"""Rows refused by the checks are remembered by key and fingerprint (``state.invalid_rows``)
and refused again by a rerun without being checked again: through real dlt runs, a rerun's
rejects are those a first look at the same rows gives (``fresh`` below: the same load into a
new state file), also when the same values reach the checks through another wiring (found by
a reviewer: the fingerprint's signature named no source column nor the list column, and the
masks of the last run were read against this mapping's checks)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from tests.e2e.conftest import rejects_of, run_summary


def _not_utf8(*values: bytes | None) -> pa.Array:
    return pa.array(list(values), pa.binary()).view(pa.string())


def _rejects(state_path: Path, run_id: str) -> list[tuple[int, str, str]]:
    return sorted(
        (r["row_number"], r["column"], r["reason"])
        for r in rejects_of(state_path)
        if r["run_id"].startswith(run_id)
    )


def test_swapping_two_mapped_columns_blames_the_column_whose_text_is_not_utf8_on_a_rerun(
    emulator, destination, run, state_path, tmp_path
) -> None:
    # Row 1's col_a is not UTF-8 and its col_b is empty. Both columns are read by both runs
    # (only the fields they feed swap), so row 1's fingerprint stays the same: the signature
    # names no source column, and the bad text is the row's, not a field's.
    data = pa.table(
        {
            "email": ["a@example.com", "b@example.com"],
            "col_a": _not_utf8(b"Ann", b"B\xffb"),
            "col_b": pa.array(["Smith", None], pa.string()),
        }
    )
    before = {"email": "email", "first_name": "col_a", "last_name": "col_b"}
    after = {"email": "email", "first_name": "col_b", "last_name": "col_a"}
    first = run(data, destination(mapping=before))
    assert _rejects(state_path, first.loads_ids[-1]) == [
        (1, "col_a", "first_name: not valid UTF-8 text")
    ]

    second = run(data, destination(mapping=after))
    fresh_state = tmp_path / "fresh.duckdb"
    fresh = run(data, destination(mapping=after, state_path=fresh_state), pipeline="fresh")

    assert _rejects(fresh_state, fresh.loads_ids[-1]) == [
        (1, "col_a", "last_name: not valid UTF-8 text")
    ]
    # Not [(1, "col_b", "first_name: not valid UTF-8 text")]: the last run's masks read
    # against this mapping's checks.
    assert _rejects(state_path, second.loads_ids[-1]) == _rejects(fresh_state, fresh.loads_ids[-1])
    assert run_summary(state_path, second)["rejected"] == 1


def test_a_refused_row_lists_its_list_columns_bad_text_too_once_a_list_column_is_set(
    emulator, destination, run, state_path, tmp_path
) -> None:
    # ``segments`` feeds a custom field; then it also becomes the list column. Row 1's
    # segments are not UTF-8: a first look refuses it for the field and for the list column.
    emulator.add_custom_field("segment_text", "Text")
    emulator.add_list("vip")
    data = pa.table(
        {"email": ["a@example.com", "b@example.com"], "segments": _not_utf8(b"vip", b"v\xffp")}
    )
    mapping = {"email": "email", "custom_fields": {"segment_text": "segments"}}
    first = run(data, destination(mapping=mapping))
    assert _rejects(state_path, first.loads_ids[-1]) == [
        (1, "segments", "segment_text: not valid UTF-8 text")
    ]

    second = run(data, destination(mapping=mapping, list_column="segments"))
    fresh_state = tmp_path / "fresh.duckdb"
    fresh = run(
        data,
        destination(mapping=mapping, list_column="segments", state_path=fresh_state),
        pipeline="fresh",
    )

    assert _rejects(fresh_state, fresh.loads_ids[-1]) == [
        (1, "segments", "list_column: not valid UTF-8 text"),
        (1, "segments", "segment_text: not valid UTF-8 text"),
    ]
    # Not without the list column's reason (the list column was not in the signature).
    assert _rejects(state_path, second.loads_ids[-1]) == _rejects(fresh_state, fresh.loads_ids[-1])
