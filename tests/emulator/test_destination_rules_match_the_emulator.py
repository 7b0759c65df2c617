"""The destination's contact rules against the emulator's: a wrong rule in the destination
fails here.

The emulator states SendGrid's rules in ``sendgrid_destination.emulator.rules``, written
from the official specs and importing nothing from the destination. The destination states
its own in its contact-model module. These tests compare the two: limits, identifiers,
writable and read-only fields, reserved field IDs, and which sample values each accepts as
an email, an E.164 number or a custom field name (the destination's patterns checked both
through Python's ``re`` and through DuckDB, where the destination applies them).

Where the emulator is knowingly stricter than the destination, the case is listed in
``KNOWN_DISAGREEMENTS`` with the reason, and a test asserts it is still a disagreement, so
the entry has to go when the destination changes.
"""

from __future__ import annotations

import functools
import string
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

# The destination's rules module: the one place this test names it.
from sendgrid_destination import contact_model as destination
from sendgrid_destination.emulator import rules as emulator

# -- limits, identifiers and fields ---------------------------------------------------------


def test_request_limits_are_the_same() -> None:
    assert destination.MAX_CONTACTS_PER_REQUEST == emulator.MAX_CONTACTS_PER_REQUEST
    assert destination.MAX_REQUEST_BYTES == emulator.MAX_REQUEST_BYTES
    assert destination.MAX_SEARCH_VALUES == emulator.MAX_SEARCH_VALUES


def test_identifiers_are_the_same_in_the_same_order() -> None:
    assert tuple(destination.IDENTIFIERS) == emulator.IDENTIFIERS


def test_writable_and_read_only_fields_are_the_same() -> None:
    assert set(destination.WRITABLE_FIELDS) == emulator.WRITABLE_FIELDS
    assert set(destination.READ_ONLY_FIELDS) == emulator.READ_ONLY_FIELDS
    assert set(destination.FORBIDDEN_UPSERT_KEYS) == set(emulator.ID_KEYS)


def test_every_max_length_is_the_same() -> None:
    ours = {
        name: f.max_length
        for name, f in destination.RESERVED_BY_NAME.items()
        if f.max_length is not None
    }

    assert ours == emulator.MAX_LENGTHS
    assert destination.MAX_ALTERNATE_EMAILS == emulator.MAX_ALTERNATE_EMAILS
    assert destination.MAX_CUSTOM_TEXT_LENGTH == emulator.MAX_CUSTOM_TEXT_LENGTH


def test_reserved_field_ids_types_and_read_only_flags_are_the_same() -> None:
    ours = [(f.id, f.name, f.field_type, f.read_only) for f in destination.RESERVED_FIELDS]

    assert ours == [(f.id, f.name, f.field_type, f.read_only) for f in emulator.RESERVED_FIELDS]


def test_custom_field_and_list_limits_are_the_same() -> None:
    assert destination.MAX_CUSTOM_FIELDS == emulator.MAX_CUSTOM_FIELDS
    assert destination.MAX_CUSTOM_FIELD_NAME_LENGTH == emulator.MAX_FIELD_NAME_LENGTH
    assert destination.MAX_LISTS == emulator.MAX_LISTS
    assert destination.MAX_LIST_NAME_LENGTH == emulator.MAX_LIST_NAME_LENGTH
    assert dict(destination.FIELD_TYPE_SUFFIX) == emulator.TYPE_SUFFIX


@pytest.mark.parametrize("field_id", ["e1_T", "e2_N", "e53_D", "w1", "a_b_D", "_rf0_T", "x_Q", ""])
def test_the_type_read_from_a_custom_field_id_is_the_same(field_id: str) -> None:
    assert destination.custom_field_type_from_id(field_id) == emulator.type_of_field_id(field_id)


# -- value syntax on sample values -----------------------------------------------------------

EMAILS = [
    "a@example.com",
    "Jane.Doe+tag@Example.co.uk",
    "o'brien@example.com",
    "user_name-1@sub-domain.example.io",
    "a@example.technology",
    "a@b.c",
    "a@example",
    "a@@example.com",
    "a b@example.com",
    " a@example.com",
    "a@example.com ",
    "a@example.com\n",
    "\u212aate@example.com",  # Kelvin sign: lower-cases to a plain "k"
    "\u0130nfo@example.com",  # dotted capital I: lower-cases to "i" + a combining dot
    "jos\u00e9@example.com",
    "a@ex\u00e4mple.com",
    "a@-example.com",
    "a@example-.com",
    "a@example.c0m",
    "",
    "@example.com",
    "a@.example.com",
    "a@example..com",
    "a@example.com.",
    ".a@example.com",
    "a.@example.com",
    "a..b@example.com",
    "x" * 64 + "@example.com",
    "x" * 65 + "@example.com",
    "a@" + "x" * 63 + ".com",
    "a@" + "x" * 64 + ".com",
]
PHONES = [
    "+14155550100",
    "+442071838750",
    "+12",
    "+1",
    "+" + "1" * 15,
    "+" + "1" * 16,
    "14155550100",
    "+04155550100",
    "+1 415 555 0100",
    "+1-415-555-0100",
    "+",
    "",
    "+\u0661\u0662\u0663",  # Arabic-Indic digits
    "+14155550100\n",
]
FIELD_NAMES = ["plan", "_x", "Plan_Tier2", "2plan", "plan-tier", "pl\u00e4n", ""]
FIELD_NAMES += ["a" * 100, "a" * 101]

# Samples the emulator refuses and the destination accepts, and why the emulator's reading
# is the one to keep until a live test says otherwise. Keys are (rule, sample).
KNOWN_DISAGREEMENTS: dict[tuple[str, str], str] = {
    ("email", ".a@example.com"): "RFC 5321 dot-atom: a local part cannot start with a dot",
    ("email", "a.@example.com"): "RFC 5321 dot-atom: a local part cannot end with a dot",
    ("email", "a..b@example.com"): "RFC 5321 dot-atom: no two dots in a row",
    ("email", "x" * 65 + "@example.com"): "RFC 5321 4.5.3.1.1: a local part is at most 64 octets",
    ("email", "a@" + "x" * 64 + ".com"): "RFC 1035: a domain label is at most 63 octets",
}


@functools.cache
def _duckdb() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


def _duckdb_matches(pattern: str, values: list[str]) -> list[bool]:
    rows = (
        _duckdb()
        .execute(
            "SELECT regexp_full_match(v, ?) FROM unnest(?::VARCHAR[]) WITH ORDINALITY t(v, i) "
            "ORDER BY i",
            [pattern, values],
        )
        .fetchall()
    )
    return [bool(row[0]) for row in rows]


def _destination_accepts(rule: str, values: list[str]) -> list[bool]:
    """What the destination accepts, checked as it checks (Python and DuckDB must agree)."""
    if rule == "field_name":
        return [destination.CUSTOM_FIELD_NAME_RE.fullmatch(v) is not None for v in values]
    regex, pattern = {
        "email": (destination.EMAIL_RE, destination.EMAIL_PATTERN),
        "e164": (destination.E164_RE, destination.E164_PATTERN),
    }[rule]
    in_python = [regex.fullmatch(v) is not None for v in values]
    assert in_python == _duckdb_matches(pattern, values), f"{rule}: Python and DuckDB disagree"
    return in_python


def _emulator_accepts(rule: str, value: str) -> bool:
    if rule == "email":
        return emulator.is_email(value)
    if rule == "e164":
        return emulator.is_e164(value)
    return emulator.is_field_name(value) and len(value) <= emulator.MAX_FIELD_NAME_LENGTH


def _disagreements(rule: str, values: list[str]) -> dict[str, tuple[bool, bool]]:
    ours = _destination_accepts(rule, values)
    return {
        value: (mine, _emulator_accepts(rule, value))
        for value, mine in zip(values, ours, strict=True)
        if mine != _emulator_accepts(rule, value)
    }


@pytest.mark.parametrize(
    ("rule", "samples"),
    [("email", EMAILS), ("e164", PHONES), ("field_name", FIELD_NAMES)],
)
def test_the_destination_accepts_exactly_what_the_emulator_accepts(
    rule: str, samples: list[str]
) -> None:
    found = _disagreements(rule, samples)
    unexplained = {v: d for v, d in found.items() if (rule, v) not in KNOWN_DISAGREEMENTS}

    # Each entry: sample -> (destination accepts, emulator accepts).
    assert unexplained == {}


def test_each_known_disagreement_is_still_one() -> None:
    # When the destination adopts the emulator's reading, its entry must go.
    for (rule, sample), reason in KNOWN_DISAGREEMENTS.items():
        assert _disagreements(rule, [sample]) == {sample: (True, False)}, reason


def test_look_alike_addresses_are_refused_by_both_rather_than_folded() -> None:
    look_alikes = ["\u212aate@example.com", "\u0130nfo@example.com"]

    assert _destination_accepts("email", look_alikes) == [False, False]
    assert [emulator.is_email(v) for v in look_alikes] == [False, False]


def _in_a_known_disagreement_class(value: str) -> bool:
    local, _, domain = value.rpartition("@")
    dotted = local.startswith(".") or local.endswith(".") or ".." in local
    too_long = len(local) > 64 or any(len(label) > 63 for label in domain.split("."))
    return dotted or too_long


# No deadline: the first example pays for DuckDB's start-up on a shared, busy machine.
@settings(deadline=None)
@given(st.text(alphabet="ab.@-+_ K\u212a9'", max_size=14))
def test_on_arbitrary_short_strings_the_email_rules_agree_outside_the_known_classes(
    value: str,
) -> None:
    found = _disagreements("email", [value])

    if found:
        assert _in_a_known_disagreement_class(value), found


@settings(deadline=None)
@given(st.text(alphabet="+0123456789 -\u0661", max_size=18))
def test_on_arbitrary_strings_the_e164_rules_agree(value: str) -> None:
    assert _disagreements("e164", [value]) == {}


@given(st.text(alphabet=string.ascii_letters[:3] + "_09-\u00e4", max_size=102))
def test_on_arbitrary_strings_the_field_name_rules_agree(value: Any) -> None:
    assert _disagreements("field_name", [value]) == {}
