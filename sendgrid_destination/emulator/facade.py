"""``Emulator``: one independent, in-process SendGrid Marketing Contacts API on a real port.

Contract: everything an instance needs (state, fault plan, rate limiter, request log,
server) is created in ``__init__``; nothing is module-level, so two instances never share
anything. ``start()`` binds (``port=0`` picks a free port) and serves on daemon threads;
``stop()`` returns promptly even with a hanging fault in progress. The methods below are
the Python face of the control routes (``control.py``) and return the same views.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

from .app import ApiApp, Auth, RecordedRequest, Recorder
from .backend import Backend, JobOrder
from .clock import Clock, SystemClock
from .control import PREFIX, ControlApp, contacts_view, jobs_view
from .errors import ApiError
from .faults import (
    BodyLimit,
    ErrorsFileFault,
    FaultPlan,
    ImportStatusFault,
    JobFault,
)
from .http_types import Request, Response
from .ratelimit import DEFAULT_RATE_LIMIT, RateLimit, RateLimiter
from .routes import UPLOAD_PREFIX
from .rules import FieldType
from .server import HARD_BODY_CAP, HttpServer
from .uploads import UploadApp

# An upload is held in memory until its job runs: the emulator takes files up to 1 GiB
# (the real limit is 5 GB of CSV; a gzip file of a million contacts is tens of MB).
UPLOAD_BODY_CAP = 1 << 30


def _body_cap(path: str) -> int:
    return UPLOAD_BODY_CAP if path.startswith(UPLOAD_PREFIX) else HARD_BODY_CAP


class Emulator:
    """A SendGrid Marketing Contacts API emulator; also a context manager (start/stop)."""

    def __init__(
        self,
        api_key: str = "SG.test-key",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        job_polls_until_done: int = 1,
        job_delay_seconds: float = 0.0,
        job_order: JobOrder = "fifo",
        custom_field_ready_seconds: float = 0.0,
        rate_limits: Mapping[str, RateLimit] | None = None,
        default_rate_limit: RateLimit = DEFAULT_RATE_LIMIT,
        forbidden_keys: Iterable[str] = (),
        retain_contacts: bool = True,
        unique_list_names: bool = True,
        lists_page_limit: int | None = None,
    ) -> None:
        self.api_key = api_key
        self.host = host
        self._requested_port = port
        self.clock: Clock = clock or SystemClock()
        self.backend = Backend(
            self.clock,
            job_polls_until_done=job_polls_until_done,
            job_delay_seconds=job_delay_seconds,
            job_order=job_order,
            custom_field_ready_seconds=custom_field_ready_seconds,
            retain_contacts=retain_contacts,
            unique_list_names=unique_list_names,
            lists_page_limit=lists_page_limit,
        )
        self.faults = FaultPlan()
        self._recorder = Recorder()
        self._server = HttpServer(self._dispatch, _body_cap)
        limiter = RateLimiter(self.clock, rate_limits, default_rate_limit)
        auth = self._auth = Auth(api_key, forbidden_keys)
        self._api = ApiApp(
            self.backend, self.faults, limiter, auth, self._recorder, self._url, self._server.wait
        )
        self._uploads = UploadApp(self.backend, self.faults, self._recorder, self._server.wait)
        self._control = ControlApp(self.backend, self.faults, self._recorder, self._url, self._api)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> Emulator:
        self._server.start(self.host, self._requested_port)
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def base_url(self) -> str:
        return self._url()

    def _url(self) -> str:
        # A wildcard bind is reachable on loopback; clients need a concrete host.
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host
        return f"http://{host}:{self.port}"

    def _dispatch(self, request: Request) -> Response:
        if request.path.startswith(PREFIX):
            return self._control.handle(request)
        if request.path.startswith(UPLOAD_PREFIX):
            return self._uploads.handle(request)
        return self._api.handle(request)

    # -- steering -----------------------------------------------------------------------

    def rotate_api_key(self, new_key: str) -> None:
        """The account's key is replaced: from now on only ``new_key`` authenticates."""
        self.api_key = self._auth.api_key = new_key

    def force_contact_errors(self, reasons: Mapping[str, str]) -> None:
        """Contacts with any of these identifier values error in their job with the reason."""
        self.backend.force_contact_errors(dict(reasons))

    def clear_contact_errors(self) -> None:
        self.backend.clear_contact_errors()

    def fail_next_jobs(self, count: int, reason: str = "job failed") -> None:
        """The next ``count`` jobs created end ``failed``; all their contacts error."""
        self.backend.fail_next_jobs(count, reason)

    def fault_next_jobs(
        self,
        count: int = 1,
        *,
        import_status: ImportStatusFault = "normal",
        pending_polls: int = 1,
        errors_file: ErrorsFileFault = "normal",
        fail_reason: str | None = None,
    ) -> JobFault:
        """The next ``count`` jobs created misbehave so (see ``faults.JobFault``)."""
        fault = JobFault(import_status, pending_polls, errors_file, fail_reason)
        return self.backend.job_faults.add(fault, count)

    def limit_upsert_body(
        self, max_bytes: int, *, answer: int = 413, message: str = BodyLimit.message
    ) -> None:
        """Refuse ``PUT /v3/marketing/contacts`` bodies over ``max_bytes`` (413, or 400)."""
        self._api.body_limit = BodyLimit(max_bytes, answer, message)

    def clear_upsert_body_limit(self) -> None:
        """Back to the documented 6,000,000 bytes and 413."""
        self._api.body_limit = BodyLimit()

    def process_jobs(self) -> int:
        """Apply every pending job now (in ``job_order``); the number applied."""
        return self.backend.process_all()

    def add_custom_field(self, name: str, field_type: FieldType = "Text") -> str:
        """Create a custom field as the API would; its new ID (``e1_T``...)."""
        try:
            return self.backend.create_field(name, field_type).id
        except ApiError as refused:
            raise ValueError(refused.message) from None

    def add_list(self, name: str, *, allow_duplicate_name: bool = False) -> str:
        """Create a list as the API would (``ValueError`` if refused); its new ID.

        ``allow_duplicate_name`` seeds a second list of an existing name, which the API
        refuses by default but an account can still hold.
        """
        try:
            return self.backend.create_list(name, allow_duplicate_name).id
        except ApiError as refused:
            raise ValueError(refused.message) from None

    def delete_list(self, list_id: str, *, delete_contacts: bool = False) -> None:
        """Delete a list as ``DELETE /v3/marketing/lists/{id}`` would (someone in the UI):
        no contact holds it any more; with ``delete_contacts`` a job deletes its contacts.
        ``ValueError`` for an unknown list."""
        try:
            self.backend.delete_list(list_id, delete_contacts=delete_contacts)
        except ApiError as refused:
            raise ValueError(refused.message) from None

    # -- introspection ------------------------------------------------------------------

    def contacts(self) -> list[dict[str, Any]]:
        """Stored contacts as ``ContactDetails3`` (custom_fields keyed by field ID)."""
        return contacts_view(self.backend)

    def contact(self, email: str) -> dict[str, Any] | None:
        found = self.backend.contact_by_email(email)
        return found.details() if found else None

    @property
    def requests(self) -> list[RecordedRequest]:
        return self._recorder.all()

    def clear_requests(self) -> None:
        self._recorder.clear()

    def jobs(self) -> list[dict[str, Any]]:
        """Every job as the imports route shows it, plus ``contact_count``."""
        return jobs_view(self.backend, self.base_url)
