"""parse_mapping / bind_mapping / arrow_kind / infer_custom_type: what a mapping may say.

Every refusal is a ConfigurationError raised before any data is read or any request is sent,
and its message must name the offending field or column so the user knows what to fix.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from sendgrid_destination.contact_model import IDENTIFIERS, MAX_CUSTOM_TEXT_LENGTH, READ_ONLY_FIELDS
from sendgrid_destination.errors import ConfigurationError, SendGridTerminalError
from sendgrid_destination.mapping import (
    Binding,
    arrow_kind,
    bind_mapping,
    infer_custom_type,
    parse_mapping,
)

STRUCT = pa.struct([("street", pa.string()), ("number", pa.int32())])


def refusal(raw: object) -> str:
    with pytest.raises(ConfigurationError) as caught:
        parse_mapping(raw)  # type: ignore[arg-type]
    return caught.value.message


def bind_refusal(raw: dict[str, object], schema: pa.Schema, types: dict | None = None) -> str:
    with pytest.raises(ConfigurationError) as caught:
        bind_mapping(parse_mapping(raw), schema, types or {}, {})
    return caught.value.message


# -- parse_mapping: shape and field names ------------------------------------------------------


def test_a_mapping_with_reserved_and_custom_fields_is_split_into_the_two_tables():
    mapping = parse_mapping(
        {"email": "mail", "first_name": "given", "custom_fields": {"plan_tier": "plan"}}
    )

    assert mapping.reserved == {"email": "mail", "first_name": "given"}
    assert mapping.custom == {"plan_tier": "plan"}
    assert mapping.columns == ["mail", "given", "plan"]


def test_mapped_identifiers_are_listed_in_sendgrid_priority_order_whatever_the_mapping_order():
    mapping = parse_mapping({"anonymous_id": "a", "external_id": "x", "email": "e"})

    assert mapping.identifiers == ["email", "external_id", "anonymous_id"]


@pytest.mark.parametrize("identifier", IDENTIFIERS)
def test_any_single_identifier_is_enough_for_a_mapping(identifier):
    assert parse_mapping({identifier: "col"}).identifiers == [identifier]


@pytest.mark.parametrize("raw", [None, {}])
def test_an_empty_mapping_is_refused_with_a_hint_about_where_to_configure_it(raw):
    message = refusal(raw)

    assert "No mapping configured" in message
    assert "[destination.sendgrid.mapping]" in message


def test_an_unknown_field_is_refused_and_named():
    message = refusal({"email": "e", "favourite_colour": "colour"})

    assert "Unknown SendGrid field 'favourite_colour'" in message
    assert "custom fields go under" in message


@pytest.mark.parametrize("field", [*READ_ONLY_FIELDS, "id"])
def test_a_read_only_field_is_refused_and_named(field):
    message = refusal({"email": "e", field: "col"})

    assert f"Field {field!r} is read-only" in message


def test_a_mapping_without_any_identifier_is_refused_and_lists_the_identifiers():
    message = refusal({"first_name": "given", "custom_fields": {"plan": "plan"}})

    assert "no identifier" in message
    for identifier in IDENTIFIERS:
        assert identifier in message


@pytest.mark.parametrize(
    "name", ["1plan", "plan-tier", "plan tier", "plän", "", "x" * 101, "plan.tier"]
)
def test_a_custom_field_name_sendgrid_would_refuse_is_named_in_the_error(name):
    message = refusal({"email": "e", "custom_fields": {name: "col"}})

    assert f"Custom field name {name!r} is not valid" in message


@pytest.mark.parametrize("name", ["_plan", "Plan_2", "x" * 100, "A"])
def test_custom_field_names_of_letters_digits_and_underscores_are_accepted(name):
    assert parse_mapping({"email": "e", "custom_fields": {name: "col"}}).custom == {name: "col"}


def test_a_non_string_custom_field_name_is_refused():
    message = refusal({"email": "e", "custom_fields": {7: "col"}})

    assert "Custom field name 7 is not valid" in message


@pytest.mark.parametrize("name", ["first_name", "EMAIL", "Created_At", "phone_number_id"])
def test_a_custom_field_named_like_a_reserved_field_is_refused_case_insensitively(name):
    message = refusal({"email": "e", "custom_fields": {name: "col"}})

    assert f"Custom field {name!r} has the name of a reserved field" in message
    # A read-only one can be mapped nowhere: the message does not send the user there.
    read_only = name.lower() == "created_at"
    assert ("map it at the top level" in message) is not read_only
    assert ("no mapping can: use another name" in message) is read_only


def test_two_custom_fields_differing_only_in_case_are_refused_as_a_duplicate():
    message = refusal({"email": "e", "custom_fields": {"Plan": "a", "PLAN": "b"}})

    assert "Custom field 'PLAN' is mapped twice" in message


def test_custom_fields_that_are_not_a_table_are_refused():
    message = refusal({"email": "e", "custom_fields": ["plan"]})

    assert "mapping.custom_fields must be a table" in message


@pytest.mark.parametrize("column", [3, None, "", ["a"]])
def test_a_reserved_field_mapped_to_something_other_than_a_column_name_is_named(column):
    message = refusal({"email": "e", "first_name": column})

    assert "mapping.first_name must name a source column" in message
    assert repr(column) in message


def test_a_custom_field_mapped_to_a_non_string_column_is_named_with_its_path():
    message = refusal({"email": "e", "custom_fields": {"plan": 12}})

    assert "mapping.custom_fields.plan must name a source column" in message


def test_configuration_errors_are_terminal_so_dlt_does_not_retry_them():
    with pytest.raises(SendGridTerminalError):
        parse_mapping({"first_name": "x"})


# -- bind_mapping: columns and types -----------------------------------------------------------


def test_unknown_columns_are_all_listed_along_with_the_available_ones():
    schema = pa.schema([("mail", pa.string()), ("given", pa.string())])

    message = bind_refusal(
        {"email": "mail", "first_name": "nope_b", "custom_fields": {"plan": "nope_a"}},
        schema,
        {"plan": "Text"},
    )

    assert "Mapped column(s) not found in the source table: nope_a, nope_b." in message
    assert "Available columns: mail, given." in message


def test_a_table_holding_none_of_the_mapped_columns_is_pointed_to_per_table_mappings():
    schema = pa.schema([("id", pa.int64()), ("amount", pa.float64())])

    message = bind_refusal({"email": "email", "first_name": "given"}, schema)

    assert "None of the mapped columns is in this table" in message
    assert "[destination.sendgrid.tables.<table>]" in message
    assert "all-null" not in message  # not a column dlt dropped: another table


def test_a_misspelled_column_gets_a_suggestion_and_the_all_null_hint():
    schema = pa.schema([("email", pa.string()), ("given_name", pa.string())])

    message = bind_refusal({"email": "email", "first_name": "givn_name"}, schema)

    assert "Did you mean 'givn_name' -> 'given_name'?" in message
    assert "all-null Arrow column" in message
    assert "columns={'givn_name': {'data_type': 'text'}}" in message  # the column in question


@pytest.mark.parametrize(
    ("raw", "types", "column", "arrow_type", "target"),
    [
        ({"custom_fields": {"vip": "c"}}, {"vip": "Number"}, "c", pa.bool_(), "'vip' (Number)"),
        ({"custom_fields": {"seen": "c"}}, {"seen": "Date"}, "c", pa.int64(), "'seen' (Date)"),
        ({"custom_fields": {"seen": "c"}}, {"seen": "Date"}, "c", pa.float64(), "'seen' (Date)"),
        ({"custom_fields": {"n": "c"}}, {"n": "Number"}, "c", pa.date32(), "'n' (Number)"),
        ({"custom_fields": {"n": "c"}}, {"n": "Number"}, "c", pa.timestamp("us"), "'n' (Number)"),
        ({"custom_fields": {"t": "c"}}, {"t": "Text"}, "c", STRUCT, "custom field 't'"),
        ({"first_name": "c"}, {}, "c", STRUCT, "'first_name'"),
        ({"first_name": "c"}, {}, "c", pa.list_(pa.string()), "'first_name'"),
        ({"city": "c"}, {}, "c", pa.binary(), "'city'"),
        ({"alternate_emails": "c"}, {}, "c", pa.list_(pa.int64()), "'alternate_emails'"),
        ({"alternate_emails": "c"}, {}, "c", pa.int64(), "'alternate_emails'"),
        ({"external_id": "c"}, {}, "c", pa.float64(), "'external_id'"),
        ({"phone_number_id": "c"}, {}, "c", pa.bool_(), "'phone_number_id'"),
    ],
)
def test_a_column_whose_type_cannot_feed_the_field_is_refused_naming_both(
    raw, types, column, arrow_type, target
):
    schema = pa.schema([("e", pa.string()), (column, arrow_type)])

    message = bind_refusal({"email": "e", **raw}, schema, types)

    assert f"Column {column!r} ({arrow_type}) cannot feed" in message
    assert target in message


def test_every_refused_column_is_reported_at_once_with_its_arrow_type():
    schema = pa.schema(
        [
            ("e", pa.string()),
            ("photo", pa.binary()),
            ("wait", pa.duration("us")),
            ("tags", pa.list_(pa.int64())),
            ("at", pa.time64("us")),
        ]
    )
    raw = {
        "email": "e",
        "city": "photo",
        "first_name": "wait",
        "last_name": "at",
        "custom_fields": {"tags": "tags"},
    }

    message = bind_refusal(raw, schema, {"tags": "Text"})

    assert "Column 'photo' (binary) cannot feed field 'city'" in message
    assert "Column 'wait' (duration[us]) cannot feed field 'first_name'" in message
    assert "Column 'tags' (list<item: int64>) cannot feed custom field 'tags'" in message
    assert "'at'" not in message  # a time of day is text: HH:MM:SS
    assert "(other)" not in message


def test_custom_pairings_are_reported_together_once_the_field_types_are_known():
    schema = pa.schema([("e", pa.string()), ("flag", pa.bool_()), ("n", pa.int64())])
    raw = {"email": "e", "custom_fields": {"score": "flag", "seen": "n"}}

    message = bind_refusal(raw, schema, {"score": "Number", "seen": "Date"})

    assert "Column 'flag' (bool) cannot feed custom field 'score' (Number)" in message
    assert "Column 'n' (int64) cannot feed custom field 'seen' (Date)" in message


@pytest.mark.parametrize("arrow_type", [pa.int64(), pa.float64(), pa.bool_(), pa.date32()])
def test_an_email_column_must_be_text(arrow_type):
    schema = pa.schema([("mail", arrow_type)])

    message = bind_refusal({"email": "mail"}, schema)

    assert f"Column 'mail' ({arrow_type}) cannot feed field 'email'" in message
    assert "it takes string columns" in message


@pytest.mark.parametrize(
    ("field_type", "arrow_type"),
    [
        ("Text", pa.string()),
        ("Text", pa.int32()),
        ("Text", pa.float64()),
        ("Text", pa.decimal128(10, 2)),
        ("Text", pa.bool_()),
        ("Text", pa.date32()),
        ("Text", pa.timestamp("ms", tz="UTC")),
        ("Number", pa.int8()),
        ("Number", pa.uint64()),
        ("Number", pa.float32()),
        ("Number", pa.decimal128(38, 4)),
        ("Number", pa.string()),
        ("Date", pa.date32()),
        ("Date", pa.timestamp("ns")),
        ("Date", pa.large_string()),
    ],
)
def test_a_custom_field_accepts_every_column_type_it_can_represent(field_type, arrow_type):
    schema = pa.schema([("e", pa.string()), ("c", arrow_type)])

    bindings = bind_mapping(
        parse_mapping({"email": "e", "custom_fields": {"f": "c"}}), schema, {"f": field_type}
    )

    assert bindings[-1].field_type == field_type
    assert bindings[-1].arrow_kind == arrow_kind(arrow_type)


@pytest.mark.parametrize(
    ("field", "arrow_type"),
    [
        ("external_id", pa.int64()),
        ("external_id", pa.decimal128(20, 0)),
        ("phone_number_id", pa.string()),
        ("anonymous_id", pa.large_string()),
        ("alternate_emails", pa.list_(pa.string())),
        ("alternate_emails", pa.string()),
        ("first_name", pa.bool_()),
        ("postal_code", pa.int32()),
    ],
)
def test_reserved_fields_accept_their_documented_column_types(field, arrow_type):
    schema = pa.schema([("e", pa.string()), ("c", arrow_type)])

    bindings = bind_mapping(parse_mapping({"email": "e", field: "c"}), schema, {})

    assert [b.field for b in bindings] == ["email", field]


def test_bindings_carry_kind_limits_and_the_custom_field_id_used_as_json_key():
    schema = pa.schema(
        [
            ("mail", pa.string()),
            ("ext", pa.int64()),
            ("given", pa.string()),
            ("alts", pa.list_(pa.string())),
            ("plan", pa.string()),
            ("spend", pa.float64()),
        ]
    )
    mapping = parse_mapping(
        {
            "email": "mail",
            "external_id": "ext",
            "first_name": "given",
            "alternate_emails": "alts",
            "custom_fields": {"plan_tier": "plan", "spend": "spend"},
        }
    )

    bindings = bind_mapping(
        mapping, schema, {"plan_tier": "Text", "spend": "Number"}, {"plan_tier": "e1_T"}
    )

    assert bindings == [
        Binding("email", "mail", "identifier", "string", "Text", 254),
        Binding("external_id", "ext", "identifier", "integer", "Text", 254),
        Binding("first_name", "given", "reserved", "string", "Text", 50),
        Binding("alternate_emails", "alts", "alternate_emails", "string_list", "Text", 254),
        Binding("plan_tier", "plan", "custom", "string", "Text", MAX_CUSTOM_TEXT_LENGTH, "e1_T"),
        Binding("spend", "spend", "custom", "floating", "Number", None, None),
    ]
    assert [b.json_key for b in bindings] == [
        "email",
        "external_id",
        "first_name",
        "alternate_emails",
        "e1_T",
        "spend",
    ]


def test_the_same_column_may_feed_two_fields():
    schema = pa.schema([("mail", pa.string())])

    bindings = bind_mapping(
        parse_mapping({"email": "mail", "custom_fields": {"contact_mail": "mail"}}),
        schema,
        {"contact_mail": "Text"},
    )

    assert [(b.field, b.column) for b in bindings] == [("email", "mail"), ("contact_mail", "mail")]


# -- arrow_kind and infer_custom_type ----------------------------------------------------------


@pytest.mark.parametrize(
    ("arrow_type", "kind"),
    [
        (pa.string(), "string"),
        (pa.large_string(), "string"),
        (pa.string_view(), "string"),
        (pa.int8(), "integer"),
        (pa.uint64(), "integer"),
        (pa.float16(), "floating"),
        (pa.float64(), "floating"),
        (pa.decimal128(5, 2), "decimal"),
        (pa.bool_(), "boolean"),
        (pa.date32(), "date"),
        (pa.date64(), "date"),
        (pa.timestamp("s"), "timestamp"),
        (pa.timestamp("ns", tz="America/New_York"), "timestamp"),
        (pa.list_(pa.string()), "string_list"),
        (pa.large_list(pa.large_string()), "string_list"),
        (pa.list_(pa.int64()), "other"),
        (STRUCT, "other"),
        (pa.binary(), "other"),
        (pa.time64("us"), "time"),
        (pa.time32("s"), "time"),
        (pa.duration("us"), "other"),
    ],
)
def test_arrow_types_are_classified_into_coercion_families(arrow_type, kind):
    assert arrow_kind(arrow_type) == kind


@pytest.mark.parametrize(
    ("arrow_type", "field_type"),
    [
        (pa.string(), "Text"),
        (pa.large_string(), "Text"),
        (pa.bool_(), "Text"),
        (pa.int32(), "Number"),
        (pa.uint8(), "Number"),
        (pa.float32(), "Number"),
        (pa.decimal128(12, 3), "Number"),
        (pa.date32(), "Date"),
        (pa.timestamp("us"), "Date"),
        (pa.timestamp("ms", tz="UTC"), "Date"),
    ],
)
def test_a_new_custom_field_gets_the_type_its_column_suggests(arrow_type, field_type):
    assert infer_custom_type(arrow_type) == field_type
