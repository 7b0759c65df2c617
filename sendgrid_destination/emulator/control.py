"""The control plane under ``/_emulator/``: steer and inspect the emulator over HTTP.

Contract: no Authorization, no rate limit, not recorded. Routes:

* ``POST /_emulator/faults`` (one rule as JSON), ``GET``/``DELETE /_emulator/faults``;
* ``POST /_emulator/contact-errors`` (``{"<identifier value>": "<reason>"}``),
  ``DELETE /_emulator/contact-errors``;
* ``POST /_emulator/fail-next-jobs`` (``{"count": n, "reason": "..."}``);
* ``POST /_emulator/job-faults`` (``{"count", "import_status", "pending_polls",
  "errors_file", "fail_reason"}``), ``GET``/``DELETE /_emulator/job-faults``;
* ``POST /_emulator/body-limit`` (``{"max_bytes", "answer", "message"}``),
  ``GET``/``DELETE /_emulator/body-limit``;
* ``POST /_emulator/process-jobs`` (apply every pending job now);
* ``GET /_emulator/contacts``, ``/_emulator/requests``, ``/_emulator/jobs``;
* ``GET /_emulator/errors/{job_id}.csv``: the file a job's ``errors_url`` points at, in
  the variant its job fault asks for (other header, HTML page, over-long field, 404).

It also owns the views (contacts, jobs, errors CSV) that ``Emulator`` returns in Python,
so both surfaces show the same thing.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

from .app import ApiApp, Recorder
from .backend import Backend
from .faults import CSV_FIELD_LIMIT, BodyLimit, FaultPlan
from .handlers import job_view
from .http_types import Request, Response, error_response, json_response
from .routes import NotAllowed, Route, match
from .rules import IDENTIFIERS

PREFIX = "/_emulator/"
ERRORS_CSV_HEADER = (
    "primary_email",
    "phone_number_id",
    "external_id",
    "anonymous_id",
    "errors_occurred",
)
# The ``other_header`` variant: the columns another integration's parser would not expect.
OTHER_ERRORS_HEADER = ("Email", "Errors")
# The ``html`` variant: what an expired or mis-signed download link tends to answer.
ERRORS_HTML = (
    "<!DOCTYPE html><html><head><title>Sign in</title></head>"
    "<body><h1>Your session has expired</h1><p>Please sign in again.</p></body></html>"
)
CONTROL_ROUTES: tuple[Route, ...] = (
    Route("POST", "/_emulator/faults", "add_fault"),
    Route("GET", "/_emulator/faults", "list_faults"),
    Route("DELETE", "/_emulator/faults", "clear_faults"),
    Route("POST", "/_emulator/contact-errors", "force_contact_errors"),
    Route("DELETE", "/_emulator/contact-errors", "clear_contact_errors"),
    Route("POST", "/_emulator/fail-next-jobs", "fail_next_jobs"),
    Route("POST", "/_emulator/job-faults", "add_job_faults"),
    Route("GET", "/_emulator/job-faults", "list_job_faults"),
    Route("DELETE", "/_emulator/job-faults", "clear_job_faults"),
    Route("POST", "/_emulator/body-limit", "set_body_limit"),
    Route("GET", "/_emulator/body-limit", "get_body_limit"),
    Route("DELETE", "/_emulator/body-limit", "clear_body_limit"),
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
    """The errors file of a job with errored contacts, else ``None``.

    Its job fault may ask for ``other_header`` (``Email,Errors``: the first identifier and
    the reason) or ``long_field`` (the first reason padded past 131,072 characters).
    """
    job = backend.job(job_id)
    if job is None or not job.errors:
        return None
    variant = job.fault.errors_file if job.fault is not None else "normal"
    rows: list[list[str]] = []
    for error in job.errors:
        ids = error.identifiers
        if variant == "other_header":
            rows.append([next(iter(ids.values()), ""), error.reason])
        else:
            rows.append([ids.get(name, "") for name in IDENTIFIERS] + [error.reason])
    if variant == "long_field":
        rows[0][-1] += " " + "x" * CSV_FIELD_LIMIT
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(OTHER_ERRORS_HEADER if variant == "other_header" else ERRORS_CSV_HEADER)
    writer.writerows(rows)
    return out.getvalue()


class ControlApp:
    """Answers ``/_emulator/`` requests."""

    def __init__(
        self,
        backend: Backend,
        faults: FaultPlan,
        recorder: Recorder,
        base_url: Callable[[], str],
        api: ApiApp,
    ) -> None:
        self._backend = backend
        self._faults = faults
        self._recorder = recorder
        self._base_url = base_url
        self._api = api

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
        except (ValueError, TypeError, KeyError) as exc:
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
        elif name.endswith("job_faults"):
            return self._job_faults(name, request)
        elif name.endswith("body_limit"):
            return self._body_limit(name, request)
        else:
            return self._read(name, params)
        return json_response(200, {"ok": True})

    def _job_faults(self, name: str, request: Request) -> Response:
        queue = self._backend.job_faults
        if name == "add_job_faults":
            return json_response(201, queue.add_spec(_object(request)).as_dict())
        if name == "clear_job_faults":
            queue.clear()
        return json_response(200, [fault.as_dict() for fault in queue.pending()])

    def _body_limit(self, name: str, request: Request) -> Response:
        if name == "set_body_limit":
            body = _object(request)
            self._api.body_limit = BodyLimit(
                int(body["max_bytes"]),
                int(body.get("answer", 413)),
                str(body.get("message", BodyLimit.message)),
            )
        elif name == "clear_body_limit":
            self._api.body_limit = BodyLimit()
        return json_response(200, self._api.body_limit.as_dict())

    def _read(self, name: str, params: dict[str, str]) -> Response:
        if name == "contacts":
            return json_response(200, contacts_view(self._backend))
        if name == "requests":
            return json_response(200, [r.as_dict() for r in self._recorder.all()])
        if name == "jobs":
            return json_response(200, jobs_view(self._backend, self._base_url()))
        return self._errors_file(params["job_id"])

    def _errors_file(self, job_id: str) -> Response:
        job = self._backend.job(job_id)
        variant = job.fault.errors_file if job is not None and job.fault is not None else ""
        if variant == "html" and job is not None and job.errors:
            return Response(200, ERRORS_HTML.encode(), content_type="text/html; charset=utf-8")
        text = errors_csv(self._backend, job_id) if variant != "not_found" else None
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
