"""The one classifier of SendGrid's messages: what each means, and reasons without values."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sendgrid_destination.api import messages
from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.api.messages import MessageKind, classify
from sendgrid_destination.errors import ContactsRejectedError, RequestRejectedError

K = MessageKind


@pytest.mark.parametrize(
    ("message", "kind", "names"),
    [
        ("Too many bad requests. Temporary block", K.TEMPORARY_BLOCK, ()),
        (
            "invalid custom field ids supplied - e1_T,e9_N",
            K.INVALID_CUSTOM_FIELD_IDS,
            ("e1_T", "e9_N"),
        ),
        ("Invalid Custom Field IDs supplied - w1", K.INVALID_CUSTOM_FIELD_IDS, ("w1",)),
        ("request entity too large", K.BODY_TOO_LARGE, ()),
        ("Message size exceeds the 4MB limit", K.BODY_TOO_LARGE, ()),
        ("message size exceeded", K.BODY_TOO_LARGE, ()),
        ("Payload size exceeded", K.BODY_TOO_LARGE, ()),
        ("body size limit reached", K.BODY_TOO_LARGE, ()),
        ("grpc: received message larger than max (4194305 vs. 4194304)", K.BODY_TOO_LARGE, ()),
        (
            "contact is missing existing identifier(s): external_id, phone_number_id",
            K.MISSING_IDENTIFIERS,
            ("external_id", "phone_number_id"),
        ),
        (
            "contact is missing existing identifiers: email. Include it.",
            K.MISSING_IDENTIFIERS,
            ("email",),
        ),
        ("invalid JSON", K.REQUEST_LEVEL, ()),
        ("  Invalid input ", K.REQUEST_LEVEL, ()),
        ("invalid list ids supplied - 0b1e", K.REQUEST_LEVEL, ()),
        ("list_ids must be unique", K.REQUEST_LEVEL, ()),
        ("email 'x@y' is not valid", K.VALUE_REFUSED, ()),
        # Values SendGrid echoes never trigger a meaning: a contact's own data is not a verdict.
        ("email 'list_ids@x.com' is not valid", K.VALUE_REFUSED, ()),
        ("email 'alistair@example.com' is not valid", K.VALUE_REFUSED, ()),
        ("first_name 'temporary block' is too long", K.OTHER, ()),
        ("last_name 'request body too large' is too long", K.OTHER, ()),
        ("first_name exceeds max length of 50", K.VALUE_REFUSED, ()),
        ("unknown field 'invalid custom field ids supplied - x'", K.OTHER, ()),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)
def test_each_known_message_is_classified_and_echoed_values_never_count(
    message: str, kind: MessageKind, names: tuple[str, ...]
) -> None:
    found = classify(message)
    assert (found.kind, found.names) == (kind, names)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("Too many bad requests. Temporary block", "too many bad requests (temporary block)"),
        (
            "invalid custom field ids supplied - e1_T,e9_N",
            "invalid custom field ids supplied - e1_T,e9_N",
        ),
        (
            "invalid custom field ids supplied - e1_T,Jane Doe <jane@x.com>",
            "invalid custom field ids supplied - e1_T,<redacted>",
        ),
        ("payload too large", "request body too large"),
        (
            "contact is missing existing identifier(s): external_id",
            "contact is missing existing identifier(s): external_id",
        ),
        ("email 'x@y' is not valid", "email '<redacted>' is not valid"),
        (
            "phone_number_id '+14155550100' is not valid",
            "phone_number_id '<redacted>' is not valid",
        ),
        ("phone_number +1 415 555 0100 is not valid", "phone_number <redacted> is not valid"),
        ("invalid value for first_name: Jane", "invalid value for first_name: <redacted>"),
        ("contact Jane Doe already exists", "contact <redacted> <redacted> already exists"),
        ("postal_code 94107 is not valid", "postal_code <redacted> is not valid"),
        ("Name already exists", "Name already exists"),
        ("invalid JSON", "invalid JSON"),
        (
            "contacts[3].first_name must be at most 50 characters.",
            "contacts[3].first_name must be at most 50 characters.",
        ),
        (
            "The provided authorization grant is invalid. Check it.",
            "The provided authorization grant is invalid. Check it.",
        ),
        ('custom field "e1_T" cannot be null', 'custom field "<redacted>" cannot be null'),
        (  # the formats are SendGrid's fixed text: kept, they say what date_format to set
            "value 2024-13-45 not in any of the following date formats: RFC3339, MM/DD/YYYY, "
            "or M/D/YYYY",
            "value <redacted> not in any of the following date formats: RFC3339, MM/DD/YYYY, "
            "or M/D/YYYY",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)
def test_a_reason_keeps_the_wording_and_drops_every_echoed_value(
    message: str, expected: str
) -> None:
    assert messages.reason(message) == expected


_names = st.from_regex(r"[A-Z][a-z]{2,9}( [A-Z][a-z]{2,9})?", fullmatch=True)
_phones = st.from_regex(r"\+?1?[ .-]?\(?[2-9]\d{2}\)?[ .-]?\d{3}[ .-]?\d{4}", fullmatch=True)
_emails = st.from_regex(r"[a-z][a-z0-9.+_-]{0,12}@[a-z]{2,8}\.(com|io|co\.uk)", fullmatch=True)
_templates = st.sampled_from(
    [
        "first_name '{v}' is too long",
        'last_name "{v}" is not valid',
        "invalid value for first_name: {v}",
        "contact {v} already exists",
        "email {v} is not valid",
        "phone_number {v} is not a valid E.164 number",
        "the contact with value {v} could not be updated. Try again",
        "{{'field': 'first_name', 'value': '{v}'}}",
        "value {v} not in any of the following date formats: RFC3339, MM/DD/YYYY",
    ]
)


@settings(max_examples=300, deadline=None)
@given(template=_templates, value=st.one_of(_names, _phones, _emails))
def test_no_reason_carries_a_name_a_phone_number_or_an_email_sendgrid_echoed(
    template: str, value: str
) -> None:
    shown = messages.reason(template.format(v=value))
    assert value not in shown
    for part in value.split():
        if len(part) > 3:
            assert part not in shown


def test_refused_custom_field_ids_need_every_message_to_be_of_that_kind() -> None:
    ids = messages.refused_custom_field_ids
    assert ids(
        ["invalid custom field ids supplied - e1_T", "invalid custom field ids supplied - w2"]
    ) == {"e1_T", "w2"}
    assert ids(["invalid custom field ids supplied - e1_T", "email 'x@y' is not valid"]) == set()
    assert ids([]) == set()


# --- through the client ---------------------------------------------------------------


def test_a_refusal_echoing_an_email_a_phone_and_a_name_names_none_of_them(
    emu: Any, client: SendGridClient
) -> None:
    echoed = "field 'jane.doe@x.com' for Jane Doe (+14155550100) is not valid"
    route = "POST /v3/marketing/field_definitions"
    emu.faults.add(route, status=400, body={"errors": [{"field": "name", "message": echoed}]})

    with pytest.raises(RequestRejectedError) as caught:
        client.create_custom_field("plan", "Text")

    for text in (str(caught.value), repr(caught.value)):
        for value in ("jane.doe@x.com", "Jane", "Doe", "4155550100"):
            assert value not in text


def test_a_contacts_400_names_no_echoed_value_but_keeps_the_raw_text_for_the_rejects_table(
    emu: Any, client: SendGridClient
) -> None:
    raw = "phone_number '+14155550100' of Jane Roe is not valid"
    body = {"errors": [{"field": "contacts[0].phone_number", "message": raw}]}
    emu.faults.add("PUT /v3/marketing/contacts", status=400, body=body)

    with pytest.raises(ContactsRejectedError) as caught:
        client.upsert_contacts(json.dumps({"contacts": [{"email": "a@x.com"}]}).encode())

    assert "+14155550100" not in str(caught.value) and "Roe" not in str(caught.value)
    assert caught.value.errors_by_contact()[0][0].message == raw
