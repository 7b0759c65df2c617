"""A row's lists and its hard-delete flag, through the real plan and render.

* the list scope is the sorted, distinct list IDs of the static lists and of the names the
  row's list column holds (a list of text, or comma-separated text), whatever their order;
* the content hash covers that scope, and so does the fingerprint: a contact whose lists
  change is sent again, one whose lists are the same in another order is not;
* a contact whose last row is flagged is neither rendered nor refused, and counted as flagged.
"""

from __future__ import annotations

import pyarrow as pa

from sendgrid_destination.dispositions import TableIntent
from sendgrid_destination.membership import ListColumn
from tests.planning import contact_sql, content_digest, plan_rows

IDS = {"VIP": "id-vip", "News": "id-news", "Old": "id-old"}
MAPPING = {"email": "email"}


def planned(data: pa.Table, column_kind: str = "string_list", **options):
    sql = contact_sql(
        MAPPING, data.schema, list_column=ListColumn("segments", column_kind, IDS), **options
    )
    return plan_rows(sql, data)


def test_a_rows_list_scope_is_its_sorted_distinct_list_ids_with_the_static_ones() -> None:
    data = pa.table(
        {
            "email": ["a@x.co", "b@x.co", "c@x.co", "d@x.co"],
            "segments": [["VIP", "News"], ["News", " VIP ", "News"], [], None],
        }
    )

    result = planned(data, list_ids=["id-static"])

    assert result.contacts["list_scope"].to_pylist() == [
        "id-news,id-static,id-vip",
        "id-news,id-static,id-vip",
        "id-static",
        "id-static",
    ]


def test_comma_separated_names_give_the_same_scope_as_a_list_of_names() -> None:
    data = pa.table({"email": ["a@x.co", "b@x.co"], "segments": ["News, VIP", ",VIP,,News,"]})

    result = planned(data, "string")

    assert result.contacts["list_scope"].to_pylist() == ["id-news,id-vip"] * 2


def test_a_list_view_column_of_names_gives_the_same_scope_as_a_list_column() -> None:
    # Views out of order: pyarrow's own cast to list would have emptied them.
    names = pa.array(["News", "VIP", "Old"])
    views = pa.ListViewArray.from_arrays(
        pa.array([1, 0], pa.int32()), pa.array([2, 1], pa.int32()), names
    )
    data = pa.table({"email": ["a@x.co", "b@x.co"], "segments": views})

    result = planned(data)

    assert result.contacts["list_scope"].to_pylist() == ["id-old,id-vip", "id-news"]


def test_the_content_hash_covers_the_rows_own_list_scope() -> None:
    data = pa.table({"email": ["a@x.co"], "segments": [["VIP", "News"]]})

    result = planned(data)

    (json_text,) = result.contacts["contact_json"].to_pylist()
    expected = content_digest(f"id-news,id-vip\n{json_text}")
    assert result.contacts["content_hash"].to_pylist() == [expected]


def test_the_fingerprint_changes_with_the_lists_and_not_with_their_order() -> None:
    schema = pa.schema([("email", pa.string()), ("segments", pa.list_(pa.string()))])
    sql = contact_sql(MAPPING, schema, list_column=ListColumn("segments", "string_list", IDS))

    def fingerprint(segments: list[str]) -> int:
        result = plan_rows(sql, pa.table({"email": ["a@x.co"], "segments": [segments]}))
        (value,) = result.contacts["fingerprint"].to_pylist()
        return int(value)

    assert fingerprint(["VIP", "News"]) == fingerprint(["News", "VIP", "VIP"])
    assert fingerprint(["VIP", "News"]) != fingerprint(["News"])


def test_a_contact_whose_last_row_is_flagged_is_neither_sent_nor_refused() -> None:
    data = pa.table(
        {
            "email": ["a@x.co", "a@x.co", "b@x.co", "bad address", "c@x.co"],
            "deleted": [False, True, True, True, False],
        }
    )
    intent = TableIntent(delete_column="deleted")
    sql = contact_sql(MAPPING, data.schema, deleted_sql=intent.deleted_sql())

    result = plan_rows(sql, data)

    assert result.contacts["contact_key"].to_pylist() == ["email:c@x.co"]
    assert result.rejects.num_rows == 0  # the flagged bad address is not refused
    counts = result.counts
    assert (counts.flagged, counts.superseded, counts.unchanged) == (3, 1, 0)


def test_any_value_flags_a_row_when_the_hard_delete_column_is_not_boolean() -> None:
    data = pa.table({"email": ["a@x.co", "b@x.co"], "deleted_at": ["2026-01-01", None]})
    intent = TableIntent(delete_column="deleted_at", delete_is_boolean=False)
    sql = contact_sql(MAPPING, data.schema, deleted_sql=intent.deleted_sql())

    result = plan_rows(sql, data)

    assert result.contacts["contact_key"].to_pylist() == ["email:b@x.co"]
    assert result.counts.flagged == 1
