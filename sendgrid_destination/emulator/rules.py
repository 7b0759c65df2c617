"""SendGrid's rules as the emulator enforces them, stated here and nowhere else.

Contract: constants and pure predicates only, written from the official OpenAPI specs
(``shared/sendgrid-openapi/``: OAI-C ``tsg_mc_contacts_v3``, OAI-F
``tsg_mc_custom_fields_v3``, OAI-L ``tsg_mc_lists_v3``) and the dated facts in
``notes/sendgrid-api.md``. Each rule cites where it comes from. The destination states its
own rules (``sendgrid_destination.contact_model``) and this module imports nothing from it, so a
wrong rule there fails ``tests/emulator/test_destination_rules_match_the_emulator.py``
instead of being shared by the code under test and the emulator testing it.

Where the sources are silent the rule below is the stricter reading, and says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

FieldType = Literal["Text", "Number", "Date"]
FIELD_TYPES: Final[tuple[FieldType, ...]] = ("Text", "Number", "Date")

# -- request limits ----------------------------------------------------------------------

# OAI-C UpdateContact: "up to 30,000 contacts, or 6MB of data, whichever is lower";
# ``contacts`` has minItems 1, maxItems 30000. "6MB" is read as 10^6-byte megabytes, the
# smaller reading, measured on the raw request body.
MAX_CONTACTS_PER_REQUEST: Final = 30_000
MAX_REQUEST_BYTES: Final = 6_000_000

# OAI-C ImportContact: "a CSV upload containing up to one million contacts or 5GB of data,
# whichever is smaller" (5GB read as 5 * 10^9 bytes of CSV, after any gzip).
MAX_IMPORT_ROWS: Final = 1_000_000
MAX_IMPORT_BYTES: Final = 5_000_000_000

# OAI-C ListContactByEmail / GetContactByIdentifiers: "retrieve up to 100 contacts".
MAX_SEARCH_VALUES: Final = 100
# OAI-C ListContactByEmail: ``emails`` items have maxLength 100 (shorter than a contact's
# 254-character email: longer ones can only be found through search/identifiers/email).
MAX_SEARCH_EMAIL_LENGTH: Final = 100

# No spec states a URL limit. A long ``ids=`` query on DELETE answers 414, and RudderStack
# caps its URLs at about 8,150 characters (rudder-transformer ``deleteUsers.js``); 8 KiB is
# the common front-end default for a request line, so that is the limit here.
MAX_URL_BYTES: Final = 8_192

# -- contacts ----------------------------------------------------------------------------

# OAI-C GetContactByIdentifiers: "`identifier_type` must be a valid identifier type:
# `email`, `phone_number_id`, `external_id`, or `anonymous_id`"; UpdateContact: "Each
# contact needs to include at least one of" them. In that order.
IDENTIFIERS: Final = ("email", "phone_number_id", "external_id", "anonymous_id")

# OAI-C ContactRequest maxLengths. ``phone_number_id`` and ``postal_code`` have none (the
# phone fields are bounded by E.164 instead); alternate_emails' bound is per item.
MAX_LENGTHS: Final[dict[str, int]] = {
    "address_line_1": 100,
    "address_line_2": 100,
    "alternate_emails": 254,
    "city": 60,
    "country": 50,
    "email": 254,
    "external_id": 254,
    "anonymous_id": 254,
    "first_name": 50,
    "last_name": 50,
    "state_province_region": 50,
}
# OAI-C ContactRequest: alternate_emails minItems 0, maxItems 5.
MAX_ALTERNATE_EMAILS: Final = 5

# "Text custom fields are limited to 1,000 characters" (sendgrid/docs custom-fields.md,
# 2021); an older page said 32,766 bytes. The smaller cap is the stricter one.
MAX_CUSTOM_TEXT_LENGTH: Final = 1_000

# OAI-C UpdateContact: "A contact's ID cannot be used to update the contact"; a stray
# ``id`` was accepted with a 202 and the contact "never shows up" (sendgrid-nodejs#1004).
ID_KEYS: Final = ("id", "contact_id")


@dataclass(frozen=True)
class ReservedField:
    """A reserved field as ``GET /v3/marketing/field_definitions`` lists it."""

    id: str
    name: str
    field_type: FieldType
    read_only: bool = False


# OAI-F ListFieldDefinition's example response, in its order, with its IDs and its
# ``read_only`` flags ("API consumers are unable to set the value of this field").
RESERVED_FIELDS: Final[tuple[ReservedField, ...]] = (
    ReservedField("_rf0_T", "first_name", "Text"),
    ReservedField("_rf1_T", "last_name", "Text"),
    ReservedField("_rf2_T", "email", "Text"),
    ReservedField("_rf3_T", "alternate_emails", "Text"),
    ReservedField("_rf4_T", "address_line_1", "Text"),
    ReservedField("_rf5_T", "address_line_2", "Text"),
    ReservedField("_rf6_T", "city", "Text"),
    ReservedField("_rf7_T", "state_province_region", "Text"),
    ReservedField("_rf8_T", "postal_code", "Text"),
    ReservedField("_rf9_T", "country", "Text"),
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
RESERVED_BY_ID: Final = {f.id: f for f in RESERVED_FIELDS}
READ_ONLY_FIELDS: Final = frozenset(f.name for f in RESERVED_FIELDS if f.read_only)
# Writable top-level contact fields: the writable reserved fields (field_definitions lists
# phone_number, whatsapp, line, facebook and unique_name as writable although ContactRequest
# omits them; Segment sends them) plus the identifiers field_definitions does not list.
WRITABLE_FIELDS: Final = frozenset(
    [f.name for f in RESERVED_FIELDS if not f.read_only] + list(IDENTIFIERS)
)
# Text fields of a contact that are string-valued (alternate_emails is a list).
STRING_FIELDS: Final = WRITABLE_FIELDS - {"alternate_emails"}
# Names a custom field may not take: every reserved name, the upsert-only identifiers too
# (OAI-F CreateFieldDefinition: "a Custom Field name cannot collide with any Reserved Field
# names").
RESERVED_NAMES: Final = frozenset(f.name for f in RESERVED_FIELDS) | frozenset(IDENTIFIERS)

# -- custom fields and lists ----------------------------------------------------------------

# OAI-F CreateFieldDefinition: "You can have up to 500 custom fields"; name minLength 1,
# maxLength 100; "only alphanumeric characters (A-Z and 0-9) and underscores (_). Custom
# fields can only begin with letters A-Z or underscores (_)".
MAX_CUSTOM_FIELDS: Final = 500
MAX_FIELD_NAME_LENGTH: Final = 100
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Custom field IDs end in the type's letter (``e1_T``, ``e5_N``, ``e53_D``; notes §3).
TYPE_SUFFIX: Final[dict[FieldType, str]] = {"Text": "T", "Number": "N", "Date": "D"}

# -- Date values ---------------------------------------------------------------------------

# Upserts: the API reference is silent; clients write ISO-8601 UTC in JSON and SendGrid's CSV
# docs name M/D/YYYY forms, so both are taken (notes: "Value formats"). The error message is
# SendGrid's, as observed.
DATE_FORMATS_MESSAGE: Final = "RFC3339, MM/DD/YYYY, or M/D/YYYY"
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
_SLASH_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")


def is_valid_date(value: str) -> bool:
    """An upsert's Date value: RFC3339 (a full date-time with an offset) or a CSV date."""
    if _RFC3339.fullmatch(value):
        try:
            datetime.fromisoformat(value)
        except ValueError:
            return False
        return True
    return is_csv_date(value)


def is_csv_date(value: str) -> bool:
    """A CSV import's Date cell: "MM/DD/YYYY, MM/D/YYYY, M/D/YYYY, or M/DD/YYYY" with a real
    calendar date, the only forms SendGrid documents for CSV files (formatting-a-csv.md);
    a cell in another form "fail[s] silently" (sendgrid/docs PR #4426): the stricter reading,
    kept here, drops the value and imports the rest of the contact."""
    slash = _SLASH_DATE.fullmatch(value)
    if slash is None:
        return False
    month, day, year = (int(part) for part in slash.groups())
    try:
        datetime(year, month, day)
    except ValueError:
        return False
    return True


# OAI-L CreateMarketingList: name minLength 1, maxLength 100; "You can create a maximum of
# 1000 lists" (docs, create-list). ListMarketingList: page_size 1..1000, default 100.
MAX_LISTS: Final = 1_000
MAX_LIST_NAME_LENGTH: Final = 100
MAX_PAGE_SIZE: Final = 1_000
DEFAULT_PAGE_SIZE: Final = 100

# -- value syntax ----------------------------------------------------------------------------

# The spec says only "required to be a valid email". The emulator takes RFC 5321's
# Mailbox restricted to ASCII: a dot-atom local part of at most 64 octets (no leading,
# trailing or doubled dot), then a host name of LDH labels of at most 63 characters ending
# in an alphabetic top-level label of 2 to 63 letters. Non-ASCII look-alikes (the Kelvin
# sign, a dotted capital I) are refused, never folded.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(rf"(?P<local>{_ATOM}(?:\.{_ATOM})*)@(?:{_LABEL}\.)+[A-Za-z]{{2,63}}")
_MAX_LOCAL_PART = 64
# E.164 (ITU-T): a plus, a country code that does not start with 0, at most 15 digits in
# all. Managing-contacts docs: phone_number_id and phone_number "must use E.164".
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")


def is_email(value: str) -> bool:
    """Whether ``value`` is an address the emulator accepts (exactly, no trimming)."""
    found = _EMAIL.fullmatch(value)
    return found is not None and len(found.group("local")) <= _MAX_LOCAL_PART


def is_e164(value: str) -> bool:
    """Whether ``value`` is an E.164 number such as ``+14155550100`` (exactly)."""
    return _E164.fullmatch(value) is not None


def is_field_name(value: str) -> bool:
    """Whether ``value`` is a valid custom field name (any length; the cap is separate)."""
    return _FIELD_NAME.fullmatch(value) is not None


def type_of_field_id(field_id: str) -> FieldType | None:
    """The type a custom field ID's suffix encodes (``e2_N`` -> Number), if any."""
    _, underscore, suffix = field_id.rpartition("_")
    if not underscore:
        return None
    return next((t for t, letter in TYPE_SUFFIX.items() if letter == suffix), None)
