"""The SendGrid contact model: reserved fields, identifiers, limits and naming rules.

Written from the official OpenAPI specs (``tsg_mc_contacts_v3``, ``tsg_mc_custom_fields_v3``)
and the facts in ``notes/sendgrid-api.md``; both the emulator and the destination read their
rules from here, so a rule changes in one place. Nothing in this module does I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

FieldType = Literal["Text", "Number", "Date"]

# PUT /v3/marketing/contacts accepts "up to 30,000 contacts, or 6MB of data, whichever is
# lower". The docs do not say whether MB is 10^6 or 2^20: we take the smaller, 10^6, and
# measure the exact UTF-8 bytes of the body, so no further margin is needed.
MAX_CONTACTS_PER_REQUEST: Final = 30_000
MAX_REQUEST_BYTES: Final = 6_000_000

# PUT /v3/marketing/contacts/imports: "up to 1,000,000 contacts or 5GB of data" per CSV file.
MAX_IMPORT_CONTACTS: Final = 1_000_000
MAX_IMPORT_BYTES: Final = 5_000_000_000

MAX_ALTERNATE_EMAILS: Final = 5
# "Text custom fields are limited to 1,000 characters" (SendGrid docs, 2021); older pages
# said 32,766 bytes. The smaller cap is the safe one.
MAX_CUSTOM_TEXT_LENGTH: Final = 1_000
MAX_CUSTOM_FIELDS: Final = 500
MAX_CUSTOM_FIELD_NAME_LENGTH: Final = 100
MAX_LISTS: Final = 1_000
MAX_LIST_NAME_LENGTH: Final = 100
# Search endpoints take at most 100 values per call (spec, both search routes).
MAX_SEARCH_VALUES: Final = 100

IDENTIFIERS: Final = ("email", "phone_number_id", "external_id", "anonymous_id")


@dataclass(frozen=True)
class ReservedField:
    """One reserved contact field as ``GET /v3/marketing/field_definitions`` lists it."""

    id: str
    name: str
    field_type: FieldType
    read_only: bool = False
    max_length: int | None = None
    # Only in the upsert body, not in field_definitions (identifiers other than email).
    upsert_only: bool = False


# The order and IDs are those of the spec's example response for field_definitions; the
# maxLengths are those of the spec's ContactRequest schema.
RESERVED_FIELDS: Final[tuple[ReservedField, ...]] = (
    ReservedField("_rf0_T", "first_name", "Text", max_length=50),
    ReservedField("_rf1_T", "last_name", "Text", max_length=50),
    ReservedField("_rf2_T", "email", "Text", max_length=254),
    ReservedField("_rf3_T", "alternate_emails", "Text", max_length=254),
    ReservedField("_rf4_T", "address_line_1", "Text", max_length=100),
    ReservedField("_rf5_T", "address_line_2", "Text", max_length=100),
    ReservedField("_rf6_T", "city", "Text", max_length=60),
    ReservedField("_rf7_T", "state_province_region", "Text", max_length=50),
    ReservedField("_rf8_T", "postal_code", "Text"),
    ReservedField("_rf9_T", "country", "Text", max_length=50),
    ReservedField("_rf10_T", "phone_number", "Text"),
    ReservedField("_rf11_T", "whatsapp", "Text"),
    ReservedField("_rf12_T", "line", "Text"),
    ReservedField("_rf13_T", "facebook", "Text"),
    ReservedField("_rf14_T", "unique_name", "Text"),
    ReservedField("_rf15_T", "email_domains", "Text", read_only=True),
    ReservedField("_rf16_D", "last_clicked", "Date", read_only=True),
    ReservedField("_rf17_D", "last_opened", "Date", read_only=True),
    ReservedField("_rf18_D", "last_emailed", "Date", read_only=True),
    ReservedField("_rf19_T", "singlesend_id", "Text", read_only=True),
    ReservedField("_rf20_T", "automation_id", "Text", read_only=True),
    ReservedField("_rf21_D", "created_at", "Date", read_only=True),
    ReservedField("_rf22_D", "updated_at", "Date", read_only=True),
    ReservedField("_rf23_T", "contact_id", "Text", read_only=True),
)

# Identifiers other than email are upsert-body fields that field_definitions does not list.
UPSERT_ONLY_FIELDS: Final[tuple[ReservedField, ...]] = (
    ReservedField("", "phone_number_id", "Text", upsert_only=True),
    ReservedField("", "external_id", "Text", max_length=254, upsert_only=True),
    ReservedField("", "anonymous_id", "Text", max_length=254, upsert_only=True),
)

RESERVED_BY_NAME: Final = {f.name: f for f in RESERVED_FIELDS + UPSERT_ONLY_FIELDS}
WRITABLE_FIELDS: Final = tuple(
    f.name for f in RESERVED_FIELDS + UPSERT_ONLY_FIELDS if not f.read_only
)
READ_ONLY_FIELDS: Final = tuple(f.name for f in RESERVED_FIELDS if f.read_only)
# Never sent: "A contact's ID cannot be used to update the contact", and a stray "id" made
# contacts vanish silently (sendgrid-nodejs#1004).
FORBIDDEN_UPSERT_KEYS: Final = ("id", "contact_id")

# Custom field names: "only alphanumeric characters (A-Z and 0-9) and underscores", and they
# "can only begin with letters A-Z or underscores" (custom fields docs).
CUSTOM_FIELD_NAME_RE: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
FIELD_TYPE_SUFFIX: Final[dict[FieldType, str]] = {"Text": "T", "Number": "N", "Date": "D"}

# A pragmatic email syntax: one @, no spaces, a dotted domain with a 2+ letter TLD. SendGrid
# documents only "a valid email"; the search route's key pattern is of this shape.
_LOCAL_PART = r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
EMAIL_PATTERN: Final = rf"^{_LOCAL_PART}@{_LABEL}(?:\.{_LABEL})*\.[A-Za-z]{{2,63}}$"
EMAIL_RE: Final = re.compile(EMAIL_PATTERN)
# The words of a row's reject when it gives an identifier its contact holds another value
# for (``identifiers``), which ``identity_refresh`` finds the contacts to look up again by.
IDENTIFIER_CHANGE: Final = "an upsert cannot change an identifier"
# Spaces, tabs, line breaks and no-break spaces around a value are copy-paste noise: every value
# and identifier loses them, and only them (other Unicode spaces are kept, and refused where a
# pattern applies), so an identifier read back from SendGrid is trimmed of the same set.
BLANKS: Final = " \t\n\r\f\v\u00a0"
# E.164: a plus, a non-zero country digit, at most 15 digits in all.
E164_PATTERN: Final = r"^\+[1-9][0-9]{1,14}$"
E164_RE: Final = re.compile(E164_PATTERN)


def custom_field_type_from_id(field_id: str) -> FieldType | None:
    """The type encoded in a custom field ID's suffix (``e2_N`` -> Number), if any."""
    suffix = field_id.rsplit("_", 1)[-1] if "_" in field_id else ""
    for field_type, letter in FIELD_TYPE_SUFFIX.items():
        if suffix == letter:
            return field_type
    return None
