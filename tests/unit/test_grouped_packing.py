"""GroupedPacker: bodies per list scope (and new/known contacts), each group packed in as few
requests as its own contacts need, with the open bodies' memory bounded.

The request-count bound the README states: for each group, exactly the minimum of an
order-preserving packing of that group's contacts (``optimal_request_count``), as long as the
open bodies fit ``max_open_bytes``.
"""

from __future__ import annotations

import itertools
import json

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from sendgrid_destination.contact_ids import URL_BUDGET, url_chunks
from sendgrid_destination.packing import Body, GroupedPacker
from tests.unit.test_packing_bodies import optimal_request_count, sized_cell

SCOPES = ["", "list-a", "list-a,list-b", "list-c"]


def table(sizes: list[int], scopes: list[str], new: list[bool]) -> pa.Table:
    rows = range(len(sizes))
    return pa.table(
        {
            "contact_key": [f"email:u{r}@x.co" for r in rows],
            "row_number": pa.array(rows, pa.int64()),
            "contact_json": [sized_cell(s) for s in sizes],
            "content_hash": [f"h{r}" for r in rows],
            "list_scope": scopes,
            "is_new": new,
        }
    )


def pack_all(packer: GroupedPacker, contacts: pa.Table, cuts: list[int]) -> list[Body]:
    bounds = [0, *sorted(cuts), contacts.num_rows]
    bodies: list[Body] = []
    for start, stop in itertools.pairwise(bounds):
        bodies += packer.add(contacts.slice(start, stop - start))
    return bodies + packer.flush()


@st.composite
def grouped_cases(draw: st.DrawFn) -> tuple[list[int], list[str], list[bool], int, int, list[int]]:
    n = draw(st.integers(0, 120))
    sizes = draw(st.lists(st.integers(9, 300), min_size=n, max_size=n))
    scopes = draw(st.lists(st.sampled_from(SCOPES), min_size=n, max_size=n))
    new = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    max_bytes = draw(st.integers(400, 2_000))
    max_contacts = draw(st.integers(1, 40))
    cuts = draw(st.lists(st.integers(0, n), max_size=4))
    return sizes, scopes, new, max_bytes, max_contacts, cuts


@settings(max_examples=150, deadline=None)
@given(case=grouped_cases(), split_new=st.booleans())
def test_each_body_carries_one_list_scope_and_each_group_uses_its_minimum_of_requests(
    case, split_new
) -> None:
    sizes, scopes, new, max_bytes, max_contacts, cuts = case
    contacts = table(sizes, scopes, new)

    bodies = pack_all(GroupedPacker(max_bytes, max_contacts, split_new=split_new), contacts, cuts)

    seen: list[int] = []
    per_group: dict[tuple[str, bool | None], list[list[int]]] = {}
    for body in bodies:
        doc = json.loads(body.data)
        rows = body.contacts["row_number"].to_pylist()
        group_scopes = set(body.contacts["list_scope"].to_pylist())
        assert len(group_scopes) == 1
        (scope,) = group_scopes
        assert doc.get("list_ids", []) == (scope.split(",") if scope else [])
        assert len(doc["contacts"]) == len(rows) <= max_contacts and len(body.data) <= max_bytes
        kinds = set(body.contacts["is_new"].to_pylist())
        if split_new:
            assert len(kinds) == 1
        key = (scope, kinds.pop() if split_new else None)
        per_group.setdefault(key, []).append(rows)
        seen += rows
    assert sorted(seen) == list(range(len(sizes)))  # every contact exactly once
    for (scope, kind), runs in per_group.items():
        flat = [r for run in runs for r in run]
        assert flat == sorted(flat)  # row order kept within a group
        members = [i for i in range(len(sizes)) if scopes[i] == scope]
        if split_new:
            members = [i for i in members if new[i] == kind]
        prefix = len(GroupedPacker(max_bytes, max_contacts)._packer(scope).prefix)
        capacity = max_bytes - prefix - 1
        sizes_in = [sizes[i] for i in members]
        assert len(runs) == optimal_request_count(sizes_in, capacity, max_contacts)


def test_open_bodies_beyond_the_memory_bound_send_the_fullest_early() -> None:
    scopes = [f"list-{i}" for i in range(10)]
    contacts = table([100] * 10, scopes, [True] * 10)
    packer = GroupedPacker(10_000, 100, max_open_bytes=450)

    early = packer.add(contacts)

    assert len(early) == 6  # 10 open bodies of 100 bytes: the 6 fullest leave, 400 stay open
    assert len(packer.flush()) == 4


def test_a_contact_too_large_for_its_groups_envelope_is_refused_as_a_row() -> None:
    long_scope = ",".join(f"{i:036d}" for i in range(20))  # a long list_ids envelope
    contacts = table([300, 300], ["", long_scope], [True, True])
    packer = GroupedPacker(max_bytes=900, max_contacts=10)  # the long envelope is ~800 bytes

    fitting, too_big = packer.split_oversize(contacts)

    assert fitting["list_scope"].to_pylist() == [""]
    assert too_big["row_number"].to_pylist() == [1]


@settings(max_examples=200, deadline=None)
@given(
    ids=st.lists(st.text(alphabet="0123456789abcdef-", min_size=1, max_size=40), max_size=600),
    prefix=st.integers(0, 200),
)
def test_ids_are_cut_into_urls_within_the_budget_in_order(ids: list[str], prefix: int) -> None:
    chunks = list(url_chunks(ids, prefix))

    assert [i for chunk in chunks for i in chunk] == ids
    for chunk in chunks:
        assert chunk
        assert prefix + len(",".join(chunk)) <= URL_BUDGET or len(chunk) == 1
