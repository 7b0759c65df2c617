"""Queries whose result grows with the rows' text stay within DuckDB's memory cap: DuckDB
gathers such a result whole in its memory, so a batch of long values is run in slices
(``sliced_query``), and the state lowers its cap while a plan renders and while it merges
its spool."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from sendgrid_destination.bulk_csv import CsvFile, CsvLayout
from sendgrid_destination.mapping import Binding
from sendgrid_destination.plan import Plan
from sendgrid_destination.schemas import RENDERED
from sendgrid_destination.sliced_query import SlicedQuery
from sendgrid_destination.source_rows import SourceRows
from sendgrid_destination.state import StateStore
from sendgrid_destination.state.spool import Spool, spool_dir
from tests.planning import contact_sql, one_batch

# 1,000 characters of four bytes: the longest value a Text custom field takes, at its widest.
LONG = "\U0001f600" * 1000
ROWS = 10_000  # about 40 MB of JSON: more than DuckDB holds under the caps the tests run


def _cap(store: StateStore) -> float:
    return _as_bytes(store.con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0])


def _as_bytes(text: str) -> float:
    number, unit = text.split()
    return float(number) * {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30}[unit]


def test_a_batch_whose_json_outgrows_the_memory_cap_renders_every_contact_in_order(
    tmp_path: Path,
) -> None:
    emails = [f"u{i}@x.co" for i in range(ROWS)]
    batch = pa.table({"email": emails, "c": [f"{i}{LONG}"[:1000] for i in range(ROWS)]})
    sql = contact_sql(
        {"email": "email", "custom_fields": {"f": "c"}}, batch.schema, {"f": "Text"}, {"f": "e1_T"}
    )
    with StateStore.open(tmp_path / "state.duckdb") as store:
        rows = SourceRows.from_batch(one_batch(batch), 0)
        with Plan.build(store, sql, "contacts", "run-1", rows) as plan:
            # Rendered under the state's render cap (64 MB): the whole batch needs more.
            rendered = [r.to_send for r in plan.rendered_batches()]

    contacts = pa.concat_tables(rendered)
    assert contacts["row_number"].to_pylist() == list(range(ROWS))
    cells = [json.loads(cell[:-1]) for cell in contacts["contact_json"].to_pylist()]
    assert [c["email"] for c in cells] == emails
    assert [c["custom_fields"]["e1_T"] for c in cells] == batch["c"].to_pylist()


def test_an_import_file_of_long_values_holds_every_contact_in_order(tmp_path: Path) -> None:
    bindings = [
        Binding("email", "email", "identifier", "string", "Text"),
        Binding("plan", "plan", "custom", "string", "Text", custom_field_id="e1_T"),
    ]
    layout = CsvLayout.of(bindings, {"email": "_rf2_T"})
    cells = [
        json.dumps({"email": f"u{i}@x.co", "custom_fields": {"e1_T": LONG}}) + ","
        for i in range(ROWS)
    ]
    contacts = pa.table(
        {
            "row_number": list(range(ROWS)),
            "contact_key": [f"email:u{i}@x.co" for i in range(ROWS)],
            "contact_json": cells,
        }
    )
    contacts = _rendered(contacts)
    with duckdb.connect(str(tmp_path / "s.duckdb"), config={"memory_limit": "16MB"}) as con:
        built = CsvFile(layout, con.cursor(), tmp_path)
        built.add(contacts)
        file = built.finish()
        text = gzip.decompress(file.data.read()).decode()
        file.close()
    header, *records = list(csv.reader(io.StringIO(text)))
    assert header == ["email", "plan"]
    assert [r[0] for r in records] == [f"u{i}@x.co" for i in range(ROWS)]
    assert all(r[1] == LONG for r in records)


def _rendered(partial: pa.Table) -> pa.Table:
    columns = {}
    for field in RENDERED:
        if field.name in partial.column_names:
            columns[field.name] = partial[field.name]
        else:
            columns[field.name] = pa.nulls(partial.num_rows, field.type)
    table = pa.table(columns).cast(RENDERED)
    return table.set_column(
        table.schema.get_field_index("list_scope"), "list_scope", pa.array([""] * partial.num_rows)
    )


def test_the_state_lowers_its_memory_cap_while_rendering_and_restores_it_after(
    tmp_path: Path,
) -> None:
    with StateStore.open(tmp_path / "state.duckdb") as store:
        planning = _cap(store)
        with store.render_memory():
            rendering = _cap(store)
        assert rendering < planning / 2
        assert _cap(store) == planning
        with pytest.raises(RuntimeError), store.render_memory():
            raise RuntimeError("a render failed")
        assert _cap(store) == planning


def _fails_above(limit: int, seen: list[int]):
    def query(rows: pa.Table) -> pa.Table:
        seen.append(rows.num_rows)
        if rows.num_rows > limit:
            raise duckdb.OutOfMemoryException("Out of Memory Error: failed to allocate")
        return rows.append_column("twice", pa.array([2 * v for v in rows["v"].to_pylist()]))

    return query


def test_a_query_out_of_memory_runs_again_in_halves_and_the_next_batch_starts_sliced() -> None:
    table = pa.table({"v": list(range(100))})
    seen: list[int] = []
    slices = SlicedQuery()
    result = slices.run(table, _fails_above(30, seen))
    assert result["twice"].to_pylist() == [2 * v for v in range(100)]
    assert seen[:3] == [100, 50, 25]  # halved until it fits, then slices of that size
    assert max(seen[3:]) == 25
    seen.clear()
    assert slices.run(table, _fails_above(30, seen))["v"].to_pylist() == list(range(100))
    assert max(seen) == 25  # no failed attempt: the size that fitted is kept


def test_a_single_row_out_of_memory_is_raised_and_an_empty_table_runs_once() -> None:
    with pytest.raises(duckdb.OutOfMemoryException):
        SlicedQuery().run(pa.table({"v": [1, 2, 3]}), _fails_above(0, []))
    seen: list[int] = []
    assert (
        SlicedQuery().run(pa.table({"v": pa.array([], pa.int64())}), _fails_above(5, seen)).num_rows
        == 0
    )
    assert seen == [0]


def test_spooled_contacts_merge_under_the_render_cap_and_the_cap_in_force_comes_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    caps_while_merging: list[str] = []
    merge = Spool.merge

    def merge_seeing_the_cap(spool: Spool, cur: duckdb.DuckDBPyConnection) -> None:
        (cap,) = cur.sql("SELECT current_setting('memory_limit')").fetchall()[0]
        caps_while_merging.append(cap)
        merge(spool, cur)

    with StateStore.open(tmp_path / "state.duckdb") as store:
        monkeypatch.setattr(Spool, "merge", merge_seeing_the_cap)  # after the merge at open
        planning = _cap(store)
        with store.render_memory():
            rendering = _cap(store)
        _record_one(store, "j1", "email:a@x.co")
        assert _cap(store) == planning  # merged first (under the render cap), then read
        with store.render_memory():
            _record_one(store, "j2", "email:b@x.co")
            assert _cap(store) == rendering  # a merge inside a render keeps the render's cap
        assert _cap(store) == planning
        assert store.con.sql("SELECT count(*) FROM contacts").fetchall() == [(2,)]

    assert len(caps_while_merging) == 2
    assert all(_as_bytes(cap) == rendering for cap in caps_while_merging)


def _record_one(store: StateStore, job: str, key: str) -> None:
    store.record_sent(run_id="r1", stream="s", job_id=job, contacts=_sent([key]), body_bytes=1)


@pytest.mark.slow
def test_a_merge_without_room_under_the_render_cap_runs_again_under_the_cap_in_force(
    tmp_path: Path,
) -> None:
    # The index of 1.5M identities (57 MB) stays in memory: lowering the cap to 64 MB
    # succeeds and leaves too little room to merge a million spooled contacts.
    requests, per_request = 34, 30_000
    with StateStore.open(tmp_path / "state.duckdb") as store:
        with store.workspace() as cur:
            cur.execute(
                "INSERT INTO identities (contact_key, email) SELECT 'email:id' || i || "
                "'@example.com', 'id' || i || '@example.com' FROM range(1500000) t(i)"
            )
            cur.execute(  # a plan's table, resident beside the merge
                "CREATE TEMP TABLE sg_big AS SELECT i, md5(i::VARCHAR) || md5((i + 1)::VARCHAR) "
                "AS s FROM range(1500000) t(i)"
            )
        planning = _cap(store)
        for i in range(requests):
            keys = [f"email:u{i * per_request + j}@example.com" for j in range(per_request)]
            store.record_sent(  # the last one merges (past MERGE_ROWS)
                run_id="r1", stream="s", job_id=f"j{i}", contacts=_sent(keys), body_bytes=1
            )

        assert store.con.sql("SELECT count(*) FROM contacts").fetchall() == [
            (requests * per_request,)
        ]
        assert _cap(store) == planning
    assert not any(spool_dir(tmp_path / "state.duckdb").iterdir())


def _sent(keys: list[str]) -> pa.Table:
    n = len(keys)
    return pa.table(
        {
            "contact_key": keys,
            "content_hash": pa.array(range(n), pa.uint64()),
            "fingerprint": pa.array(range(n), pa.uint64()),
            "is_new": [True] * n,
            "ids": pa.nulls(n, pa.string()),
            "list_scope": [""] * n,
        }
    )
