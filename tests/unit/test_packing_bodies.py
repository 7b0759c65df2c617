"""Packer: contact JSON cells into upsert bodies within both limits, in as few requests as possible.

Notation used throughout (all sizes are exact UTF-8 bytes):

* ``p``  = len(prefix), the envelope ``{"contacts":[`` (or with ``"list_ids"``);
* ``s_i`` = size of cell i, one contact object plus its trailing comma;
* a body holding cells i..j is ``prefix + cells - last comma + "]}"``, so its size is
  ``p + sum(s) + 1``; with ``W = max_bytes - p - 1`` a run of cells fits iff ``sum(s) <= W``.
"""

from __future__ import annotations

import itertools
import json
import math
import random

import pyarrow as pa
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from sendgrid_destination.contact_model import MAX_CONTACTS_PER_REQUEST, MAX_REQUEST_BYTES
from sendgrid_destination.errors import ConfigurationError
from sendgrid_destination.packing import Body, Packer, encode_body, envelope_prefix

PLAIN = envelope_prefix([])


def contacts_table(cells: list[str], first_row: int = 0, *, large: bool = False) -> pa.Table:
    rows = range(first_row, first_row + len(cells))
    return pa.table(
        {
            "contact_key": pa.array([f"email:u{r}@x.co" for r in rows], pa.string()),
            "row_number": pa.array(rows, pa.int64()),
            "contact_json": pa.array(cells, pa.large_string() if large else pa.string()),
            "content_hash": pa.array([f"h{r}" for r in rows], pa.string()),
        }
    )


def cell(row: int, text: str) -> str:
    obj = {"email": f"u{row}@x.co", "first_name": text}
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + ","


def sized_cell(size: int) -> str:
    """A cell of exactly ``size`` bytes (>= 9): ``{"p":"xxx"},``."""
    return '{"p":"' + "x" * (size - 9) + '"},'


def pack(packer: Packer, table: pa.Table, cuts: list[int] = ()) -> list[Body]:
    """Feed ``table`` in pieces split at ``cuts``, then flush."""
    bounds = [0, *sorted(cuts), table.num_rows]
    bodies: list[Body] = []
    for start, stop in itertools.pairwise(bounds):
        bodies += packer.add(table.slice(start, stop - start))
    tail = packer.flush()
    return bodies + ([tail] if tail else [])


def optimal_request_count(sizes: list[int], capacity: int, max_contacts: int) -> int:
    """Fewest order-preserving runs with sum(size) <= capacity and len <= max_contacts (DP)."""
    best = [0] + [math.inf] * len(sizes)
    for end in range(1, len(sizes) + 1):
        total = 0
        for start in range(end - 1, max(end - max_contacts, 0) - 1, -1):
            total += sizes[start]
            if total > capacity:
                break
            best[end] = min(best[end], best[start] + 1)
    return int(best[-1])


def check_bodies(bodies: list[Body], table: pa.Table, prefix: bytes, list_ids, max_bytes, cap):
    """Every body valid, within limits, and together exactly the input contacts in order."""
    for body in bodies:
        assert 1 <= body.contact_count <= cap
        assert len(body.data) <= max_bytes
        cells = body.contacts["contact_json"].to_pylist()
        assert body.data == prefix + "".join(cells).encode()[:-1] + b"]}"
        decoded = json.loads(body.data)
        assert list(decoded) == (["list_ids", "contacts"] if list_ids else ["contacts"])
        if list_ids:
            assert decoded["list_ids"] == list(list_ids)
        assert decoded["contacts"] == [json.loads(c[:-1]) for c in cells]
    if bodies:
        assert pa.concat_tables([b.contacts for b in bodies]).equals(table.combine_chunks())
    else:
        assert table.num_rows == 0


# -- properties --------------------------------------------------------------------------------

TEXT = st.text(alphabet='abcXYZ09 é日😀"\\\n', max_size=40)


@st.composite
def packing_cases(draw):
    texts = draw(st.lists(TEXT, max_size=60))
    cells = [cell(i, t) for i, t in enumerate(texts)]
    list_ids = draw(st.sampled_from([(), ("list-a",), ("b-2", "a-1", "日本")]))
    prefix = envelope_prefix(list_ids)
    biggest = max((len(c.encode()) for c in cells), default=3)
    max_bytes = len(prefix) + 1 + biggest + draw(st.integers(0, 400))
    max_contacts = draw(st.integers(1, 8))
    cuts = draw(st.lists(st.integers(0, len(cells)), max_size=5))
    first_row = draw(st.integers(0, 10**6))
    return cells, list_ids, prefix, max_bytes, max_contacts, cuts, first_row


@settings(max_examples=150, deadline=None)
@given(case=packing_cases())
def test_bodies_are_valid_within_limits_lossless_ordered_and_as_few_as_possible(case):
    cells, list_ids, prefix, max_bytes, max_contacts, cuts, first_row = case
    table = contacts_table(cells, first_row)

    bodies = pack(Packer(prefix, max_bytes, max_contacts), table, cuts)

    check_bodies(bodies, table, prefix, list_ids, max_bytes, max_contacts)
    sizes = [len(c.encode()) for c in cells]
    capacity = max_bytes - len(prefix) - 1
    assert len(bodies) == optimal_request_count(sizes, capacity, max_contacts)


@settings(max_examples=100, deadline=None)
@given(case=packing_cases())
def test_splitting_the_input_across_add_calls_yields_the_same_bodies_as_one_call(case):
    cells, _, prefix, max_bytes, max_contacts, cuts, first_row = case
    table = contacts_table(cells, first_row)

    whole = pack(Packer(prefix, max_bytes, max_contacts), table)
    pieces = pack(Packer(prefix, max_bytes, max_contacts), table, cuts)
    # Pieces arriving as a multi-chunk table must not matter either.
    bounds = [0, *sorted(cuts), table.num_rows]
    chunked = pa.concat_tables([table.slice(a, b - a) for a, b in itertools.pairwise(bounds)])
    from_chunks = pack(Packer(prefix, max_bytes, max_contacts), chunked)

    assert [b.data for b in pieces] == [b.data for b in whole] == [b.data for b in from_chunks]
    for a, b in zip(pieces, whole, strict=True):
        assert a.contacts.equals(b.contacts)


@settings(max_examples=100, deadline=None)
@given(
    max_bytes=st.integers(1_000, 6_000),
    max_contacts=st.one_of(st.integers(1, 300), st.just(MAX_CONTACTS_PER_REQUEST)),
    n=st.integers(0, 3_000),
    seed=st.integers(0, 2**32),
    spread=st.floats(0, 1),
    data=st.data(),
)
def test_small_contacts_need_at_most_one_request_more_than_the_lower_bound(
    max_bytes, max_contacts, n, seed, spread, data
):
    # Every cell is small: 9 <= s_i <= s_max = W // 50.
    prefix = PLAIN
    capacity = max_bytes - len(prefix) - 1  # W
    s_max = capacity // 50
    rng = random.Random(seed)
    low = s_max - round(spread * (s_max - 9))
    sizes = [rng.randint(low, s_max) for _ in range(n)]
    table = contacts_table([sized_cell(s) for s in sizes])
    cuts = data.draw(st.lists(st.integers(0, n), max_size=3))

    k = len(pack(Packer(prefix, max_bytes, max_contacts), table, cuts))

    n, total = len(sizes), sum(sizes)
    # Lower bound. Body bytes sum to k*(p+1) + total and each body is <= max_bytes, so
    # k*max_bytes >= k*(p+1) + total, i.e. k >= total / W; and k >= n / max_contacts.
    lower = max(math.ceil(n / max_contacts), math.ceil(total / capacity))
    assert k >= lower
    # Upper bound. Greedy closes a body (all but the last) only when it holds max_contacts
    # cells (a of them) or when the next cell does not fit, so that body already holds more
    # than W - s_max bytes (b of them). Hence a <= n // max_contacts and
    # b <= total // (W - s_max + 1), always:
    assert k <= 1 + n // max_contacts + total // (capacity - s_max + 1)
    # The sum does not collapse to "lower + 1" in general: a run of count-bound bodies followed
    # by a run of byte-bound ones needs both (see the example test below). It does when one
    # limit never binds:
    # * bytes never bind (max_contacts * s_max <= W): every body but the last is full by
    #   count, so k == ceil(n / max_contacts) exactly;
    # * count never binds (max_contacts >= n): k - 1 = b <= total / (W - s_max + 1), which is
    #   less than total / W + 1 whenever total * (s_max - 1) < W * (W - s_max + 1) -- with
    #   s_max <= W / 50 that is up to ~49 requests -- so k - 1 <= ceil(total / W).
    if n and max_contacts * s_max <= capacity:
        event("bytes never bind")
        assert k == math.ceil(n / max_contacts)
    if max_contacts >= n and total * (s_max - 1) < capacity * (capacity - s_max + 1):
        event("count never binds")
        assert k <= lower + 1


# -- examples ----------------------------------------------------------------------------------


def test_30001_small_contacts_make_exactly_two_requests_under_the_default_limits():
    cells = [cell(i, "Ann") for i in range(30_001)]

    bodies = pack(Packer(PLAIN), contacts_table(cells))

    assert (MAX_CONTACTS_PER_REQUEST, MAX_REQUEST_BYTES) == (30_000, 6_000_000)
    assert [b.contact_count for b in bodies] == [30_000, 1]
    assert bodies[1].contacts["row_number"].to_pylist() == [30_000]
    assert len(json.loads(bodies[0].data)["contacts"]) == 30_000


def test_a_6_mb_limit_with_300_byte_contacts_fills_each_body_to_the_last_contact_that_fits():
    # W = 6,000,000 - 13 - 1 = 5,999,986: 19,999 cells of 300 bytes fit (5,999,700), 20,000 not.
    table = contacts_table([sized_cell(300)] * 50_000)

    bodies = pack(Packer(PLAIN, max_bytes=6_000_000), table)

    assert [b.contact_count for b in bodies] == [19_999, 19_999, 10_002]
    assert [len(b.data) for b in bodies] == [5_999_714, 5_999_714, 13 + 10_002 * 300 + 1]
    assert all(len(b.data) <= 6_000_000 for b in bodies)
    check_bodies(bodies, table, PLAIN, (), 6_000_000, 30_000)


def test_count_bound_then_byte_bound_runs_can_exceed_the_max_lower_bound_by_more_than_one():
    # 1,000 cells of 9 bytes fill 10 bodies by count (100 each); 2,500 cells of 100 bytes
    # (= W / 50) fill 50 bodies by bytes (50 each). The greedy answer, 60, is optimal, while
    # max(ceil(n / C), ceil(total / W)) + 1 = max(35, 51) + 1 = 52.
    max_bytes = 5_000 + len(PLAIN) + 1
    sizes = [9] * 1_000 + [100] * 2_500
    table = contacts_table([sized_cell(s) for s in sizes])

    bodies = pack(Packer(PLAIN, max_bytes=max_bytes, max_contacts=100), table)

    assert len(bodies) == 60 == optimal_request_count(sizes, 5_000, 100)
    assert [b.contact_count for b in bodies] == [100] * 10 + [50] * 50


def test_a_contact_exactly_as_large_as_a_body_allows_is_sent_alone():
    max_bytes = 200
    fits = sized_cell(max_bytes - len(PLAIN) - 1)

    bodies = pack(Packer(PLAIN, max_bytes), contacts_table([fits, fits]))

    assert [len(b.data) for b in bodies] == [max_bytes, max_bytes]


def test_a_contact_larger_than_the_limit_is_refused_as_a_row_naming_its_size():
    cells = [sized_cell(50)] * 7 + [sized_cell(200 - len(PLAIN))] + [sized_cell(50)]

    fitting, too_big = Packer(PLAIN, 200).split_oversize(contacts_table(cells, first_row=100))

    assert too_big["row_number"].to_pylist() == [107]
    assert f"contact is {200 - len(PLAIN)} bytes of JSON" in too_big["reason"][0].as_py()
    assert fitting["row_number"].to_pylist() == [*range(100, 107), 108]


def test_setting_a_too_large_contact_apart_leaves_the_open_body_as_it_was():
    packer = Packer(PLAIN, 200)
    assert packer.add(contacts_table([sized_cell(20)])) == []

    fitting, too_big = packer.split_oversize(contacts_table([sized_cell(300)], first_row=1))
    assert packer.add(fitting) == [] and too_big.num_rows == 1

    tail = packer.flush()
    assert tail is not None
    assert tail.contacts["row_number"].to_pylist() == [0]


def test_a_limit_too_small_for_any_contact_is_refused_at_construction():
    prefix = envelope_prefix(["list-a"])
    with pytest.raises(ConfigurationError, match="too small to hold one contact"):
        Packer(prefix, max_bytes=len(prefix) + 3)
    with pytest.raises(ConfigurationError, match="too small to hold one contact"):
        Packer(prefix, max_bytes=10_000, max_contacts=0)

    smallest = Packer(prefix, max_bytes=len(prefix) + 4)
    body = pack(smallest, contacts_table(["{},"]))[0]
    assert body.data == prefix + b"{}]}"
    assert json.loads(body.data) == {"list_ids": ["list-a"], "contacts": [{}]}


def test_an_empty_input_makes_no_request():
    packer = Packer(PLAIN)

    assert packer.add(contacts_table([])) == []
    assert packer.add(pa.Table.from_batches([], contacts_table([]).schema)) == []
    assert packer.flush() is None


def test_flush_empties_the_packer():
    packer = Packer(PLAIN)
    packer.add(contacts_table(["{},"]))

    assert packer.flush() is not None
    assert packer.flush() is None


def test_large_string_cells_are_packed_like_regular_ones():
    cells = [cell(i, "日本" * i) for i in range(20)]

    regular = pack(Packer(PLAIN, 300, 4), contacts_table(cells))
    large = pack(Packer(PLAIN, 300, 4), contacts_table(cells, large=True))

    assert [b.data for b in large] == [b.data for b in regular]
    assert len(regular) > 1


# -- envelope_prefix and encode_body -----------------------------------------------------------


def test_the_envelope_carries_list_ids_only_when_there_are_some():
    assert envelope_prefix([]) == b'{"contacts":['
    assert envelope_prefix(["b", "a"]) == b'{"list_ids":["b","a"],"contacts":['
    odd = envelope_prefix(['q"\\', "日本"])
    assert json.loads(odd + b"{}]}") == {"list_ids": ['q"\\', "日本"], "contacts": [{}]}


def test_encode_body_rebuilds_the_body_of_any_slice_of_contacts():
    cells = [cell(i, t) for i, t in enumerate(["a", "é", "日本", "😀", 'q"'])]
    table = pa.concat_tables([contacts_table(cells[:2]), contacts_table(cells[2:], 2)])

    data = encode_body(PLAIN, table.slice(1, 3))

    assert data == PLAIN + "".join(cells[1:4]).encode()[:-1] + b"]}"
    assert [c["first_name"] for c in json.loads(data)["contacts"]] == ["é", "日本", "😀"]


def test_a_contact_over_the_learned_size_but_within_the_limit_goes_alone_in_its_own_body():
    packer = Packer(PLAIN, 200, limit_bytes=1_000)
    cells = [sized_cell(60), sized_cell(60), sized_cell(500), sized_cell(60), sized_cell(60)]

    fitting, too_big = packer.split_oversize(contacts_table(cells))
    bodies = pack(packer, fitting)

    assert too_big.num_rows == 0
    assert [b.contacts["row_number"].to_pylist() for b in bodies] == [[0, 1], [2], [3, 4]]
    assert [len(b.data) > 200 for b in bodies] == [False, True, False]
    _, refused = packer.split_oversize(contacts_table([sized_cell(1_000)]))
    assert refused.num_rows == 1 and "1,000 bytes with the envelope" in refused["reason"][0].as_py()


def test_a_learned_size_never_grows_past_the_limit():
    packer = Packer(PLAIN, 200, limit_bytes=1_000)

    packer.set_max_bytes(5_000)

    assert packer.max_bytes == 1_000
