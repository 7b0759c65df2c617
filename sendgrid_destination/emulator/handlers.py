"""The SendGrid route handlers: parse the request, call the backend, serialise the answer.

Contract: one method per emulated route (see ``routes.API_ROUTES``); each takes a ``Call``
that already passed auth, rate limiting and the body-size cap, and returns a ``Response``
with the real API's status and body shape, or raises ``errors.ApiError`` (the app answers
it). Error messages quote the real ones where they are known (``notes/sendgrid-api.md``);
the others are documented in ``docs/emulator.md``.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .backend import Backend
from .csv_import import map_columns
from .definitions import CustomField, MarketingList, reserved_definitions
from .errors import BadRequest, InvalidInput, InvalidJson, NotFound
from .http_types import Request, Response, json_response
from .import_jobs import Job, view
from .routes import UPLOAD_PREFIX
from .rules import (
    DEFAULT_PAGE_SIZE,
    IDENTIFIERS,
    MAX_PAGE_SIZE,
    MAX_SEARCH_EMAIL_LENGTH,
    MAX_SEARCH_VALUES,
    is_email,
)
from .validation import validate_upsert

_UNPARSED: Any = object()


def _refuse_constant(name: str) -> Any:
    # NaN/Infinity are not JSON; Go's decoder (SendGrid's) refuses them.
    raise ValueError(f"invalid JSON constant {name}")


@dataclass
class Call:
    """A matched API request: the request, its path parameters and its parsed JSON body."""

    request: Request
    params: dict[str, str] = field(default_factory=dict)
    _doc: Any = field(default=_UNPARSED, repr=False)

    def json(self) -> Any:
        """The parsed body; ``ValueError`` when it is not JSON (cached either way)."""
        if self._doc is _UNPARSED:
            try:
                self._doc = json.loads(self.request.body, parse_constant=_refuse_constant)
            except ValueError as exc:
                self._doc = exc
        if isinstance(self._doc, ValueError):
            raise self._doc
        return self._doc

    def body(self) -> Any:
        """The parsed body; ``InvalidJson`` (the observed 400) when it is not JSON."""
        try:
            return self.json()
        except ValueError:
            raise InvalidJson from None

    def body_object(self) -> dict[str, Any]:
        """The parsed body as a JSON object; ``InvalidInput`` for any other JSON value."""
        doc = self.body()
        if not isinstance(doc, dict):
            raise InvalidInput
        return doc

    def query_value(self, name: str) -> str | None:
        values = self.request.query.get(name)
        return values[0] if values else None


Handler = Callable[[Call], Response]


class Handlers:
    """The route handlers of one emulator instance."""

    def __init__(self, backend: Backend, base_url: Callable[[], str]) -> None:
        self._backend = backend
        self._base_url = base_url

    def table(self) -> dict[str, Handler]:
        """Handler by ``Route.handler`` name."""
        return {
            "upsert_contacts": self.upsert_contacts,
            "import_contacts": self.import_contacts,
            "delete_contacts": self.delete_contacts,
            "contact_count": self.contact_count,
            "import_status": self.import_status,
            "delete_contact_identifier": self.delete_contact_identifier,
            "search_emails": self.search_emails,
            "search_identifiers": self.search_identifiers,
            "list_field_definitions": self.list_field_definitions,
            "create_field_definition": self.create_field_definition,
            "list_lists": self.list_lists,
            "create_list": self.create_list,
            "remove_list_contacts": self.remove_list_contacts,
            "delete_list": self.delete_list,
        }

    # -- contacts ---------------------------------------------------------------------

    def upsert_contacts(self, call: Call) -> Response:
        doc = call.body()
        backend = self._backend
        contacts = validate_upsert(doc, backend.ready_field_ids(), backend.list_ids())
        job = backend.enqueue_upsert(contacts, list(doc.get("list_ids") or []))
        return self._job_accepted(job)

    def import_contacts(self, call: Call) -> Response:
        doc = call.body_object()
        if doc.get("file_type") != "csv":
            raise BadRequest("file_type must be csv", "file_type")
        backend = self._backend
        columns = map_columns(doc.get("field_mappings"), backend.custom_field_types())
        list_ids = doc.get("list_ids") or []
        if not isinstance(list_ids, list) or not all(isinstance(i, str) for i in list_ids):
            raise InvalidInput
        unknown = [list_id for list_id in list_ids if list_id not in backend.list_ids()]
        if unknown:
            # The spec's 404: "If any of the specified lists do not exist."
            raise NotFound(f"invalid list ids supplied - {','.join(unknown)}", "list_ids")
        job = backend.enqueue_import(columns, list_ids)
        upload = f"{self._base_url()}{UPLOAD_PREFIX}{job.id}?signature={job.upload_signature}"
        headers = [{"header": UPLOAD_HEADER, "value": job.upload_header}]
        body = {"job_id": job.id, "upload_uri": upload, "upload_headers": headers}
        return json_response(200, body)

    def delete_contacts(self, call: Call) -> Response:
        ids, delete_all = call.query_value("ids"), call.query_value("delete_all_contacts")
        if ids is not None and delete_all is not None:
            raise BadRequest("ids and delete_all_contacts cannot be combined")
        if delete_all is not None:
            if delete_all != "true":
                raise BadRequest("delete_all_contacts must be 'true'", "delete_all_contacts")
            return self._job_accepted(self._backend.enqueue_delete(None))
        contact_ids = _split_ids(ids)
        if not contact_ids:
            raise BadRequest("ids or delete_all_contacts is required", "ids")
        return self._job_accepted(self._backend.enqueue_delete(contact_ids))

    def contact_count(self, call: Call) -> Response:
        count = self._backend.contact_count()
        # Every stored contact is billable here; the breakdown is optional in the spec.
        return json_response(200, {"contact_count": count, "billable_count": count})

    def import_status(self, call: Call) -> Response:
        job = self._backend.poll(call.params["id"])
        shown = job.apparent_status() if job is not None else "missing"
        if job is None or shown == "missing":
            raise NotFound("job not found")
        if shown == "pending":
            return json_response(200, view(job, "", as_pending=True))
        return json_response(200, job_view(job, self._base_url()))

    def delete_contact_identifier(self, call: Call) -> Response:
        doc = call.body_object()
        kind = _IDENTIFIER_TYPES.get(doc.get("identifier_type"))  # type: ignore[arg-type]
        value = doc.get("identifier_value")
        if kind is None:
            raise BadRequest(
                f"identifier_type must be one of {', '.join(_IDENTIFIER_TYPES)}", "identifier_type"
            )
        if not isinstance(value, str) or not value:
            raise BadRequest("identifier_value is required", "identifier_value")
        contact_id = call.params["contact_id"]
        if not self._backend.contact_exists(contact_id):
            raise NotFound("contact not found", "contact_id")
        return self._job_accepted(self._backend.enqueue_identifier_removal(contact_id, kind, value))

    def search_emails(self, call: Call) -> Response:
        values = self._search_values(call, "emails")
        # "Empty strings are excluded" (spec, ListContactByEmail).
        emails = [email for email in values if email]
        # The spec gives search emails maxLength 100, below a contact's 254.
        if any(len(email) > MAX_SEARCH_EMAIL_LENGTH for email in emails):
            raise BadRequest(
                f"emails must be at most {MAX_SEARCH_EMAIL_LENGTH} characters each", "emails"
            )
        bad = next((e for e in emails if not is_email(e)), None)
        if bad is not None:
            raise BadRequest(f"email '{bad}' is not valid", "emails")
        return _search_result(self._backend.search("any_email", emails))

    def search_identifiers(self, call: Call) -> Response:
        kind = call.params["identifier_type"]
        if kind not in IDENTIFIERS:
            raise BadRequest(
                f"identifier_type must be one of {', '.join(IDENTIFIERS)}", "identifier_type"
            )
        values = self._search_values(call, "identifiers")
        # "400 if any searched addresses are invalid" (spec, GetContactByIdentifiers): one
        # address SendGrid would not store refuses the whole search.
        bad = next((v for v in values if kind == "email" and not is_email(v)), None)
        if bad is not None:
            raise BadRequest(f"email '{bad}' is not valid", "identifiers")
        return _search_result(self._backend.search(kind, values))

    @staticmethod
    def _search_values(call: Call, key: str) -> list[str]:
        doc = call.body()
        values = doc.get(key) if isinstance(doc, dict) else None
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            if isinstance(doc, dict) and key in doc:
                raise InvalidInput
            raise _required(key)
        if not values:
            raise _required(key)
        if len(values) > MAX_SEARCH_VALUES:
            raise BadRequest(f"{key} must contain at most {MAX_SEARCH_VALUES} items", key)
        return values

    # -- field definitions --------------------------------------------------------------

    def list_field_definitions(self, call: Call) -> Response:
        custom = [f.definition() for f in self._backend.custom_fields()]
        return json_response(
            200,
            {
                "custom_fields": custom,
                "reserved_fields": reserved_definitions(),
                "_metadata": {"self": f"{self._base_url()}/v3/marketing/field_definitions"},
            },
        )

    def create_field_definition(self, call: Call) -> Response:
        doc = call.body_object()
        created = self._backend.create_field(doc.get("name"), doc.get("field_type"))
        return json_response(200, self._field_body(created))

    def _field_body(self, created: CustomField) -> dict[str, Any]:
        url = f"{self._base_url()}/v3/marketing/field_definitions/{created.id}"
        return {**created.definition(), "_metadata": {"self": url}}

    # -- lists --------------------------------------------------------------------------

    def list_lists(self, call: Call) -> Response:
        size = _page_size(call.query_value("page_size"))
        size = min(size, self._backend.lists_page_limit or size)
        offset = _page_offset(call.query_value("page_token"))
        lists = self._backend.all_lists()
        page = lists[offset : offset + size]
        metadata: dict[str, Any] = {"self": self._lists_url(size, offset), "count": len(lists)}
        if offset + size < len(lists):
            metadata["next"] = self._lists_url(size, offset + size)
        if offset > 0:
            metadata["prev"] = self._lists_url(size, max(0, offset - size))
        result = [self._list_body(lst, count) for lst, count in page]
        return json_response(200, {"result": result, "_metadata": metadata})

    def create_list(self, call: Call) -> Response:
        doc = call.body_object()
        created = self._backend.create_list(doc.get("name"))
        return json_response(201, self._list_body(created, 0))

    def remove_list_contacts(self, call: Call) -> Response:
        list_id = call.params["id"]
        if list_id not in self._backend.list_ids():
            raise NotFound("list not found", "id")
        contact_ids = _split_ids(call.query_value("contact_ids"))
        if not contact_ids:
            raise BadRequest("contact_ids is required", "contact_ids")
        unknown = [cid for cid in contact_ids if not self._backend.contact_exists(cid)]
        if unknown:
            # The spec's 404: "one or more contact IDs do not exist".
            raise NotFound("one or more contact IDs do not exist", "contact_ids")
        return self._job_accepted(self._backend.enqueue_list_removal(list_id, contact_ids))

    def delete_list(self, call: Call) -> Response:
        # OAI-L DeleteMarketingList: 204 once deleted; with delete_contacts=true, 200 and
        # the job deleting the list's contacts.
        flag = call.query_value("delete_contacts")
        if flag not in (None, "true", "false"):
            raise BadRequest("delete_contacts must be true or false", "delete_contacts")
        job = self._backend.delete_list(call.params["id"], delete_contacts=flag == "true")
        if job is None:
            return Response(204)
        return json_response(200, {"job_id": job.id})

    def _list_body(self, lst: MarketingList, count: int) -> dict[str, Any]:
        url = f"{self._base_url()}/v3/marketing/lists/{lst.id}"
        return {"id": lst.id, "name": lst.name, "contact_count": count, "_metadata": {"self": url}}

    def _lists_url(self, size: int, offset: int) -> str:
        url = f"{self._base_url()}/v3/marketing/lists?page_size={size}"
        return url + (f"&page_token={_page_token(offset)}" if offset else "")

    @staticmethod
    def _job_accepted(job: Job) -> Response:
        return json_response(202, {"job_id": job.id})


# DeleteContactIdentifier names identifier types in upper case (spec IdentifierType), unlike
# the lower-case names of the search route and the contact fields.
# The header a CSV import's upload must carry (real upload_headers are unobserved; what
# matters is that the client sends what it is given, and nothing else, such as the key).
UPLOAD_HEADER = "X-Upload-Token"
_IDENTIFIER_TYPES = {
    "EMAIL": "email",
    "PHONENUMBERID": "phone_number_id",
    "EXTERNALID": "external_id",
    "ANONYMOUSID": "anonymous_id",
}


def job_view(job: Job, base_url: str) -> dict[str, Any]:
    """A job as the imports route shows it; errors_url points at the emulator's CSV route."""
    return view(job, f"{base_url}/_emulator/errors/{job.id}.csv")


def _search_result(result: dict[str, dict[str, Any]]) -> Response:
    if not any("contact" in entry for entry in result.values()):
        raise NotFound("contacts not found")
    return json_response(200, {"result": result})


def _required(key: str) -> BadRequest:
    return BadRequest(f"{key} is required", key)


def _split_ids(raw: str | None) -> list[str]:
    return [part for part in (raw or "").split(",") if part]


def _page_size(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        size = 0
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise BadRequest("page_size must be an integer from 1 to 1000", "page_size")
    return size


def _page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _page_offset(token: str | None) -> int:
    if not token:
        return 0
    try:
        decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    prefix, _, number = decoded.partition(":")
    if prefix != "offset" or not number.isdigit():
        raise BadRequest("page_token is not valid", "page_token")
    return int(number)
