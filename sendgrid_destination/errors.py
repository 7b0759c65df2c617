"""Errors raised by the SendGrid destination, and what dlt's loader does with each.

* SendGridError
  x SendGridTerminalError            dlt marks the load job failed (not retried in this run)
    - ConfigurationError             bad settings or mapping, found before any request
      - TablesNotLoadedError         tables whose own configuration is wrong (raised once the
                                     load's other tables are loaded; see destination.py)
    - AuthenticationError            401, or a 403 that is not a temporary block
    - RequestRejectedError           a 4xx that retrying cannot fix
      - ImportRejectedError          a 400 on a CSV import request (its ``errors`` kept)
    - StateLockedError               another run holds the state file
    - CorruptStateError              the state file is damaged or was not written by us
    - RejectsThresholdError          fail_on_rejects: too many rows refused (good rows sent)
    - SyncFileError                  a sync file (``sendgrid-destination run``) is wrong
    - DeletionLimitError             more deletions than max_deletes / max_delete_fraction
  x SendGridTransientError           dlt retries the job; a rerun resumes
    - RateLimitedError               429 (or 403 "temporary block") after our own retries
    - ServerError                    5xx after our own retries
    - TransportError                 timeout or dropped connection after our own retries
    - OutcomeUnknownError            a create got no answer (or a 5xx): looked up, not resent
    - CustomFieldsNotReadyError      new custom fields not yet accepted by upserts
    - StoppedError                   a signal (SIGTERM, Ctrl-C) asked the load to stop
    - ErrorsFileUnreadableError      a job's errors file is not a CSV we can match to contacts
    - BodyTooLargeError              413, or a 4xx saying the body is too large: send less
    - RemoteStateError               remote state storage unreachable or refused a transfer
    - UploadRefusedError             a CSV import's upload URL refused the file: a new import

Messages say what to fix. They never contain the API key, an email address or a field value:
row-level detail goes to the rejects table, which the user asks for explicitly.
"""

from __future__ import annotations

from dlt.common.destination.exceptions import (
    DestinationTerminalException,
    DestinationTransientException,
)
from dlt.common.exceptions import DltException


class SendGridError(Exception):
    """Base of every error this package raises."""

    def __init__(self, message: str, *, status: int | None = None, route: str | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.route = route

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, route={self.route!r}, "
            f"message={self.message!r})"
        )


class SendGridTerminalError(SendGridError, DestinationTerminalException):
    """Retrying will not help: a setting, the mapping or the account must change."""


class SendGridTransientError(SendGridError, DestinationTransientException):
    """Retrying later may succeed."""


class ConfigurationError(SendGridTerminalError):
    """A setting or the column mapping is wrong; raised before any request is sent."""


class TablesNotLoadedError(ConfigurationError):
    """Tables of a load were not loaded because their mapping or options are wrong; the other
    tables were. Raised at the end of the load package, once (``destination.settle_tables``)."""


class AuthenticationError(SendGridTerminalError):
    """SendGrid refused the API key (401) or its scopes (403)."""


class RequestRejectedError(SendGridTerminalError):
    """SendGrid answered a 4xx that the same request would get again."""


class _RejectedWithDetails(RequestRejectedError):
    """A 400 whose body lists SendGrid's error entries, kept as ``errors``."""

    def __init__(
        self,
        message: str,
        *,
        errors: list[ApiErrorDetail],
        status: int | None = 400,
        route: str | None = None,
    ) -> None:
        super().__init__(message, status=status, route=route)
        self.errors = errors


class ImportRejectedError(_RejectedWithDetails):
    """A 400 from ``PUT /v3/marketing/contacts/imports``; ``errors`` holds SendGrid's entries
    (raw: a field or a custom field ID they name decides whether waiting can help)."""


class StateLockedError(SendGridTerminalError):
    """Another process holds the state file's lock."""


class CorruptStateError(SendGridTerminalError):
    """The state file cannot be trusted; the message says how to recover."""

    @classmethod
    def duplicate_contact(cls, path: object) -> CorruptStateError:
        return cls(
            f"The state file {path} holds a contact twice; it was not written by this version. "
            "Move it away (the next run then resends every contact once)."
        )


class RejectsThresholdError(SendGridTerminalError):
    """More rows were refused than ``fail_on_rejects`` allows; the good rows were sent."""


class SyncFileError(ConfigurationError):
    """A sync file names an unknown key or a value that is not allowed (the message names the
    key and what is allowed)."""


class SourceError(SendGridTerminalError):
    """The sync file's source could not be read before the pipeline ran (its database down,
    say); the message names the source and what went wrong, without its credentials."""


class DeletionLimitError(SendGridTerminalError):
    """A run would delete (or remove from lists) more contacts than ``max_deletes`` or
    ``max_delete_fraction`` allow; it stopped before any deletion."""


class HostUnreachableError(SendGridTerminalError):
    """No attempt of a call could connect to the host (refused, unknown name, connect
    timeout), within ``connect_timeout × max_attempts``. Terminal: dlt would retry a transient
    error at once, five times, waiting as long each time; the package stays pending and the
    next run resumes it."""


class RateLimitedError(SendGridTransientError):
    """Still rate limited after waiting as the headers asked."""


class ServerError(SendGridTransientError):
    """SendGrid kept answering 5xx."""


class TransportError(SendGridTransientError):
    """Timeouts or dropped connections outlasted the retries."""


class OutcomeUnknownError(SendGridTransientError):
    """A request that is not safe to send twice (a create) got no answer after it was sent,
    or a 5xx: it may have taken effect. The caller looks before sending it again."""


class StoppedError(SendGridTransientError):
    """A signal asked the load to stop: no new body was sent, every accepted one recorded."""


class CustomFieldsNotReadyError(SendGridTransientError):
    """Newly created custom fields were still refused by upserts when the wait ran out."""


class ErrorsFileUnreadableError(SendGridTransientError):
    """A job's errors file could not be read or names no contact we can identify; the job's
    contacts cannot be told apart, so they are unconfirmed and sent again."""


class RemoteStateError(SendGridTransientError):
    """The remote state (an fsspec URL) could not be read or written; the next run tries again
    and resends at most what was accepted since the last upload."""


class BodyTooLargeError(SendGridTransientError):
    """SendGrid refused a request body as too large (a 413, or a 4xx whose message says so).

    The same body would be refused again, a smaller one may pass: whoever sends bodies halves
    its byte budget and sends the contacts again. Neither terminal nor a 400 about contacts;
    left uncaught it is transient, so dlt retries the job.
    """

    def __init__(
        self, message: str, *, body_bytes: int, status: int | None = 413, route: str | None = None
    ) -> None:
        super().__init__(message, status=status, route=route)
        self.body_bytes = body_bytes


class UploadRefusedError(SendGridTransientError):
    """The pre-signed upload URL of a CSV import refused the file (a 4xx or a redirect: the
    URL expired, was used, or its signature was not accepted). The same URL will not take
    it; a new import (a new URL) may. Nothing was recorded, so nothing is lost."""


class ApiErrorDetail:
    """One entry of a SendGrid ``errors`` array: the field it names (if any) and the message.

    The message is SendGrid's raw text and may echo an email address, so it is kept here for
    the rejects table and never copied into an exception message; ``repr`` shows its length.
    """

    __slots__ = ("field", "message")

    def __init__(self, field: str | None, message: str) -> None:
        self.field = field or None
        self.message = message

    @property
    def contact_index(self) -> int | None:
        """The 0-based index into the request's contacts from ``contacts[3].identifier``."""
        if self.field is None or not self.field.startswith("contacts["):
            return None
        index, bracket, _ = self.field[len("contacts[") :].partition("]")
        return int(index) if bracket and index.isdigit() else None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ApiErrorDetail):
            return NotImplemented
        return (self.field, self.message) == (other.field, other.message)

    def __hash__(self) -> int:
        return hash((self.field, self.message))

    def __repr__(self) -> str:
        return f"ApiErrorDetail(field={self.field!r}, message=<{len(self.message)} chars>)"


class ContactsRejectedError(_RejectedWithDetails):
    """A 400 from ``PUT /v3/marketing/contacts``: the whole request was refused.

    One invalid contact fails the whole batch (Segment re-sends the rest), so ``errors`` maps
    back to request indexes; errors naming no contact (bad custom field ids, invalid JSON)
    are in ``unindexed_errors`` and mean the batch itself is wrong.
    """

    def errors_by_contact(self) -> dict[int, list[ApiErrorDetail]]:
        """Errors grouped by the 0-based index of the contact in the request body."""
        by_index: dict[int, list[ApiErrorDetail]] = {}
        for error in self.errors:
            if error.contact_index is not None:
                by_index.setdefault(error.contact_index, []).append(error)
        return by_index

    @property
    def unindexed_errors(self) -> list[ApiErrorDetail]:
        """Errors that name no contact: the request as a whole was wrong."""
        return [error for error in self.errors if error.contact_index is None]


def ours_in(failure: BaseException) -> SendGridError | None:
    """The first of our errors in ``failure``'s chain (dlt wraps what a load raised, e.g. in
    ``PipelineStepFailed``), or None: its message says what to fix. The chain is followed
    through causes, and through the exception being handled only from dlt's own exceptions:
    another error raised while one of ours was handled (a bug) is not ours."""
    current: BaseException | None = failure
    seen: list[BaseException] = []
    while current is not None and current not in seen:
        if isinstance(current, SendGridError):
            return current
        seen.append(current)
        handled = current.__context__ if isinstance(current, DltException) else None
        current = current.__cause__ or handled
    return None
