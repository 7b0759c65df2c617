"""The control plane under ``/_emulator/``: steer and inspect the emulator over HTTP.

Contract: no Authorization, no rate limit, not recorded. Routes:

* ``POST /_emulator/faults`` (one rule as JSON), ``GET``/``DELETE /_emulator/faults``;
* ``POST /_emulator/contact-errors`` (``{"<identifier value>": "<reason>"}``),
  ``DELETE /_emulator/contact-errors``;
* ``POST /_emulator/fail-next-jobs`` (``{"count": n, "reason": "..."}``);
* ``POST /_emulator/process-jobs`` (apply every pending job now);
* ``GET /_emulator/contacts``, ``/_emulator/requests``, ``/_emulator/jobs``;
* ``GET /_emulator/errors/{job_id}.csv``: the file a job's ``errors_url`` points at.

It also owns the views (contacts, jobs, errors CSV) that ``Emulator`` returns in Python,
so both surfaces show the same thing.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

from .app import Recorder
from .backend import Backend
from .faults import FaultPlan
from .handlers import job_view
from .http_types import Request, Response, error_response, json_response
from .routes import NotAllowed, Route, match

PREFIX = "/_emulator/"
ERRORS_CSV_HEADER = (
    "primary_email",
    "phone_number_id",
    "external_id",
    "anonymous_id",
    "errors_occurred",
)
CONTROL_ROUTES: tuple[Route, ...] = (
    Route("POST", "/_emulator/faults", "add_fault"),
    Route("GET", "/_emulator/faults", "list_faults"),
    Route("DELETE", "/_emulator/faults", "clear_faults"),
    Route("POST", "/_emulator/contact-errors", "force_contact_errors"),
    Route("DELETE", "/_emulator/contact-errors", "clear_contact_errors"),
    Route("POST", "/_emulator/fail-next-jobs", "fail_next_jobs"),
    Route("POST", "/_emulator/process-jobs", "process_jobs"),
    Route("GET", "/_emulator/contacts", "contacts"),
    Route("GET", "/_emulator/requests", "requests"),
    Route("GET", "/_emulator/jobs", "jobs"),
    Route("GET", "/_emulator/errors/{job_id}.csv", "errors_csv"),
)


def contacts_view(backend: Backend) -> list[dict[str, Any]]:
    return [contact.details() for contact in backend.contacts()]


def jobs_view(backend: Backend, base_url: str) -> list[dict[str, Any]]:
    return [
        {**job_view(job, base_url), "contact_count": job.requested_count} for job in backend.jobs()
    ]


def errors_csv(backend: Backend, job_id: str) -> str | None:
    """The errors file of a job with errored contacts, else ``None``."""
    job = backend.job(job_id)
    if job is None or not job.errors:
        return None
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(ERRORS_CSV_HEADER)
    for error in job.errors:
        ids = error.identifiers
        writer.writerow(
            [
                ids.get("email", ""),
                ids.get("phone_number_id", ""),
                ids.get("external_id", ""),
                ids.get("anonymous_id", ""),
                error.reason,
            ]
        )
    return out.getvalue()


class ControlApp:
    """Answers ``/_emulator/`` requests."""

    def __init__(
        self,
        backend: Backend,
        faults: FaultPlan,
        recorder: Recorder,
        base_url: Callable[[], str],
    ) -> None:
        self._backend = backend
        self._faults = faults
        self._recorder = recorder
        self._base_url = base_url

    def handle(self, request: Request) -> Response:
        found = match(CONTROL_ROUTES, request.method, request.path)
        if found is None:
            return error_response(404, "not found")
        if isinstance(found, NotAllowed):
            response = error_response(405, "method not allowed")
            response.headers["Allow"] = ", ".join(found.allowed)
            return response
        route, params = found
        try:
            return self._dispatch(route.handler, request, params)
        except (ValueError, TypeError) as exc:
            return error_response(400, str(exc))

    def _dispatch(self, name: str, request: Request, params: dict[str, str]) -> Response:
        backend = self._backend
        if name == "add_fault":
            return json_response(201, self._faults.add_rule(_object(request)).as_dict())
        if name == "list_faults":
            return json_response(200, [rule.as_dict() for rule in self._faults.pending()])
        if name == "clear_faults":
            self._faults.clear()
        elif name == "force_contact_errors":
            backend.force_contact_errors(_reasons(_object(request)))
        elif name == "clear_contact_errors":
            backend.clear_contact_errors()
        elif name == "fail_next_jobs":
            body = _object(request)
            backend.fail_next_jobs(int(body.get("count", 1)), str(body.get("reason", "failed")))
        elif name == "process_jobs":
            return json_response(200, {"processed": backend.process_all()})
        else:
            return self._read(name, params)
        return json_response(200, {"ok": True})

    def _read(self, name: str, params: dict[str, str]) -> Response:
        if name == "contacts":
            return json_response(200, contacts_view(self._backend))
        if name == "requests":
            return json_response(200, [r.as_dict() for r in self._recorder.all()])
        if name == "jobs":
            return json_response(200, jobs_view(self._backend, self._base_url()))
        text = errors_csv(self._backend, params["job_id"])
        if text is None:
            return error_response(404, "no errors file for this job")
        return Response(200, text.encode(), content_type="text/csv; charset=utf-8")


def _object(request: Request) -> dict[str, Any]:
    try:
        doc = json.loads(request.body or b"{}")
    except ValueError as exc:
        raise ValueError("invalid JSON") from exc
    if not isinstance(doc, dict):
        raise ValueError("expected a JSON object")
    return doc


def _reasons(doc: dict[str, Any]) -> dict[str, str]:
    if not all(isinstance(v, str) for v in doc.values()):
        raise ValueError('expected {"<identifier value>": "<reason>"}')
    return {str(k): v for k, v in doc.items()}
