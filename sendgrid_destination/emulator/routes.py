"""The emulated SendGrid routes and how a request path is matched to one.

Contract: ``API_ROUTES`` lists every emulated ``(method, template)`` pair and
``UPLOAD_ROUTES`` the upload host's; a route's ``key`` (``"PUT /v3/marketing/contacts"``)
is the name used by the fault plan, the rate limiter and ``RecordedRequest.route``.
``match`` returns the route and its path parameters, the methods allowed on a known path
(for 405), or ``None`` (404). Pure; no state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Route:
    """One emulated operation: an HTTP method and a path template with ``{param}`` parts."""

    method: str
    template: str
    handler: str
    pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.template))
        object.__setattr__(self, "pattern", re.compile(regex))

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"


@dataclass(frozen=True)
class NotAllowed:
    """The path exists but not with this method."""

    allowed: tuple[str, ...]


# Order matters only where templates overlap: ``/contacts/imports/identifiers`` fits both
# the import status (GET) and the identifier removal (DELETE), told apart by the method.
API_ROUTES: tuple[Route, ...] = (
    Route("PUT", "/v3/marketing/contacts", "upsert_contacts"),
    Route("PUT", "/v3/marketing/contacts/imports", "import_contacts"),
    Route("DELETE", "/v3/marketing/contacts", "delete_contacts"),
    Route("GET", "/v3/marketing/contacts/count", "contact_count"),
    Route("GET", "/v3/marketing/contacts/imports/{id}", "import_status"),
    Route("DELETE", "/v3/marketing/contacts/{contact_id}/identifiers", "delete_contact_identifier"),
    Route("POST", "/v3/marketing/contacts/search/emails", "search_emails"),
    Route(
        "POST",
        "/v3/marketing/contacts/search/identifiers/{identifier_type}",
        "search_identifiers",
    ),
    Route("GET", "/v3/marketing/field_definitions", "list_field_definitions"),
    Route("POST", "/v3/marketing/field_definitions", "create_field_definition"),
    Route("GET", "/v3/marketing/lists", "list_lists"),
    Route("POST", "/v3/marketing/lists", "create_list"),
    Route("DELETE", "/v3/marketing/lists/{id}/contacts", "remove_list_contacts"),
    Route("DELETE", "/v3/marketing/lists/{id}", "delete_list"),
)

# Where a CSV import's file is PUT: the upload host of ``upload_uri``, not the API (no API
# key, no rate limit), served by ``uploads.py`` under its own prefix.
UPLOAD_PREFIX = "/_uploads/"
UPLOAD_ROUTES: tuple[Route, ...] = (Route("PUT", UPLOAD_PREFIX + "{job_id}", "upload"),)
ROUTE_KEYS: frozenset[str] = frozenset(route.key for route in API_ROUTES + UPLOAD_ROUTES)


def match(
    routes: tuple[Route, ...], method: str, path: str
) -> tuple[Route, dict[str, str]] | NotAllowed | None:
    """The route for ``method path`` with its parameters, a ``NotAllowed``, or ``None``."""
    allowed: list[str] = []
    for route in routes:
        found = route.pattern.fullmatch(path)
        if found is None:
            continue
        if route.method == method:
            return route, found.groupdict()
        allowed.append(route.method)
    return NotAllowed(tuple(allowed)) if allowed else None


def check_route_key(key: str) -> str:
    """``key`` itself if it names an emulated route; else ``ValueError`` listing the valid keys."""
    if key not in ROUTE_KEYS:
        raise ValueError(f"unknown route {key!r}; expected one of {sorted(ROUTE_KEYS)}")
    return key
