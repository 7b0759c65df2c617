"""The plan and render: de-duplication, ordering, content hashes, and a no-row-lost property."""

from __future__ import annotations

import hashlib
import json
import math
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sendgrid_destination.contact_model import EMAIL_RE
from sendgrid_destination.contact_sql import ContactSql
from sendgrid_destination.plan import Plan
from sendgrid_destination.source_rows import SourceRows
from sendgrid_destination.state import StateStore
from tests.planning import Planned, contact_sql, content_digest, legacy_hash, plan_rows

MAPPING = {"email": "email", "first_name": "fn", "city": "city"}


class _Compiled:
    """A mapping compiled for a batch's schema; ``run`` plans and renders rows as a load."""

    def __init__(self, sql: ContactSql) -> None:
        self.sql = sql

    def run(self, batch: pa.Table, first_row: int = 0, store: StateStore | None = None) -> Planned:
        return plan_rows(self.sql, batch, first_row=first_row, store=store)


def transformer(batch: pa.Table, mapping: dict = MAPPING, **options) -> _Compiled:
    return _Compiled(contact_sql(mapping, batch.schema, **options))


def parsed(result: Planned) -> list[dict]:
    return [json.loads(cell[:-1]) for cell in result.contacts["contact_json"].to_pylist()]


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- duplicates within a batch -----------------------------------------------------------------


def test_the_last_row_of_a_repeated_contact_wins_whole_and_is_not_merged_with_earlier_rows():
    batch = pa.table(
        {
            "email": ["a@x.co", "b@x.co", " A@X.CO "],
            "fn": ["Ann", "Bob", "Anne"],
            "city": ["Paris", "Oslo", None],
        }
    )

    result = transformer(batch).run(batch)

    # Row 2 has no city: the earlier "Paris" must not leak into the surviving contact.
    assert parsed(result) == [
        {"email": "b@x.co", "first_name": "Bob", "city": "Oslo"},
        {"email": "a@x.co", "first_name": "Anne"},
    ]
    assert result.contacts["row_number"].to_pylist() == [1, 2]
    assert result.contacts["contact_key"].to_pylist() == ["email:b@x.co", "email:a@x.co"]


def test_contacts_come_out_in_row_order_of_their_last_occurrence_across_a_large_batch():
    # More rows than DuckDB's 122,880-row morsel, so a parallel scan could reorder them.
    n, distinct = 150_000, 50_000
    keys = pc.cast(pa.array(np.arange(n) % distinct), pa.string())
    batch = pa.table(
        {
            "email": pc.binary_join_element_wise("u", keys, "@x.co", ""),
            "fn": pc.cast(pa.array(np.arange(n)), pa.string()),
            "city": pa.nulls(n, pa.string()),
        }
    )

    result = transformer(batch).run(batch, first_row=5)

    rows = result.contacts["row_number"].to_numpy()
    np.testing.assert_array_equal(rows, np.arange(n - distinct, n) + 5)
    first, last = parsed(result)[0], json.loads(result.contacts["contact_json"][-1].as_py()[:-1])
    assert first == {"email": "u0@x.co", "first_name": str(n - distinct)}
    assert last == {"email": f"u{distinct - 1}@x.co", "first_name": str(n - 1)}
    assert result.rejects.num_rows == 0


def _last_rows(keys: list[str]) -> list[int]:
    """The row numbers the plan sends for rows with these contact keys (emails)."""
    batch = pa.table(
        {
            "email": [f"{k}@x.co" for k in keys],
            "fn": pa.array(["n"] * len(keys), pa.string()),
            "city": pa.nulls(len(keys), pa.string()),
        }
    )
    return transformer(batch).run(batch).contacts["row_number"].to_pylist()


def test_the_plan_keeps_the_last_row_of_each_key_in_order():
    assert _last_rows(["a", "b", "a", "c", "b", "d"]) == [2, 3, 4, 5]


@pytest.mark.parametrize("keys", [[], ["only"]])
def test_the_plan_keeps_tiny_inputs_whole(keys):
    assert _last_rows(keys) == list(range(len(keys)))


@settings(max_examples=50, deadline=None)
@given(keys=st.lists(st.sampled_from("abcdefg"), max_size=40))
def test_the_plans_last_row_per_key_matches_a_reference(keys):
    last = {k: i for i, k in enumerate(keys)}

    assert _last_rows(keys) == sorted(last.values())


# -- content hash ------------------------------------------------------------------------------

ANN = pa.table({"email": [" Ann@X.co "], "fn": ["Ann"], "city": pa.nulls(1, pa.string())})
ANN_JSON = '{"email":"ann@x.co","first_name":"Ann"},'
# md5("list-a,list-b\n" + ANN_JSON), computed with hashlib from the text above.
ANN_DIGEST = "8b17b358f2af4c28b431421cfbee28f8"
# The content hash of state files before schema 5: sha256 of the same text.
ANN_LEGACY_DIGEST = "c4d4102188485f33e48bbd1fb0baa4561627290085f88feee0a3c689957aad80"


def test_the_content_hash_is_md5_of_the_sorted_list_scope_and_the_contact_json():
    assert md5_hex("list-a,list-b\n" + ANN_JSON) == ANN_DIGEST

    result = transformer(ANN, list_ids=["list-b", "list-a"]).run(ANN)

    assert result.contacts["contact_json"].to_pylist() == [ANN_JSON]
    expected = content_digest("list-a,list-b\n" + ANN_JSON)
    assert result.contacts["content_hash"].to_pylist() == [expected]


def test_without_lists_the_scope_is_empty_but_still_separated_by_a_newline():
    result = transformer(ANN).run(ANN)

    assert result.contacts["content_hash"].to_pylist() == [content_digest("\n" + ANN_JSON)]


def test_the_legacy_hash_is_sha256_of_the_same_scope_and_json():
    assert sha256_hex("list-a,list-b\n" + ANN_JSON) == ANN_LEGACY_DIGEST
    legacy = legacy_hash(transformer(ANN, list_ids=["list-b", "list-a"]).sql, pa.array([ANN_JSON]))

    assert legacy.to_pylist() == [ANN_LEGACY_DIGEST]


def test_the_content_hash_changes_with_the_lists_but_not_with_their_order():
    def digest(list_ids: list[str]) -> int:
        return transformer(ANN, list_ids=list_ids).run(ANN).contacts["content_hash"][0].as_py()

    ann = content_digest("list-a,list-b\n" + ANN_JSON)
    assert digest(["list-a", "list-b"]) == digest(["list-b", "list-a"]) == ann
    assert digest(["list-a"]) != ann
    assert digest(["list-a", "list-b", "list-c"]) != ann
    assert digest([]) != ann


def test_two_plans_on_their_own_state_files_produce_identical_contacts(tmp_path):
    batch = pa.table(
        {"email": ["a@x.co", "b@x.co"], "fn": ["é日😀", None], "city": ['q"\\', "Oslo"]}
    )

    with StateStore.open(tmp_path / "one.duckdb") as first:
        one = transformer(batch, list_ids=["l1"]).run(batch, store=first)
    with StateStore.open(tmp_path / "two.duckdb") as second:
        two = transformer(batch, list_ids=["l1"]).run(batch, store=second)

    assert one.contacts.equals(two.contacts)
    for cell, digest in zip(
        one.contacts["contact_json"].to_pylist(),
        one.contacts["content_hash"].to_pylist(),
        strict=True,
    ):
        assert digest == content_digest("l1\n" + cell)


# -- no row lost, none invented ----------------------------------------------------------------

GOOD_EMAILS = ["ann@x.co", "bob@example.org", "c.d+tag@sub.example.com", "o'neil@x.io"]
BAD_EMAILS = ["", "   ", "nobody", "a@b", "x y@z.co", "@x.co", "a@x.c", "a@@x.co"]


@st.composite
def email_cells(draw) -> str | None:
    kind = draw(st.sampled_from(["good", "good", "good", "bad", "null"]))
    if kind == "null":
        return None
    if kind == "bad":
        return draw(st.sampled_from(BAD_EMAILS))
    email = draw(st.sampled_from(GOOD_EMAILS))
    email = "".join(c.upper() if draw(st.booleans()) else c for c in email)
    return " " * draw(st.integers(0, 2)) + email + " " * draw(st.integers(0, 2))


NAME_TEXT = st.text(alphabet='abcXYZ é日😀"\\\n\t', max_size=55)
ROWS = st.lists(
    st.tuples(
        email_cells(),
        st.one_of(st.none(), NAME_TEXT),
        st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    ),
    max_size=25,
)
SCORE_SCHEMA = pa.schema([("email", pa.string()), ("fn", pa.string()), ("score", pa.float64())])
SCORE_SQL = contact_sql(
    {"email": "email", "first_name": "fn", "custom_fields": {"score": "score"}},
    SCORE_SCHEMA,
    {"score": "Number"},
    {"score": "e5_N"},
)


def expected_row(email: str | None, name: str | None, score: float | None):
    """(contact key, reason prefixes, contact object) that the documented rules predict."""
    cleaned = (email or "").strip(" ").lower() or None
    # In the order the transform lists them: per mapped field, then the missing identifier.
    problems = []
    if cleaned is not None and (not EMAIL_RE.fullmatch(cleaned) or len(cleaned) > 254):
        problems.append("email: not a valid email address")
    # Reserved text fields lose their surrounding whitespace before the checks.
    name = (name or "").strip(" \t\n\r\f\v\u00a0") or None
    if name and len(name) > 50:
        problems.append("first_name: longer than 50 characters")
    if score is not None and not math.isfinite(score):
        problems.append("score: not a finite number")
    if cleaned is None:
        problems.append("no identifier")
    contact: dict = {"email": cleaned}
    if name:
        contact["first_name"] = name
    if score is not None:
        contact["custom_fields"] = {"e5_N": score}
    return (None if cleaned is None else f"email:{cleaned}"), problems, contact


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=ROWS, first_row=st.integers(0, 10**9))
def test_every_row_is_sent_rejected_or_replaced_by_its_keys_last_row_nothing_invented(
    rows, first_row
):
    check_every_row_accounted_for(rows, first_row)


@pytest.mark.slow
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=ROWS, first_row=st.integers(0, 10**9))
def test_at_length_every_row_is_sent_rejected_or_replaced_by_its_keys_last_row(rows, first_row):
    check_every_row_accounted_for(rows, first_row)


def check_every_row_accounted_for(rows, first_row):
    batch = pa.Table.from_pylist(
        [dict(zip(SCORE_SCHEMA.names, row, strict=True)) for row in rows], schema=SCORE_SCHEMA
    )
    expected = [expected_row(*row) for row in rows]

    result = plan_rows(SCORE_SQL, batch, first_row=first_row)

    # The last row of each key decides (valid or not); rows without a key stand alone.
    last = {key: i for i, (key, _, _) in enumerate(expected) if key is not None}
    kept = [i for i, (key, _, _) in enumerate(expected) if key is None or last[key] == i]
    assert result.superseded == len(rows) - len(kept)

    # Rejected rows: exactly the kept rows with problems, one reject per problem, in order.
    got_rejects: dict[int, list[str]] = {}
    for r in result.rejects.to_pylist():
        assert r["contact_key"] == expected[r["row_number"] - first_row][0]
        got_rejects.setdefault(r["row_number"] - first_row, []).append(r["reason"])
    want_rejects = {i: expected[i][1] for i in kept if expected[i][1]}
    assert got_rejects.keys() == want_rejects.keys()
    for i, reasons in got_rejects.items():
        assert len(reasons) == len(want_rejects[i])
        for reason, prefix in zip(reasons, want_rejects[i], strict=True):
            assert reason.startswith(prefix)

    # Sent rows: the kept rows without problems, in row order, with the predicted JSON.
    sent_rows = [r - first_row for r in result.contacts["row_number"].to_pylist()]
    assert sent_rows == [i for i in kept if not expected[i][1]]
    assert result.contacts["contact_key"].to_pylist() == [expected[i][0] for i in sent_rows]
    assert parsed(result) == [expected[i][2] for i in sent_rows]


SCORE_SQL_EMPTY = plan_rows(SCORE_SQL, SCORE_SCHEMA.empty_table()).contacts


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=ROWS)
def test_a_job_files_plan_keeps_each_keys_last_row_rejects_its_problems_and_renders_the_rest(
    rows,
):
    # The load's path over a job file streamed in batches of 4 rows: the plan over the whole
    # file (duplicates resolved across batches), then the render of each batch's planned rows.
    batch = pa.Table.from_pylist(
        [dict(zip(SCORE_SCHEMA.names, row, strict=True)) for row in rows], schema=SCORE_SCHEMA
    )
    expected = [expected_row(*row) for row in rows]
    with tempfile.TemporaryDirectory() as tmp, StateStore.open(Path(tmp) / "s.duckdb") as store:
        pq.write_table(batch, Path(tmp) / "job.parquet")
        source = SourceRows.from_file(str(Path(tmp) / "job.parquet"), SCORE_SCHEMA.names, 4)
        with Plan.build(store, SCORE_SQL, "stream", "r", source) as plan:
            rendered = [r.to_send for r in plan.rendered_batches()]
        sent = pa.concat_tables(rendered) if rendered else SCORE_SQL_EMPTY

    last = {key: i for i, (key, _, _) in enumerate(expected) if key is not None}
    kept = [i for i, (key, _, _) in enumerate(expected) if key is None or last[key] == i]
    assert plan.counts.superseded == len(rows) - len(kept)
    rejected = sorted(set(plan.rejects["row_number"].to_pylist()))
    assert rejected == [i for i in kept if expected[i][1]]
    assert sent["row_number"].to_pylist() == [i for i in kept if not expected[i][1]]
    assert sent["is_new"].to_pylist() == [True] * sent.num_rows
    assert sent["contact_key"].to_pylist() == [
        expected[i][0] for i in sent["row_number"].to_pylist()
    ]
    contacts = [json.loads(cell[:-1]) for cell in sent["contact_json"].to_pylist()]
    assert contacts == [expected[i][2] for i in sent["row_number"].to_pylist()]
