"""A rerun finds its unchanged rows by the fingerprint of their source values (issue 16.4).

With contacts of a table in the state, the plan reads only each row's contact key and the
fingerprint of its source values as they arrive (``ContactSql.keys``), and checks and renders
only the rows whose fingerprint is not the one last sent. The property: whatever the Arrow
types and values (the generator of ``test_arbitrary_arrow_through_plan``), and whatever a
second load mixes from the first one's rows, the rerun

* refuses exactly the rows a first look at the same load refuses, for the same reasons
  (those the first load refused too, from what the state remembers of them);
* renders every row it renders exactly as a first look does (from the rows its check read,
  when they fit in a read batch, or from a read of their own);
* skips without rendering only rows whose JSON is the one last sent for their contact.

Then one example each of what the fingerprint must tell apart although DuckDB's ``hash``
of the values alone does not (a decimal's scale), or what changes the JSON without changing
a value (the date format), the source's second read of only the rows to check, none for
rows refused last time and unchanged since, and no third one for the render of the rows
checked.
"""

from __future__ import annotations

import itertools
import json
import string
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st

import tests.unit.test_arbitrary_arrow_through_plan as arbitrary
from sendgrid_destination.errors import ConfigurationError
from sendgrid_destination.plan import Plan, _as_read
from sendgrid_destination.schemas import RENDERED
from sendgrid_destination.source_rows import SourceRows
from sendgrid_destination.state import SCHEMA_VERSION, StateStore
from tests.planning import Planned, contact_sql, one_batch, plan_rows, render_all

_streams = itertools.count()
stores = arbitrary.stores  # the module-scoped fixture: one state for every example


def _send(store: StateStore, stream: str, planned: Planned) -> None:
    """Record the planned contacts as accepted by a 202, as a load does."""
    if planned.contacts.num_rows:
        store.record_sent(
            run_id=f"run-{stream}",
            stream=stream,
            job_id=f"job-{stream}-{next(_streams)}",
            contacts=planned.contacts,
            body_bytes=1,
        )


def _mixed(table: pa.Table, data: st.DataObject) -> pa.Table:
    """A second load: rows of ``table`` again, in any order and number, some of their cells
    taken from other rows (a changed value, a contact key moved to another row)."""
    n = table.num_rows
    if n == 0:
        return table
    size = data.draw(st.integers(0, n + 2), label="rows")
    rows = data.draw(st.lists(st.integers(0, n - 1), min_size=size, max_size=size))
    other = st.one_of(st.none(), st.none(), st.none(), st.integers(0, n - 1))
    columns = []
    for column in table.columns:
        cells = data.draw(st.lists(other, min_size=size, max_size=size))
        picks = [row if cell is None else cell for row, cell in zip(rows, cells, strict=True)]
        columns.append(_take(column.combine_chunks(), picks))
    return pa.Table.from_arrays(columns, schema=table.schema)


def _take(array: pa.Array, picks: list[int]) -> pa.Array:
    """``array.take(picks)``, also for types pyarrow has no take for (views)."""
    try:
        return array.take(pa.array(picks, pa.int64()))
    except pa.ArrowNotImplementedError:
        if not picks:
            return array.slice(0, 0)
        return pa.concat_arrays([array.slice(i, 1) for i in picks])


def _rendered(planned: Planned) -> dict[int, tuple[str, str]]:
    both = pa.concat_tables([planned.contacts, planned.unchanged])
    return {
        row: (cell, digest)
        for row, cell, digest in zip(
            both["row_number"].to_pylist(),
            both["contact_json"].to_pylist(),
            both["content_hash"].to_pylist(),
            strict=True,
        )
    }


def check_rerun(case: arbitrary.Case, data: st.DataObject, store: StateStore) -> None:
    table = case.table()
    stream = f"rerun-{next(_streams)}"
    try:
        sql = contact_sql(case.mapping, table.schema, case.types, case.ids)
        first = plan_rows(sql, table, store=store, stream=stream)
    except ConfigurationError:
        event("mapping or names refused")
        return
    _send(store, stream, first)
    keys, hashes = first.contacts["contact_key"], first.contacts["content_hash"]
    sent = dict(zip(keys.to_pylist(), hashes.to_pylist(), strict=True))
    second = _mixed(table, data)
    # Refused rows of ``first`` that come again are refused from memory (state.invalid_rows).
    # The rows to check are rendered from the check's read when they fit in a read batch, else
    # from a read of their own.
    kept = data.draw(st.booleans(), label="rows to check fit in a read batch")
    again = plan_rows(sql, second, store=store, stream=stream, batch_rows=None if kept else 1)
    fresh = plan_rows(sql, second, store=store)  # a new stream: every row checked and rendered

    assert again.rejects.to_pylist() == fresh.rejects.to_pylist()
    assert again.counts.superseded == fresh.counts.superseded
    event("refusals remembered", "some" if first.rejects.num_rows else "none")
    rendered, looked = _rendered(again), _rendered(fresh)
    assert set(rendered) <= set(looked), "a row rendered that a first look refuses"
    skipped = 0
    for row, key, (cell, digest) in zip(
        fresh.contacts["row_number"].to_pylist(),
        fresh.contacts["contact_key"].to_pylist(),
        [looked[r] for r in fresh.contacts["row_number"].to_pylist()],
        strict=True,
    ):
        if row in rendered:
            assert rendered[row] == (cell, digest), "rendered otherwise than a first look"
        else:
            skipped += 1
            assert sent.get(key) == digest, "skipped a row whose JSON was not the one last sent"
    event("rows skipped by fingerprint", "some" if skipped else "none")
    assert again.counts.unchanged == skipped


_SETTINGS = settings(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@settings(_SETTINGS, max_examples=50)
@given(case=arbitrary.cases(), data=st.data())
def test_a_rerun_refuses_and_renders_as_a_first_look_and_skips_only_what_was_sent(
    case: arbitrary.Case, data: st.DataObject, stores: arbitrary.Stores
) -> None:
    check_rerun(case, data, stores.current())


@pytest.mark.slow
@pytest.mark.timeout(1200)
@settings(_SETTINGS, max_examples=500)
@given(case=arbitrary.cases(), data=st.data())
def test_at_length_a_rerun_refuses_and_renders_as_a_first_look_and_skips_only_what_was_sent(
    case: arbitrary.Case, data: st.DataObject, stores: arbitrary.Stores
) -> None:
    check_rerun(case, data, stores.current())


_WEAK_TEXT = string.ascii_letters + string.digits + ",/-"


@settings(_SETTINGS, max_examples=150)
@given(
    before=st.text(alphabet=_WEAK_TEXT, min_size=8, max_size=48),
    edits=st.lists(st.tuples(st.integers(0, 5), st.sampled_from(_WEAK_TEXT)), min_size=1),
)
@example(before="Apt 1200, Box 1209", edits=[(0, "7"), (1, "9")])  # "Apt 1207, Box 1909"
@example(before="Room 100 / Bed 6", edits=[(0, "7"), (1, "9")])  # "Room 107 / Bed 9"
def test_text_edited_where_duckdbs_string_hash_is_weak_is_never_taken_for_unchanged(
    before: str, edits: list[tuple[int, str]], stores: arbitrary.Stores
) -> None:
    # DuckDB's hash of a string mixes it 8 bytes at a time: strings of one length that differ
    # only in the last byte of such blocks collided about once in 256, and the rerun skipped
    # the changed row as unchanged. Each edit: (which block, the byte its last byte becomes).
    after = list(before)
    for block, byte in edits:
        if 8 * block + 7 < len(after):
            after[8 * block + 7] = byte
    edited = "".join(after)
    assume(edited != before)
    store, stream = stores.current(), f"weak-{next(_streams)}"
    mapping = {"email": "email", "custom_fields": {"note": "note"}}
    sent = []
    for note in (before, edited):
        table = pa.table({"email": ["a@example.com"], "note": [note]})
        sql = contact_sql(mapping, table.schema, {"note": "Text"}, {"note": "e1_T"})
        planned = plan_rows(sql, table, store=store, stream=stream)
        _send(store, stream, planned)
        sent.append(planned)
    assert sent[1].counts.unchanged == 0
    (cell,) = sent[1].contacts["contact_json"].to_pylist()
    assert json.loads(cell[:-1])["custom_fields"]["e1_T"] == edited


def test_a_float_that_only_changes_sign_at_zero_is_sent_again(store: StateStore) -> None:
    # DuckDB's hash folds -0.0 into 0.0; their text differs ("-0.0" and "0.0").
    stream = f"example-{next(_streams)}"
    mapping = {"email": "email", "custom_fields": {"score": "score"}}
    texts = []
    for value in (-0.0, 0.0):
        table = pa.table({"email": ["a@example.com"], "score": pa.array([value], pa.float64())})
        sql = contact_sql(mapping, table.schema, {"score": "Text"}, {"score": "e1_T"})
        planned = plan_rows(sql, table, store=store, stream=stream)
        _send(store, stream, planned)
        texts += [json.loads(c[:-1])["custom_fields"]["e1_T"]
                  for c in planned.contacts["contact_json"].to_pylist()]  # fmt: skip
    assert texts == ["-0.0", "0.0"]


# -- examples ----------------------------------------------------------------------------------


def _two_loads(
    first: pa.Table, second: pa.Table, store: StateStore, **options: Any
) -> tuple[Planned, Planned]:
    """``first`` planned and sent, then ``second`` planned on the same stream; ``options``
    maps ``"first"`` / ``"second"`` to ContactSql options of each."""
    stream = f"example-{next(_streams)}"
    mapping = {"email": "email", "custom_fields": {"score": "score"}}
    ids = {"score": "e1_N"}
    one = contact_sql(mapping, first.schema, {"score": "Number"}, ids, **options.get("first", {}))
    planned = plan_rows(one, first, store=store, stream=stream)
    _send(store, stream, planned)
    two = contact_sql(mapping, second.schema, {"score": "Number"}, ids, **options.get("second", {}))
    return planned, plan_rows(two, second, store=store, stream=stream)


@pytest.fixture
def store(tmp_path: Any) -> Any:
    with StateStore.open(tmp_path / "state.duckdb") as opened:
        yield opened


def _scores(planned: Planned) -> list[Any]:
    cells = planned.contacts["contact_json"].to_pylist()
    return [json.loads(c[:-1], parse_float=Decimal)["custom_fields"]["e1_N"] for c in cells]


def test_a_decimal_whose_digits_stay_but_scale_changes_is_sent_again(store: StateStore) -> None:
    # DuckDB's hash of DECIMAL(10,1) 1.5 and of DECIMAL(10,2) 0.15 is the same (both are
    # the integer 15): the fingerprint takes the types too.
    before = pa.table(
        {"email": ["a@example.com"], "score": pa.array([Decimal("1.5")], pa.decimal128(10, 1))}
    )
    after = pa.table(
        {"email": ["a@example.com"], "score": pa.array([Decimal("0.15")], pa.decimal128(10, 2))}
    )
    first, second = _two_loads(before, after, store)
    assert _scores(first) == [Decimal("1.5")]
    assert _scores(second) == [Decimal("0.15")]
    assert second.counts.unchanged == 0


def test_the_same_values_under_another_date_format_are_sent_again_in_it(
    store: StateStore,
) -> None:
    table = pa.table(
        {
            "email": ["a@example.com"],
            "score": [1],
            "signed_up": pa.array([1_700_000_000_000_000], pa.timestamp("us")),
        }
    )
    stream = f"example-{next(_streams)}"
    mapping = {"email": "email", "custom_fields": {"signed_up": "signed_up"}}
    sent = []
    for date_format in ("%Y-%m-%dT%H:%M:%SZ", "%m/%d/%Y"):
        sql = contact_sql(mapping, table.schema, {"signed_up": "Date"}, {"signed_up": "e2_D"},
                          date_format=date_format)  # fmt: skip
        planned = plan_rows(sql, table, store=store, stream=stream)
        _send(store, stream, planned)
        sent += [json.loads(c[:-1])["custom_fields"]["e2_D"]
                 for c in planned.contacts["contact_json"].to_pylist()]  # fmt: skip
    assert sent == ["2023-11-14T22:13:20Z", "11/14/2023"]


def test_an_unchanged_rerun_renders_nothing_and_a_changed_row_is_the_only_one_sent(
    store: StateStore,
) -> None:
    emails = [f"u{i}@example.com" for i in range(100)]
    before = pa.table({"email": emails, "score": list(range(100))})
    after = pa.table({"email": emails, "score": [*range(99), 1000]})
    first, again = _two_loads(before, before, store)
    assert first.contacts.num_rows == 100
    assert (again.contacts.num_rows, again.unchanged.num_rows, again.counts.unchanged) == (
        0,
        0,
        100,
    )
    _, changed = _two_loads(before, after, store)
    assert _scores(changed) == [1000]
    assert changed.counts.unchanged == 99


def test_a_refused_row_is_refused_again_on_every_rerun(store: StateStore) -> None:
    table = pa.table({"email": ["a@example.com", "not an address"], "score": [1, 2]})
    first, again = _two_loads(table, table, store)
    assert [r["row_number"] for r in first.rejects.to_pylist()] == [1]
    assert again.rejects.to_pylist() == first.rejects.to_pylist()
    assert again.counts.unchanged == 1


def test_the_sources_second_read_yields_only_the_rows_asked_for_and_counts_every_row() -> None:
    batch = pa.record_batch({"email": [f"u{i}@example.com" for i in range(10)]})
    rows = SourceRows.from_batch(batch, first_row=5)
    read = rows.reader(np.array([5, 8, 14], dtype=np.int64)).read_all()
    assert read["email"].to_pylist() == ["u0@example.com", "u3@example.com", "u9@example.com"]
    assert rows.rows_read == 10
    assert rows.values_read == {"email": 10}
    assert rows.reader(np.array([], dtype=np.int64)).read_all().num_rows == 0


# -- rows refused last time (state.invalid_rows) -------------------------------------------------


class _CountedRows(SourceRows):
    """A load's rows (one batch) that count how often they are read (by the plan's scans and
    by the render)."""

    def __init__(self, table: pa.Table, batch_rows: int | None = None) -> None:
        super().__init__(table.schema, batch_rows or max(table.num_rows, 1))
        self._rows = SourceRows.from_batch(one_batch(table))
        self.reads = 0

    def batches(self) -> Any:
        self.reads += 1
        return self._rows.batches()


_NAMED = {"email": "email", "first_name": "name"}
_REFUSING = pa.table(
    {
        "email": ["a@example.com", "not an address", None, "b@example.com", "c@example.com"],
        "name": ["Ann", "Bo", "Cy", "D" * 51, "Ed"],
    }
)


def _planned_again(
    store: StateStore, stream: str, table: pa.Table, **options: Any
) -> tuple[_CountedRows, dict[str, Any]]:
    """``table`` planned on ``stream`` as a rerun (which remembers its refused rows, as a
    load does): how often it was read, and what the plan found."""
    sql = contact_sql(_NAMED, table.schema, **options)
    rows = _CountedRows(table)
    run_id = f"run-{next(_streams)}"
    with Plan.build(store, sql, stream, run_id, rows) as plan:
        store.invalid_rows.remember(run_id, stream, plan.invalid_rows)
        found = {"rejects": plan.rejects.to_pylist(), "omitted": plan.omitted.to_pylist(),
                 "counts": plan.counts, "invalid": plan.invalid_rows.num_rows}  # fmt: skip
    return rows, found


def _first_load(store: StateStore, table: pa.Table = _REFUSING) -> tuple[str, Planned]:
    stream = f"refusing-{next(_streams)}"
    first = plan_rows(contact_sql(_NAMED, table.schema), table, store=store, stream=stream)
    _send(store, stream, first)
    return stream, first


def test_a_rerun_whose_only_rows_to_check_were_refused_last_time_reads_the_source_once(
    store: StateStore,
) -> None:
    stream, first = _first_load(store)
    assert [r["row_number"] for r in first.rejects.to_pylist()] == [1, 2, 3]

    rows, again = _planned_again(store, stream, _REFUSING)

    assert rows.reads == 1, "read again to check rows the check refused last time"
    assert again["rejects"] == first.rejects.to_pylist()  # a row without an identifier too
    assert (again["counts"].unchanged, again["counts"].to_render) == (2, 0)
    assert again["invalid"] == 3  # remembered for the next run in turn


@pytest.mark.parametrize(
    "lost",
    [
        # Only a cache: a state file of schema 11 had none, and a lost one costs a second read.
        "DELETE FROM invalid_rows",
        # The signature already tells other checks apart; the digest guards the masks' meaning
        # should checks change without it (a release that forgot to bump FINGERPRINT_VERSION).
        "UPDATE invalid_rows SET checks = checks + 1",
    ],
    ids=["forgotten", "under_other_checks"],
)
def test_refused_rows_the_state_cannot_recall_are_read_again_and_refused_the_same(
    store: StateStore, lost: str
) -> None:
    stream, first = _first_load(store)
    store.con.execute(lost)

    rows, again = _planned_again(store, stream, _REFUSING)

    assert rows.reads == 2
    assert again["rejects"] == first.rejects.to_pylist()


def test_a_row_refused_last_time_whose_values_changed_is_checked_again(
    store: StateStore,
) -> None:
    stream, _ = _first_load(store)
    # Row 1's address fixed but its name now too long; row 3's name fixed; row 2 as it was.
    emails = ["a@example.com", "bo@example.com", None, "b@example.com", "c@example.com"]
    fixed = pa.table({"email": emails, "name": ["Ann", "B" * 51, "Cy", "Dee", "Ed"]})

    rows, again = _planned_again(store, stream, fixed)

    assert rows.reads == 2
    fresh = plan_rows(contact_sql(_NAMED, fixed.schema), fixed, store=store)  # a first look
    assert again["rejects"] == fresh.rejects.to_pylist()
    assert [(r["row_number"], r["column"]) for r in again["rejects"]] == [(1, "name"), (2, "email")]
    assert again["counts"].to_render == 1  # row 3, its name fixed


def test_a_row_refused_under_one_policy_is_checked_again_under_another(
    store: StateStore,
) -> None:
    stream, _ = _first_load(store)

    rows, again = _planned_again(store, stream, _REFUSING, on_invalid_value="omit_field")

    assert rows.reads == 2  # the policy is in the fingerprint's signature
    assert [r["row_number"] for r in again["omitted"]] == [3]  # sent without its name
    assert [r["row_number"] for r in again["rejects"]] == [1, 2]


def test_the_state_remembers_only_the_refused_rows_of_the_tables_latest_run(
    store: StateStore,
) -> None:
    stream, _ = _first_load(store)
    other, _ = _first_load(store)
    clean = _REFUSING.filter(pa.array([True, False, False, False, True]))

    _, again = _planned_again(store, stream, clean)

    remembered = store.con.execute(
        "SELECT stream, count(*) FROM invalid_rows GROUP BY stream ORDER BY stream"
    ).fetchall()
    assert again["invalid"] == 0
    assert remembered == [(other, 3)]  # another table's stay


def test_a_state_file_of_schema_11_gains_the_memory_of_refused_rows_and_reruns_with_it(
    tmp_path: Any,
) -> None:
    path = tmp_path / "state.duckdb"
    with StateStore.open(path) as opened:
        stream, first = _first_load(opened)
        opened.con.execute("DROP TABLE invalid_rows")
        opened.con.execute("UPDATE meta SET value = '11' WHERE key = 'schema_version'")

    with StateStore.open(path) as reopened:
        rows, again = _planned_again(reopened, stream, _REFUSING)
        version = reopened.con.execute(
            "SELECT value FROM meta WHERE key = 'schema_version'"
        ).fetchall()
        later, third = _planned_again(reopened, stream, _REFUSING)

    assert version == [(str(SCHEMA_VERSION),)]
    assert (rows.reads, again["rejects"]) == (2, first.rejects.to_pylist())  # nothing to recall
    assert (later.reads, third["rejects"]) == (1, first.rejects.to_pylist())


# -- the render of the rows a rerun checked ------------------------------------------------------

_ROWS = pa.table(
    {
        "email": [f"u{i}@example.com" for i in range(6)],
        "name": ["Ann", "Bo", "Cy", "Dee", "Ed", "Flo"],
    }
)
# Rows 1, 3 and 4 changed (row 3 to a name too long: refused), the others as sent.
_CHANGED = _ROWS.set_column(1, "name", pa.array(["Ann", "Bob", "Cy", "D" * 51, "Eddie", "Flo"]))


def _rendered_again(store: StateStore, batch_rows: int) -> tuple[int, Planned, Planned]:
    """``_CHANGED`` planned and rendered as a rerun of ``_ROWS``, its rows saying a read holds
    ``batch_rows``: how often the source was read, the rerun, and a first look at it."""
    stream, _ = _first_load(store, _ROWS)
    sql = contact_sql(_NAMED, _CHANGED.schema)
    rows = _CountedRows(_CHANGED, batch_rows)
    with Plan.build(store, sql, stream, f"run-{next(_streams)}", rows) as plan:
        again = render_all(plan)
    return rows.reads, again, plan_rows(sql, _CHANGED, store=store)


def test_a_changed_rerun_renders_the_rows_its_check_read_without_reading_the_source_again(
    store: StateStore,
) -> None:
    reads, again, fresh = _rendered_again(store, batch_rows=3)  # the rows to check: 1, 3, 4

    assert reads == 2, "the render read the source a third time"
    assert again.contacts["row_number"].to_pylist() == [1, 4]
    assert _rendered(again) == {r: _rendered(fresh)[r] for r in (1, 4)}
    assert again.rejects.to_pylist() == fresh.rejects.to_pylist()


def test_the_rows_kept_for_the_render_are_let_go_once_rendered_and_read_again_if_asked(
    store: StateStore,
) -> None:
    stream, _ = _first_load(store, _ROWS)
    rows = _CountedRows(_CHANGED)
    with Plan.build(store, contact_sql(_NAMED, _CHANGED.schema), stream, "run-x", rows) as plan:
        first = [r.to_send for r in plan.rendered_batches()]
        again = [r.to_send for r in plan.rendered_batches()]

    assert rows.reads == 3  # the plan's two, then the second render's own
    assert pa.concat_tables(again).equals(pa.concat_tables(first))


def test_a_changed_rerun_with_more_rows_to_check_than_a_read_batch_reads_them_to_render(
    store: StateStore,
) -> None:
    reads, again, fresh = _rendered_again(store, batch_rows=2)  # 3 rows to check: not kept

    assert reads == 3
    assert _rendered(again) == {r: _rendered(fresh)[r] for r in (1, 4)}


# Several job files, read in batches of any size: the same render whether the rows to check
# fit in a read batch (kept from the check's read) or not (read again to render).
_NAMES = st.one_of(
    st.none(), st.sampled_from([b"Ann", b" Bo ", b"", b"\xff", b"C" * 60, b"Di\xa0"])
)
_ROWS_IN_FILES = st.lists(
    st.tuples(st.integers(0, 6), _NAMES, st.sampled_from(["x", "y ", None, "zzz"])), max_size=14
)
_NOTED = {"email": "email", "first_name": "name", "custom_fields": {"note": "note"}}


def _job_files(directory: Path, rows: list[Any], cuts: list[int]) -> list[str]:
    """The rows as parquet files cut at ``cuts``, in row groups of two rows (email 0: not an
    address, 6: none; names as bytes, some not UTF-8)."""
    email = [None if e == 6 else f"u{e}@example.com" if e else "bad" for e, _, _ in rows]
    table = pa.table(
        {
            "email": pa.array(email, pa.string()),
            "name": pa.array([n for _, n, _ in rows], pa.binary()).view(pa.string()),
            "note": pa.array([c for _, _, c in rows], pa.string()),
        }
    )
    paths, start = [], 0
    for end in [*sorted({c for c in cuts if 0 < c < len(rows)}), len(rows)]:
        path = directory / f"part-{next(_streams)}.parquet"
        pq.write_table(table.slice(start, end - start), path, row_group_size=2)
        paths.append(str(path))
        start = end
    return paths


def _load_files(store: StateStore, paths: list[str], batch_rows: int) -> Any:
    """Plan, render and record the files as a load of ``people`` does; what it found."""
    sql = contact_sql(_NOTED, pq.read_schema(paths[0]), {"note": "Text"}, {"note": "e1_T"})
    rows = SourceRows.from_files(paths, ["email", "name", "note"], batch_rows)
    run_id = f"run-{next(_streams)}"
    with Plan.build(store, sql, "people", run_id, rows) as plan:
        store.invalid_rows.remember(run_id, "people", plan.invalid_rows)
        rendered = [r.to_send for r in plan.rendered_batches()]
        sent = pa.concat_tables(rendered) if rendered else RENDERED.empty_table()
        if sent.num_rows:
            store.record_sent(
                run_id=run_id, stream="people", job_id=run_id, contacts=sent, body_bytes=1
            )
        columns = ["row_number", "contact_key", "contact_json", "content_hash"]
        return sent.select(columns).to_pylist(), plan.rejects.to_pylist(), plan.counts


def check_files_rerun(directory: Path, first: Any, second: Any, cuts: Any, batch_rows: int) -> None:
    found = []
    for size in (batch_rows, 100):  # 100: every row to check is kept
        with StateStore.open(directory / f"state-{size}.duckdb") as store:
            _load_files(store, _job_files(directory, first, cuts), 100)
            found.append(_load_files(store, _job_files(directory, second, cuts), size))
    assert found[0] == found[1]


_FILES_RERUN = {
    "first": _ROWS_IN_FILES,
    "second": _ROWS_IN_FILES,
    "cuts": st.lists(st.integers(0, 14), max_size=2),
    "batch_rows": st.integers(1, 5),
}


@settings(_SETTINGS, max_examples=10)
@given(**_FILES_RERUN)
def test_a_rerun_over_several_files_renders_the_same_whatever_rows_a_read_batch_holds(
    tmp_path_factory: pytest.TempPathFactory, first: Any, second: Any, cuts: Any, batch_rows: int
) -> None:
    check_files_rerun(tmp_path_factory.mktemp("files"), first, second, cuts, batch_rows)


@pytest.mark.slow
@settings(_SETTINGS, max_examples=60)
@given(**_FILES_RERUN)
def test_at_length_a_rerun_over_several_files_renders_the_same_whatever_a_read_batch_holds(
    tmp_path_factory: pytest.TempPathFactory, first: Any, second: Any, cuts: Any, batch_rows: int
) -> None:
    check_files_rerun(tmp_path_factory.mktemp("files"), first, second, cuts, batch_rows)


_REQUIRED = pa.schema(
    [
        pa.field("email", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("born", pa.date32(), nullable=False),
    ]
)


def _required_file(path: Path, names: list[bytes], born: list[int]) -> str:
    columns = [
        pa.array([f"{c}@example.com" for c in "abcd"]),
        pa.array(names, pa.binary()).view(pa.string()),
        pa.array(born, pa.date32()),
    ]
    pq.write_table(pa.Table.from_arrays(columns, schema=_REQUIRED), path)
    return str(path)


@pytest.mark.parametrize(
    "odd",
    [{"name": b"D\xff"}, {"born": 100_000_000}],
    ids=["text_not_utf8", "date_beyond_duckdb"],
)
def test_a_rerun_renders_rows_kept_from_batches_that_changed_a_not_null_column_differently(
    tmp_path: Path, odd: dict[str, Any]
) -> None:
    # dlt writes primary keys and columns declared not nullable as required parquet fields;
    # a read batch holding a value made null (text not UTF-8) or clamped (a far date) says
    # its column is nullable, the other batches need not.
    mapping = {"email": "email", "first_name": "name", "custom_fields": {"born": "born"}}
    sql = contact_sql(mapping, _REQUIRED, {"born": "Date"}, {"born": "e1_D"})
    names, born = [b"Ann", b"Bo", b"Cy", b"Di"], [0, 1, 2, 3]
    found = []
    with StateStore.open(tmp_path / "state.duckdb") as store:
        for load in range(2):
            if load:  # row 0 (first batch) changed, row 3 (second batch) odd
                names[0], names[3] = b"Annie", odd.get("name", names[3])
                born[3] = odd.get("born", born[3])
            path = _required_file(tmp_path / f"load-{load}.parquet", names, born)
            rows = SourceRows.from_files([path], _REQUIRED.names, batch_rows=2)
            with Plan.build(store, sql, "people", f"load-{load}", rows) as plan:
                sent = pa.concat_tables([r.to_send for r in plan.rendered_batches()])
                run_id = f"load-{load}"
                store.record_sent(
                    run_id=run_id, stream="people", job_id=run_id, contacts=sent, body_bytes=1
                )
                rejected = plan.rejects["row_number"].to_pylist()
                found.append((sent["row_number"].to_pylist(), rejected))

    assert found == [([0, 1, 2, 3], []), ([0], [3])]


def test_rows_kept_from_batches_that_disagree_on_a_columns_nullability_are_joined() -> None:
    # What the test above meets if normalize_arrow ever leaves an unchanged column alone.
    def batch(values: list[str | None], nullable: bool) -> pa.RecordBatch:
        schema = pa.schema([pa.field("n", pa.string(), nullable=nullable)])
        return pa.RecordBatch.from_arrays([pa.array(values, pa.string())], schema=schema)

    kept = _as_read([batch(["x"], nullable=False), batch([None], nullable=True)])

    assert kept is not None and kept["n"].to_pylist() == ["x", None]
