"""The upload host: where a CSV import's file is PUT (the ``upload_uri`` of
``PUT /v3/marketing/contacts/imports``).

Contract: ``UploadApp.handle(request)`` answers ``PUT /_uploads/{job_id}?signature=...``
like a pre-signed storage URL, not like the API: no API key and no rate limit, but the
signature in the URL and every ``upload_headers`` header must be the ones the import
answered. Refusals come in the storage's XML, not SendGrid's JSON envelope:

* 400 ``InvalidArgument`` when the request also carries an ``Authorization`` header (only
  one auth mechanism is allowed, and the SendGrid key must never travel to this host);
* 403 ``AccessDenied`` for an unknown job, a wrong signature or header, or a second upload;
* 200 with an empty body once the file is taken; the job is then processed like any
  (``job_polls_until_done``, ``job_delay_seconds``).

The fault plan applies under the route key ``PUT /_uploads/{job_id}`` (``status`` rejects
the upload, ``drop``/``hang``/``delay``/``drip``/``redirect`` as on the API). Uploads are
recorded in ``Emulator.requests`` like API calls.
"""

from __future__ import annotations

from collections.abc import Callable
from xml.sax.saxutils import escape

from .app import RecordedRequest, Recorder
from .backend import Backend
from .faults import FaultPlan, FaultRule, deliver_as_the_fault_says
from .handlers import UPLOAD_HEADER
from .http_types import Request, Response, json_response
from .import_jobs import Job
from .routes import UPLOAD_ROUTES, NotAllowed, match


class UploadApp:
    """Answers PUTs to CSV import upload URLs."""

    def __init__(
        self,
        backend: Backend,
        faults: FaultPlan,
        recorder: Recorder,
        sleep: Callable[[float], None],
    ) -> None:
        self._backend = backend
        self._faults = faults
        self._recorder = recorder
        self._sleep = sleep

    def handle(self, request: Request) -> Response:
        found = match(UPLOAD_ROUTES, request.method, request.path)
        if found is None or isinstance(found, NotAllowed):
            response = _storage_error(405 if found else 404, "MethodNotAllowed", "not an upload")
            self._record(request, f"{request.method} {request.path}", response, None)
            return response
        route, params = found
        fault = self._faults.take(route.key)
        response = self._answer(request, params["job_id"], fault)
        deliver_as_the_fault_says(response, fault)
        self._record(request, route.key, response, fault)
        return response

    def _answer(self, request: Request, job_id: str, fault: FaultRule | None) -> Response:
        if fault is not None and fault.action == "status":
            return json_response(fault.status or 500, fault.response_body(), fault.headers)
        if fault is not None and fault.action == "redirect":
            return Response(fault.status or 307, headers={"Location": fault.location or ""})
        if fault is not None and fault.action in ("drop", "hang"):
            return Response(0, disposition="hang" if fault.action == "hang" else "drop")
        if fault is not None and fault.action == "delay":
            self._sleep(fault.delay)
        return self._take(request, job_id)

    def _take(self, request: Request, job_id: str) -> Response:
        if request.header("Authorization") is not None:
            return _storage_error(
                400, "InvalidArgument", "Only one auth mechanism allowed; send no Authorization"
            )
        job = self._backend.job(job_id)
        if job is None or not _signed_for(job, request):
            return _storage_error(403, "AccessDenied", "Access Denied")
        if job.upload is not None:
            return _storage_error(403, "AccessDenied", "This upload URL was already used")
        self._backend.attach_upload(job, request.body)
        return Response(200, content_type="application/xml")

    def _record(
        self, request: Request, route: str, response: Response, fault: FaultRule | None
    ) -> None:
        self._recorder.add(
            RecordedRequest(
                method=request.method,
                route=route,
                path=request.path,  # the signature stays out of the log
                status=0 if response.disposition in ("drop", "hang") else response.status,
                body_bytes=len(request.body),
                contact_count=None,
                headers={k: v for k, v in request.headers.items() if k.lower() != "authorization"},
                at=self._backend.clock.now(),
                fault=fault.action if fault else None,
            )
        )


def _signed_for(job: Job, request: Request) -> bool:
    if job.columns is None or not job.upload_signature:
        return False
    signature = (request.query.get("signature") or [""])[0]
    return signature == job.upload_signature and (
        request.header(UPLOAD_HEADER) == job.upload_header
    )


def _storage_error(status: int, code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message></Error>"
    )
    return Response(status, body.encode(), content_type="application/xml")
