"""``SendGridClient``: the typed calls of the Marketing Contacts API.

Contract:

* Each call builds its URL on ``base_url`` and goes through one ``Transport`` (retries,
  pacing, sessions; see ``api.transport``), then parses the answer into a typed result
  (``api.models``).
* Retried by the transport: 429, 5xx, timeouts, refused or dropped connections, and
  SendGrid's 403 "temporary block"; out of attempts these raise ``RateLimitedError`` /
  ``ServerError`` / ``TransportError`` (transient: dlt retries the job). Refusals raise here:
  401 and other 403s ``AuthenticationError`` naming the settings to check; a 3xx (redirects
  are never followed) and other 4xx ``RequestRejectedError`` (``ContactsRejectedError`` for a
  400 on the upsert). All of these are terminal, except ``BodyTooLargeError`` (a 413, or a
  4xx saying the body is too large): transient, and the sender halves its bodies.
* Secrets and PII: the API key is only ever put in the ``Authorization`` header of requests
  to ``base_url``'s host; it is masked in ``repr``. Exception messages carry SendGrid's
  messages redacted (``api.messages.describe``); the raw ones stay on ``ApiErrorDetail``.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any, BinaryIO, Final, TypeVar
from urllib.parse import quote, urlsplit

from sendgrid_destination.api import errors_file
from sendgrid_destination.api.endpoint import (
    DEFAULT_BASE_URL,
    EU_BASE_URL,
    encrypted_or_local,
    normalize_base_url,
    on_base_host,
    usable_api_key,
)
from sendgrid_destination.api.errors_file import ErrorsFile
from sendgrid_destination.api.messages import describe
from sendgrid_destination.api.models import (
    ClientStats,
    ContactList,
    CsvImport,
    CustomField,
    FieldDefinitions,
    FoundContact,
    ImportJob,
    objects,
)
from sendgrid_destination.api.retry_policy import RetryPolicy
from sendgrid_destination.api.transport import BearerAuth, Response, Transport
from sendgrid_destination.clock import Clock, SystemClock
from sendgrid_destination.errors import (
    ApiErrorDetail,
    AuthenticationError,
    BodyTooLargeError,
    ConfigurationError,
    ContactsRejectedError,
    ImportRejectedError,
    OutcomeUnknownError,
    RequestRejectedError,
    SendGridError,
    ServerError,
    UploadRefusedError,
)
from sendgrid_destination.redaction import safe_url

# Route templates: the keys of stats, pacing and log lines. They never carry ids or queries.
ROUTE_UPSERT: Final = "PUT /v3/marketing/contacts"
ROUTE_IMPORT_STATUS: Final = "GET /v3/marketing/contacts/imports/{id}"
ROUTE_FIELDS: Final = "GET /v3/marketing/field_definitions"
ROUTE_CREATE_FIELD: Final = "POST /v3/marketing/field_definitions"
ROUTE_LISTS: Final = "GET /v3/marketing/lists"
ROUTE_CREATE_LIST: Final = "POST /v3/marketing/lists"
ROUTE_ERRORS_FILE: Final = "GET errors_url"
ROUTE_SEARCH: Final = "POST /v3/marketing/contacts/search/identifiers/{identifier_type}"
ROUTE_DELETE_CONTACTS: Final = "DELETE /v3/marketing/contacts"
ROUTE_REMOVE_FROM_LIST: Final = "DELETE /v3/marketing/lists/{id}/contacts"
ROUTE_CSV_IMPORT: Final = "PUT /v3/marketing/contacts/imports"
ROUTE_UPLOAD: Final = "PUT upload_uri"
ROUTE_COUNT: Final = "GET /v3/marketing/contacts/count"

# GET /v3/marketing/lists takes page_size 1..1000; an account holds at most 1000 lists, so
# even one list a page ends within 1,001 pages: more means a server that never ends.
LISTS_PAGE_SIZE: Final = 1000
MAX_LIST_PAGES: Final = 1_001
# POSTs of a create, each after looking for what an attempt without an answer may have made.
CREATE_ATTEMPTS: Final = 3
_Made = TypeVar("_Made", CustomField, ContactList)
# POST /v3/marketing/contacts/search/identifiers/{type} takes at most 100 values (spec).
MAX_SEARCH_VALUES: Final = 100
SEARCH_TYPES: Final = ("email", "phone_number_id", "external_id", "anonymous_id")

_SETTINGS_HINT: Final = (
    "the api_key setting (env DESTINATION__SENDGRID__API_KEY or api_key under "
    "[destination.sendgrid] in .dlt/secrets.toml)"
)


class SendGridClient:
    """Typed calls to the Marketing Contacts API with retries, pacing and counters."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        on_behalf_of: str | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        max_attempts: int = 8,
        max_backoff_seconds: float = 60.0,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        self._base_url = _validate_settings(api_key, base_url, on_behalf_of, max_attempts)
        self._auth = BearerAuth(api_key.strip())
        self._on_behalf_of = on_behalf_of
        self.stats = ClientStats()
        self._transport = Transport(
            self._auth,
            on_behalf_of=on_behalf_of,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            policy=RetryPolicy(max_attempts=max_attempts, max_backoff_seconds=max_backoff_seconds),
            clock=clock or SystemClock(),
            rng=rng or random.Random(),
            stats=self.stats,
            stop=stop,
        )

    def __repr__(self) -> str:
        return (
            f"SendGridClient(base_url={self._base_url!r}, api_key='<masked>', "
            f"on_behalf_of={self._on_behalf_of!r})"
        )

    def __enter__(self) -> SendGridClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every thread's session."""
        self._transport.close()

    # --- typed calls ---

    def upsert_contacts(self, body: bytes) -> str:
        """``PUT /v3/marketing/contacts`` with an already encoded body; returns the job id.

        Raises:
            ContactsRejectedError: on 400; ``errors_by_contact()`` names the bad contacts.
        """
        response = self._call(ROUTE_UPSERT, self._url("/v3/marketing/contacts"), body=body)
        return _job_id(response, ROUTE_UPSERT)

    def import_status(self, job_id: str) -> ImportJob:
        """``GET /v3/marketing/contacts/imports/{id}``."""
        url = self._url(f"/v3/marketing/contacts/imports/{quote(job_id, safe='')}")
        response = self._call(ROUTE_IMPORT_STATUS, url)
        return ImportJob.from_json(_json_object(response, ROUTE_IMPORT_STATUS), job_id)

    def start_csv_import(
        self, field_mappings: Sequence[str | None], list_ids: Sequence[str] = ()
    ) -> CsvImport:
        """``PUT /v3/marketing/contacts/imports`` for a CSV file whose columns are
        ``field_mappings`` (field definition IDs; ``None`` skips a column); returns the job and
        where to upload the file (``upload_file``).

        Raises:
            ImportRejectedError: on 400 (``errors`` holds SendGrid's entries).
        """
        doc: dict[str, Any] = {"file_type": "csv", "field_mappings": list(field_mappings)}
        if list_ids:
            doc["list_ids"] = list(list_ids)
        url = self._url("/v3/marketing/contacts/imports")
        response = self._call(ROUTE_CSV_IMPORT, url, body=json.dumps(doc).encode())
        started = CsvImport.from_json(_json_object(response, ROUTE_CSV_IMPORT))
        if not started.job_id or not started.upload_uri:
            raise ServerError(
                f"{ROUTE_CSV_IMPORT} answered {response.status} without a job_id and upload_uri",
                status=response.status,
                route=ROUTE_CSV_IMPORT,
            )
        return started

    def upload_file(self, started: CsvImport, data: bytes | BinaryIO) -> None:
        """PUT a CSV import's file to its pre-signed ``upload_uri`` with its ``upload_headers``:
        never the API key, never to plain http beyond loopback, never following a redirect.

        Raises:
            UploadRefusedError: the URL answered 4xx or 3xx; a new import gets a new URL.
            SendGridTransientError: no usable answer after the transport's retries.
        """
        url = _upload_url(started.upload_uri)
        response = self._transport.call(
            ROUTE_UPLOAD, url, body=data, authenticated=False, headers=dict(started.upload_headers)
        )
        if response.kind != "ok":
            raise UploadRefusedError(
                f"The upload URL of CSV import {started.job_id} ({safe_url(url)}) answered "
                f"{response.status}, not 2xx ({describe(response.details)}); a new import "
                "will get a new URL.",
                status=response.status,
                route=ROUTE_UPLOAD,
            )

    def fetch_errors_file(self, url: str) -> ErrorsFile:
        """The errors file behind a job's pre-signed ``errors_url`` (fetched without the key),
        matched to contact keys; see ``api.errors_file`` for what makes it incomplete.

        Raises:
            ErrorsFileUnreadableError: not a CSV, or no identifier column (transient).
            RequestRejectedError: the URL answered 4xx or 3xx (an expired link, say).
            SendGridTransientError: no usable answer after the transport's retries.
        """
        response = self._call(ROUTE_ERRORS_FILE, url, authenticated=False)
        return errors_file.parse(response.body, response.headers.get("Content-Type"))

    def download_errors(self, url: str) -> list[dict[str, str]]:
        """The rows of a job's errors file under normalized column names (``Email`` is
        ``email``); raises as ``fetch_errors_file`` does."""
        response = self._call(ROUTE_ERRORS_FILE, url, authenticated=False)
        return errors_file.read_rows(response.body, response.headers.get("Content-Type"))

    def contact_count(self) -> int | None:
        """``GET /v3/marketing/contacts/count``: the contacts the account holds (SendGrid
        counts a contact once its import job has applied it), None if the answer has none."""
        doc = _json_object(
            self._call(ROUTE_COUNT, self._url("/v3/marketing/contacts/count")), ROUTE_COUNT
        )
        count = doc.get("contact_count")
        return count if isinstance(count, int) and not isinstance(count, bool) else None

    def field_definitions(self) -> FieldDefinitions:
        """``GET /v3/marketing/field_definitions``: custom and reserved fields."""
        response = self._call(ROUTE_FIELDS, self._url("/v3/marketing/field_definitions"))
        return FieldDefinitions.from_json(_json_object(response, ROUTE_FIELDS))

    def create_custom_field(self, name: str, field_type: str) -> CustomField:
        """``POST /v3/marketing/field_definitions``; a new field may take seconds to be usable.
        Never sent twice blindly (``_create``)."""

        def made() -> CustomField | None:
            return self.field_definitions().custom_by_name().get(name.lower())

        document = {"name": name, "field_type": field_type}
        route, path = ROUTE_CREATE_FIELD, "/v3/marketing/field_definitions"
        return self._create(route, path, document, CustomField.from_json, made)

    def lists(self, *, page_size: int = LISTS_PAGE_SIZE) -> list[ContactList]:
        """Every marketing list, following ``_metadata.next`` (``page_size``: 1..1000) on
        ``base_url``'s host, each page once, at most ``MAX_LIST_PAGES`` pages."""
        url: str | None = self._url(f"/v3/marketing/lists?page_size={page_size}")
        seen: set[str] = set()
        found: list[ContactList] = []
        while url and url not in seen:
            if len(seen) >= MAX_LIST_PAGES:
                raise ServerError(
                    f"{ROUTE_LISTS} kept answering a next page after {MAX_LIST_PAGES} pages "
                    "(an account holds at most 1,000 lists)",
                    route=ROUTE_LISTS,
                )
            seen.add(url)
            doc = _json_object(self._call(ROUTE_LISTS, url), ROUTE_LISTS)
            found.extend(ContactList.from_json(d) for d in objects(doc.get("result")))
            metadata = doc.get("_metadata")
            next_url = metadata.get("next") if isinstance(metadata, Mapping) else None
            url = (
                on_base_host(self._base_url, next_url)
                if isinstance(next_url, str) and next_url
                else None
            )
        return found

    def create_list(self, name: str) -> ContactList:
        """``POST /v3/marketing/lists`` (201 since the 2025-01 spec, 200 before). Never sent
        twice blindly (``_create``): an account may allow two lists of one name."""

        def made() -> ContactList | None:
            return next((found for found in self.lists() if found.name == name), None)

        route, path = ROUTE_CREATE_LIST, "/v3/marketing/lists"
        return self._create(route, path, {"name": name}, ContactList.from_json, made)

    def _create(
        self,
        route: str,
        path: str,
        document: dict[str, str],
        parse: Callable[[Mapping[str, Any]], _Made],
        made: Callable[[], _Made | None],
    ) -> _Made:
        """POST ``document`` and parse what it created. After an attempt that may have made
        it (no answer once sent, a 5xx), the transport's backoff, then ``made()`` looks for
        it before the POST is sent again; an "already exists" after such an attempt looks
        again. A blind retry was refused as existing, or made a second list of the name."""
        body = json.dumps(document).encode()
        for attempt in range(1, CREATE_ATTEMPTS + 1):
            try:
                response = self._call(route, self._url(path), body=body, idempotent=False)
                return parse(_json_object(response, route))
            except OutcomeUnknownError as exc:
                unknown: SendGridError = exc
            except RequestRejectedError as exc:
                if attempt == 1 or not _says_exists(exc):
                    raise
                unknown = exc
            self._transport.back_off_unknown(route, attempt)
            found = made()
            if found is not None:
                return found
        raise unknown

    def search_contacts(
        self, identifier_type: str, values: Sequence[str]
    ) -> dict[str, FoundContact]:
        """``POST /v3/marketing/contacts/search/identifiers/{identifier_type}`` (at most 100
        values): the contacts found, by the searched value each holds. Emails are compared
        lower-cased (SendGrid stores them so); a value no contact holds is absent, and so is
        a contact that does not hold the value it was returned for (never trust a match that
        cannot be checked: its ID may be deleted)."""
        if identifier_type not in SEARCH_TYPES or not 0 < len(values) <= MAX_SEARCH_VALUES:
            raise ValueError(
                f"search takes 1 to {MAX_SEARCH_VALUES} values of one of {SEARCH_TYPES}"
            )
        url = self._url(f"/v3/marketing/contacts/search/identifiers/{identifier_type}")
        body = json.dumps({"identifiers": list(values)}).encode()
        try:
            response = self._call(ROUTE_SEARCH, url, body=body)
        except RequestRejectedError as exc:
            if exc.status == 404:  # "no contacts found": nothing matched
                return {}
            raise
        result = _json_object(response, ROUTE_SEARCH).get("result")
        entries = result.values() if isinstance(result, Mapping) else ()
        fold = str.lower if identifier_type == "email" else str
        wanted = {fold(v) for v in values}
        found: dict[str, FoundContact] = {}
        for entry in entries:
            doc = entry.get("contact") if isinstance(entry, Mapping) else None
            if not isinstance(doc, Mapping):
                continue
            contact = FoundContact.from_json(doc)
            held = contact.identifiers.get(identifier_type)
            if contact.id and held is not None and fold(held) in wanted:
                found[fold(held)] = contact
        return found

    def delete_contacts(self, contact_ids: Sequence[str]) -> str:
        """``DELETE /v3/marketing/contacts?ids=...``; returns the deletion job's id (followed
        through the import-status route). Keep the URL under about 8 KB (``ids_url_length``):
        SendGrid answers 414 beyond."""
        url = self._url("/v3/marketing/contacts?ids=") + _joined_ids(contact_ids)
        return _job_id(self._call(ROUTE_DELETE_CONTACTS, url), ROUTE_DELETE_CONTACTS)

    def remove_from_list(self, list_id: str, contact_ids: Sequence[str]) -> str:
        """``DELETE /v3/marketing/lists/{id}/contacts?contact_ids=...``: the contacts leave the
        list (they are not deleted); returns the job's id. A 404 means the list, or one of the
        contacts, does not exist (any more)."""
        url = self._removal_prefix(list_id) + _joined_ids(contact_ids)
        return _job_id(self._call(ROUTE_REMOVE_FROM_LIST, url), ROUTE_REMOVE_FROM_LIST)

    def ids_url_length(self, list_id: str | None) -> int:
        """The length of the deletion (``list_id`` None) or list-removal URL before its IDs."""
        if list_id is None:
            return len(self._url("/v3/marketing/contacts?ids="))
        return len(self._removal_prefix(list_id))

    def _removal_prefix(self, list_id: str) -> str:
        return self._url(f"/v3/marketing/lists/{quote(list_id, safe='')}/contacts?contact_ids=")

    # --- helpers ---

    def _call(
        self,
        route: str,
        url: str,
        *,
        body: bytes | None = None,
        authenticated: bool = True,
        idempotent: bool = True,
    ) -> Response:
        response = self._transport.call(
            route, url, body=body, authenticated=authenticated, idempotent=idempotent
        )
        if response.kind == "too_large":
            raise _too_large(route, response, len(body or b""))
        if response.kind != "ok":
            raise self._refusal(route, response, authenticated)
        return response

    def _url(self, path: str) -> str:
        return self._base_url + path

    def _refusal(self, route: str, response: Response, authenticated: bool) -> SendGridError:
        """The typed error of a refusal that retrying cannot fix."""
        status, summary, details = response.status, describe(response.details), response.details
        if response.kind == "redirect":
            return RequestRejectedError(
                self._redirect_message(route, response), status=status, route=route
            )
        if not authenticated:
            return RequestRejectedError(
                f"{route} answered {status}: {summary}. The pre-signed errors file may have "
                "expired; its job's counts are still valid.",
                status=status,
                route=route,
            )
        if response.kind == "unauthorized":
            return AuthenticationError(
                self._unauthorized_message(route, summary), status=status, route=route
            )
        if response.kind == "forbidden":
            return AuthenticationError(
                _forbidden_message(route, summary), status=status, route=route
            )
        if route == ROUTE_UPSERT and status == 400:
            return _contacts_rejected(details, route)
        if route == ROUTE_CSV_IMPORT and status == 400:
            return ImportRejectedError(
                f"SendGrid rejected {route} with 400: {summary}. Check that every mapped field "
                'is listed by field_definitions, or set bulk = "never".',
                errors=details,
                route=route,
            )
        return RequestRejectedError(
            f"SendGrid rejected {route} with {status}: {summary}{_status_hint(status)}",
            status=status,
            route=route,
        )

    def _redirect_message(self, route: str, response: Response) -> str:
        location = response.headers.get("Location")
        target = f" to {safe_url(location)}" if location else ""
        return (
            f"{route} answered {response.status}, a redirect{target}; API calls never follow "
            f"redirects, so nothing was sent there. Check base_url ({self._base_url}): it must "
            "be the API host itself, not a proxy or an old address that redirects."
        )

    def _unauthorized_message(self, route: str, summary: str) -> str:
        subuser = repr(self._on_behalf_of) if self._on_behalf_of else "not set"
        return (
            f"SendGrid refused the API key (401 on {route}: {summary}). Check {_SETTINGS_HINT}; "
            f"that base_url ({self._base_url}) matches the key's region (EU subusers use "
            f"{EU_BASE_URL}); and the On-Behalf-Of subuser (on_behalf_of: {subuser})."
        )


def _forbidden_message(route: str, summary: str) -> str:
    return (
        f"SendGrid refused the API key's permissions (403 on {route}: {summary}). The key "
        "needs the Marketing (Full Access) scope; also check IP Access Management, the "
        "on_behalf_of subuser and that base_url matches the key's region. Key: "
        f"{_SETTINGS_HINT}."
    )


def _status_hint(status: int) -> str:
    if status == 451:
        return f" (data residency: EU subusers must use base_url {EU_BASE_URL})"
    return ""


def _too_large(route: str, response: Response, body_bytes: int) -> BodyTooLargeError:
    return BodyTooLargeError(
        f"SendGrid refused {route} as too large ({response.status}: "
        f"{describe(response.details)}) for a body of {body_bytes:,} bytes; smaller bodies "
        "may pass (lower max_request_bytes if this keeps happening).",
        body_bytes=body_bytes,
        status=response.status,
        route=route,
    )


def _contacts_rejected(details: list[ApiErrorDetail], route: str) -> ContactsRejectedError:
    indexes = sorted({d.contact_index for d in details if d.contact_index is not None})
    shown = ", ".join(str(i) for i in indexes[:10]) + (", ..." if len(indexes) > 10 else "")
    where = f"contacts at indexes [{shown}]" if indexes else "the request as a whole"
    message = f"SendGrid rejected {route} with 400 for {where}: {describe(details)}"
    return ContactsRejectedError(message, errors=details, status=400, route=route)


def _upload_url(uri: str) -> str:
    """The upload URI if it keeps the file (contacts' data) encrypted or on this machine."""
    parts = urlsplit(uri)
    try:
        host = parts.hostname
    except ValueError:
        host = None
    if host and encrypted_or_local(parts.scheme, host):
        return uri
    raise ServerError(
        f"{ROUTE_CSV_IMPORT} answered an upload_uri that is not https ({safe_url(uri)}); the "
        'contacts\' file is not sent there. Set bulk = "never" to send upserts only.',
        route=ROUTE_CSV_IMPORT,
    )


def _validate_settings(
    api_key: str, base_url: str, on_behalf_of: str | None, max_attempts: int
) -> str:
    """Refuse settings that cannot work, before any request; returns the base URL to use."""
    if not usable_api_key(api_key):
        raise ConfigurationError(
            f"The SendGrid API key is empty or malformed; set {_SETTINGS_HINT}."
        )
    try:
        normalized = normalize_base_url(base_url)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    if on_behalf_of is not None and not on_behalf_of.isprintable():
        raise ConfigurationError("on_behalf_of must be a subuser name without control characters.")
    if max_attempts < 1:
        raise ConfigurationError("max_attempts must be at least 1.")
    return normalized


def _joined_ids(contact_ids: Sequence[str]) -> str:
    if not contact_ids:
        raise ValueError("at least one contact id is needed")
    return ",".join(quote(i, safe="") for i in contact_ids)


def _job_id(response: Response, route: str) -> str:
    """The ``job_id`` of a write's answer. The spec says 202, a proxied live capture says 200,
    and DELETE's is typed as an object yet is a UUID string: any 2xx with an id counts."""
    job_id = _json_object(response, route).get("job_id")
    if not isinstance(job_id, str | int) or isinstance(job_id, bool) or job_id == "":
        raise ServerError(
            f"{route} answered {response.status} without a job_id",
            status=response.status,
            route=route,
        )
    return str(job_id)


def _json_object(response: Response, route: str) -> Mapping[str, Any]:
    try:
        doc = json.loads(response.body)
    except ValueError as exc:
        raise ServerError(
            f"{route} answered {response.status} with a body that is not JSON",
            status=response.status,
            route=route,
        ) from exc
    if not isinstance(doc, Mapping):
        raise ServerError(
            f"{route} answered {response.status} with JSON that is not an object",
            status=response.status,
            route=route,
        )
    return doc


def _says_exists(refused: RequestRejectedError) -> bool:
    """A create refused because its name is taken (``Name already exists``)."""
    return refused.status == 400 and "already exists" in refused.message.lower()
