"""Following import jobs to their end and recording what happened to each contact.

A 202 only means "queued". ``JobTracker.wait(job_ids)`` polls each job until its status is
completed, errored or failed (never on counts: they can rise while still pending), with a
growing interval and an overall limit; a job still pending at the limit stays pending in the
state and is picked up by the next run. For errored and failed jobs the pre-signed
``errors_url`` is downloaded (without the API key), each row matched to a contact key, and
those contacts marked failed with SendGrid's reason, so the next run sends them again. When
the errors cannot be fetched, or match fewer contacts than the job errored, the job's other
contacts are marked unconfirmed: also sent again, since we cannot tell which ones failed.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa

from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.api.models import ImportJob
from sendgrid_destination.clock import Clock
from sendgrid_destination.errors import SendGridError
from sendgrid_destination.redaction import redact
from sendgrid_destination.state import ContactStatus, StateStore

logger = logging.getLogger("sendgrid_destination.jobs")

# Columns of the errors CSV that carry an identifier, and the contact-key prefix of each
# (the CSV layout is undocumented; these are the ones Castled's connector reads).
_ERROR_ID_COLUMNS = {
    "primary_email": "email",
    "email": "email",
    "phone_number_id": "phone_number_id",
    "external_id": "external_id",
    "anonymous_id": "anonymous_id",
}
_REASON_COLUMNS = ("errors_occurred", "error", "errors", "reason")
MAX_POLL_INTERVAL = 30.0


@dataclass
class JobsOutcome:
    statuses: Counter[str] = field(default_factory=Counter)
    failed_by_reason: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    unconfirmed: int = 0


@dataclass
class JobTracker:
    client: SendGridClient
    store: StateStore
    clock: Clock
    poll_interval: float = 3.0
    wait_timeout: float = 600.0

    def wait(self, job_ids: list[str], run_id: str) -> JobsOutcome:
        outcome = JobsOutcome()
        pending = list(dict.fromkeys(job_ids))
        deadline = self.clock.now() + self.wait_timeout
        interval = self.poll_interval
        while pending:
            pending = [j for j in pending if not self._poll_once(j, run_id, outcome)]
            remaining = deadline - self.clock.now()
            if not pending or remaining <= 0:
                break
            self.clock.sleep(min(interval, remaining))
            interval = min(interval * 1.5, MAX_POLL_INTERVAL)
        if pending:
            outcome.statuses["pending"] += len(pending)
            logger.warning(
                "%d import job(s) still pending after %.0f s; the next run will follow them up",
                len(pending),
                self.wait_timeout,
            )
        return outcome

    def _poll_once(self, job_id: str, run_id: str, outcome: JobsOutcome) -> bool:
        job = self.client.import_status(job_id)
        if not job.is_terminal:
            return False
        self._finish(job, run_id, outcome)
        outcome.statuses[job.status] += 1
        return True

    def _finish(self, job: ImportJob, run_id: str, outcome: JobsOutcome) -> None:
        failed, rest_status, note = None, ContactStatus.ACCEPTED, None
        if job.status in ("errored", "failed"):
            failed, rest_status, note = self._failures(job)
        self.store.record_job_outcome(
            _job_row(job), failed=failed, contacts_status=rest_status, note=note
        )
        self.store.record_job_failures_as_rejects(run_id=run_id, job_id=job.id)
        for reason, n in self.store.job_failure_reasons(job.id).items():
            outcome.failed += n
            outcome.failed_by_reason[redact(reason)] += n
        if rest_status == ContactStatus.UNCONFIRMED:
            outcome.unconfirmed += self.store.job_contact_count(job.id, ContactStatus.UNCONFIRMED)

    def _failures(self, job: ImportJob) -> tuple[pa.Table | None, ContactStatus, str | None]:
        if not job.errors_url:
            return None, ContactStatus.UNCONFIRMED, f"{job.status} without errors_url"
        try:
            rows = self.client.download_errors(job.errors_url)
        except SendGridError as exc:
            logger.warning("could not fetch the errors of job %s: %s", job.id, exc)
            return None, ContactStatus.UNCONFIRMED, "errors_url could not be fetched"
        failed = _failed_contacts(rows)
        if len(rows) < job.errored_count:
            return (
                failed,
                ContactStatus.UNCONFIRMED,
                "errors file names fewer contacts than errored_count",
            )
        return failed, ContactStatus.ACCEPTED, None


def _failed_contacts(rows: list[dict[str, str]]) -> pa.Table:
    """contact_key (every identifier the row names) and reason, one row per key."""
    reasons: dict[str, str] = {}  # a key once, even if two columns or rows name it
    for row in rows:
        reason = next((row[c] for c in _REASON_COLUMNS if row.get(c)), "failed in import job")
        for column, prefix in _ERROR_ID_COLUMNS.items():
            value = (row.get(column) or "").strip()
            if value:
                reasons[f"{prefix}:{value.lower() if prefix == 'email' else value}"] = reason
    return pa.table(
        {
            "contact_key": pa.array(list(reasons), pa.string()),
            "reason": pa.array(list(reasons.values()), pa.string()),
        }
    )


def _job_row(job: ImportJob) -> dict[str, object]:
    return {
        "id": job.id,
        "status": job.status,
        "created_count": job.created_count,
        "updated_count": job.updated_count,
        "errored_count": job.errored_count,
        "errors_url": None,
    }
