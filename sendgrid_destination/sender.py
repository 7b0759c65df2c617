"""Sending one body until every contact in it is either accepted or rejected with a reason.

One bad contact makes SendGrid refuse the whole request with a 400, so a body is never
dropped whole:

* errors naming contacts (``contacts[3].identifier``) reject exactly those contacts, with
  SendGrid's message, and the rest is re-sent;
* errors naming no contact split the body in halves until the culprit is alone, within a
  budget of about 2*log2(n) splits per body (enough to find one culprit): beyond it, a part
  still refused is rejected whole with SendGrid's reason, instead of one request per contact;
  except the request-level ones (invalid JSON, unknown lists), which no split can fix and
  which stop the load (terminal);
* a body refused as too large (a 413, or a message saying so: some accounts enforce less
  than the documented 6 MB) goes again as two halves, and the smaller budget is reported
  (``SendOutcome.learned_max_bytes``) so that the following bodies are packed to it;
* ``invalid custom field ids`` (whether or not SendGrid names contacts) naming fields that
  field_definitions still lists means a new field is not ready yet: the same body is retried
  with backoff until ``custom_field_ready_timeout`` (then a transient error, so dlt retries);
  naming a field that is gone, it stops the load (terminal), since every contact carrying the
  field would fail the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import pyarrow as pa

from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.api.messages import (
    is_permanent,
    is_request_level,
    refused_custom_field_ids,
)
from sendgrid_destination.clock import Clock
from sendgrid_destination.dispatch import carry_outcome
from sendgrid_destination.errors import (
    BodyTooLargeError,
    ContactsRejectedError,
    CustomFieldsNotReadyError,
    RequestRejectedError,
)
from sendgrid_destination.packing import Body, encode_body
from sendgrid_destination.redaction import redact

T = TypeVar("T")
# The longest single wait for a new custom field; SendGrid takes seconds to a minute or two.
_MAX_FIELD_WAIT_SECONDS = 15.0
# The reason of a contact refused as too large when sent alone (``_too_large``).
_TOO_LARGE_ALONE = "request body too large even for this contact alone"


@dataclass
class SendOutcome:
    # (job id, contacts, body bytes) of each accepted request
    accepted: list[tuple[str, pa.Table, int]] = field(default_factory=list)
    # row_number, contact_key, column, reason of each contact SendGrid refused
    rejected: list[pa.Table] = field(default_factory=list)
    # A smaller byte budget learned from a "too large" refusal (None: the budget held).
    learned_max_bytes: int | None = None
    # Requests SendGrid refused (400, 413) and their bytes: they went out all the same.
    refused_requests: int = 0
    refused_bytes: int = 0


@dataclass
class BodySender:
    client: SendGridClient
    clock: Clock
    field_ready_timeout: float = 120.0

    def send(self, body: Body) -> SendOutcome:
        outcome = SendOutcome()
        queue = [body.contacts]
        # Splits to find contacts a 400 does not name: one culprit among n costs about
        # 2*log2(n) requests; beyond this, the rest of a refused part is rejected whole.
        splits_left = 2 * max(1, math.ceil(math.log2(max(body.contact_count, 2)))) + 2
        try:
            self._send_parts(body, queue, outcome, splits_left)
        except BaseException as exc:
            # Parts accepted before the failure are recorded all the same (their contacts
            # must not be sent again, their jobs must be followed).
            carry_outcome(exc, outcome)
            raise
        return outcome

    def _send_parts(
        self, body: Body, queue: list[pa.Table], outcome: SendOutcome, splits_left: int
    ) -> None:
        while queue:
            contacts = queue.pop()
            data = body.data if contacts is body.contacts else encode_body(body.prefix, contacts)
            try:
                job_id = self._upsert(data)
            except ContactsRejectedError as exc:
                outcome.refused_requests += 1
                outcome.refused_bytes += len(data)
                parts = self._handle_rejection(exc, contacts, outcome, may_split=splits_left > 0)
                splits_left -= len(parts) > 1
                queue.extend(reversed(parts))
                continue
            except BodyTooLargeError:
                outcome.refused_requests += 1
                outcome.refused_bytes += len(data)
                queue.extend(reversed(_too_large(contacts, len(data), outcome)))
                continue
            outcome.accepted.append((job_id, contacts, len(data)))

    def _handle_rejection(
        self,
        exc: ContactsRejectedError,
        contacts: pa.Table,
        outcome: SendOutcome,
        *,
        may_split: bool = True,
    ) -> list[pa.Table]:
        """Record what the 400 rejected; return what should be sent again, in order."""
        if _refused_custom_field_ids(exc):
            raise RequestRejectedError(
                "SendGrid refused custom field IDs that are no longer defined: "
                f"{redact(exc.errors[0].message)}. A custom field was probably deleted in "
                "SendGrid during the load; rerun to resolve the names again.",
                status=exc.status,
                route=exc.route,
            ) from exc
        by_index = exc.errors_by_contact()
        bad = sorted(i for i in by_index if 0 <= i < contacts.num_rows)
        if bad:
            reasons = ["; ".join(e.message for e in by_index[i]) for i in bad]
            outcome.rejected.append(_rejects(contacts.take(pa.array(bad, pa.int64())), reasons))
            keep = np.ones(contacts.num_rows, dtype=bool)
            keep[bad] = False
            rest = contacts.filter(pa.array(keep))
            return [rest] if rest.num_rows else []
        # No error names a contact of this body (none at all, or only out-of-range indexes):
        # split until the culprit is alone.
        messages = [e.message for e in exc.errors] or [exc.message]
        if any(is_request_level(m) for m in messages):
            raise RequestRejectedError(
                f"SendGrid refused the request as a whole: {redact('; '.join(messages))}. "
                "Check list_ids against the account.",
                status=exc.status,
                route=exc.route,
            ) from exc
        if contacts.num_rows == 1 or not may_split:
            reason = "; ".join(messages)
            outcome.rejected.append(_rejects(contacts, [reason] * contacts.num_rows))
            return []
        half = contacts.num_rows // 2
        return [contacts.slice(0, half), contacts.slice(half)]

    def _upsert(self, data: bytes) -> str:
        """PUT the body; while SendGrid refuses custom fields it still lists, wait and retry.

        A field created moments ago (by this run, or by an earlier attempt of this load that
        dlt is retrying) is listed by field_definitions but refused by upserts for a while.
        """

        def not_ready(exc: RequestRejectedError) -> bool:
            if not isinstance(exc, ContactsRejectedError):
                return False
            refused = _refused_custom_field_ids(exc)
            return bool(refused) and refused <= self._defined_custom_field_ids()

        return until_custom_fields_ready(
            lambda: self.client.upsert_contacts(data),
            not_ready,
            self.clock,
            self.field_ready_timeout,
        )

    def _defined_custom_field_ids(self) -> set[str]:
        return {f.id for f in self.client.field_definitions().custom}


def until_custom_fields_ready(
    call: Callable[[], T],
    not_ready: Callable[[RequestRejectedError], bool],
    clock: Clock,
    timeout: float,
    where: str = "",
) -> T:
    """``call()``, called again with backoff while it is refused for custom fields that
    ``not_ready`` says exist but are not usable yet, for up to ``timeout`` seconds; then
    ``CustomFieldsNotReadyError`` (transient: dlt retries the load). ``where`` names the
    request kind in that message (`` in CSV imports``)."""
    deadline = clock.now() + timeout
    wait = 1.0
    while True:
        try:
            return call()
        except RequestRejectedError as exc:
            if not not_ready(exc):
                raise
            if clock.now() >= deadline:
                raise CustomFieldsNotReadyError(
                    f"SendGrid still refuses newly created custom fields{where} after "
                    f"{timeout:.0f} s; rerun later or raise custom_field_ready_timeout.",
                    status=exc.status,
                    route=exc.route,
                ) from exc
            clock.sleep(min(wait, max(0.0, deadline - clock.now())))
            wait = min(wait * 2, _MAX_FIELD_WAIT_SECONDS)


def _too_large(contacts: pa.Table, body_bytes: int, outcome: SendOutcome) -> list[pa.Table]:
    """SendGrid refused ``body_bytes`` as too large (its real limit is below the documented
    6 MB): the byte budget halves and the contacts go again in two bodies; a contact too large
    even alone is refused as a row. Never terminal."""
    if contacts.num_rows == 1:  # says nothing of the budget: only of this contact
        reason = f"{_TOO_LARGE_ALONE} ({body_bytes:,} bytes)"
        outcome.rejected.append(_rejects(contacts, [reason]))
        return []
    budget = body_bytes // 2
    outcome.learned_max_bytes = min(outcome.learned_max_bytes or budget, budget)
    half = contacts.num_rows // 2
    return [contacts.slice(0, half), contacts.slice(half)]


def _refused_custom_field_ids(exc: ContactsRejectedError) -> set[str]:
    return refused_custom_field_ids(e.message for e in exc.errors)


def _rejects(contacts: pa.Table, reasons: list[str]) -> pa.Table:
    """``REJECTS`` rows of refused contacts, with their ``fingerprint`` and ``content_hash``
    (``for_good``)."""
    return pa.table(
        {
            "row_number": contacts["row_number"],
            "contact_key": contacts["contact_key"],
            "column": pa.nulls(contacts.num_rows, pa.string()),
            "reason": pa.array(reasons, pa.string()),
            "fingerprint": contacts["fingerprint"],
            "content_hash": contacts["content_hash"],
        }
    )


def for_good(rejected: pa.Table) -> pa.Table:
    """Of the contacts a 400 refused (``SendOutcome.rejected``), those the same row can only
    be refused again for: a value SendGrid refuses, a missing identifier, a contact too
    large even alone. Their rows wait for a change of their data (the state's ``refused``)."""
    keep = [
        is_permanent(text) or text.startswith(_TOO_LARGE_ALONE)
        for text in rejected["reason"].to_pylist()
    ]
    return rejected.filter(pa.array(keep, pa.bool_()))
