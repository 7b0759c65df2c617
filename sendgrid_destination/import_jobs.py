"""Following import jobs to their end and recording what happened to each contact.

A 202 only means "queued". ``JobTracker.wait(job_ids)`` polls each job until its status is
completed, errored or failed (never on counts: they can rise while still pending), with a
growing interval and an overall limit; a job still pending at the limit stays pending in the
state and is picked up by the next run. For errored and failed jobs, and a completed one
whose ``errored_count`` is not 0, the pre-signed
``errors_url`` is downloaded (without the API key), each row matched to a contact key, and
those contacts marked failed with SendGrid's reason, so the next run sends them again. When
the errors cannot be read, name rows that match no contact, or match fewer contacts of the job
than it errored, the job's other contacts are marked unconfirmed: also sent again, since we
cannot tell which ones failed.

A job another table sent (followed because a contact may be in both: SendGrid keeps no
order between jobs) is recorded the same way, but its counts go to ``JobsOutcome.elsewhere``,
not to the waiting table's, and its failed contacts are recorded as rejects of the run that
sent it: each table's summary and ``rejects --run`` speak of its own rows only.

Jobs that completed (none of their contacts failed) are recorded ``RECORD_EVERY`` at a time,
in one transaction, and all of them before ``wait`` returns or raises: a transaction per job
was 3-4 ms. A crash before that leaves them pending in the state: the next run asks SendGrid
again.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa

from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.api.errors_file import ErrorsFile
from sendgrid_destination.api.messages import is_permanent, reason
from sendgrid_destination.api.models import ImportJob
from sendgrid_destination.clock import Clock
from sendgrid_destination.errors import (
    ErrorsFileUnreadableError,
    RequestRejectedError,
    SendGridError,
)
from sendgrid_destination.schemas import FAILED_IN_JOB
from sendgrid_destination.state import ContactStatus, StateStore

logger = logging.getLogger("sendgrid_destination.jobs")

MAX_POLL_INTERVAL = 30.0
# Answers to a job's status that say SendGrid does not know it: 404, and 400, which the spec
# gives for a job ID it refuses. Retrying cannot help; the job's outcome is unknown.
UNKNOWN_JOB_STATUSES = (400, 404)
# Completed jobs recorded in one transaction (see the module docstring).
RECORD_EVERY = 50


@dataclass
class JobsOutcome:
    statuses: Counter[str] = field(default_factory=Counter)  # of the jobs that finished
    failed_by_reason: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    failed_for_good: int = 0  # of failed: only a change of the row can fix it
    unconfirmed: int = 0
    finished: list[str] = field(default_factory=list)  # job ids
    still_pending: list[str] = field(default_factory=list)  # job ids at the end of the wait
    confirmed: int = 0  # contacts the finished jobs report as created or updated (progress)
    # Jobs of other tables that ended during the wait, by table: their counts, not ours.
    elsewhere: dict[str, JobsOutcome] = field(default_factory=dict)

    def elsewhere_for(self, stream: str) -> JobsOutcome:
        return self.elsewhere.setdefault(stream, JobsOutcome())


@dataclass
class JobTracker:
    client: SendGridClient
    store: StateStore
    clock: Clock
    poll_interval: float = 3.0
    wait_timeout: float = 600.0
    # A signal asked the load to stop: jobs still pending are left to the next run.
    stop: Callable[[], bool] = lambda: False
    _completed: list[dict[str, object]] = field(default_factory=list, init=False, repr=False)

    def wait(
        self,
        job_ids: list[str],
        run_id: str,
        deadline: float | None = None,
        stream: str | None = None,
    ) -> JobsOutcome:
        """Poll until every job finished or ``deadline`` (default: ``wait_timeout`` from now);
        every job is polled at least once. ``stream``: the waiting table; jobs another table
        sent are counted in ``elsewhere`` (see the module docstring)."""
        outcome = JobsOutcome()
        deadline = self.clock.now() + self.wait_timeout if deadline is None else deadline
        owners = {} if stream is None else self.store.jobs_of_other_tables(job_ids, stream)

        def poll(job_id: str) -> bool:
            if job_id not in owners:
                return self._poll_once(job_id, run_id, outcome)
            sender_run, sender = owners[job_id]
            return self._poll_once(job_id, sender_run, outcome.elsewhere_for(sender))

        try:
            pending = poll_until_done(
                job_ids,
                poll,
                self.clock,
                self.poll_interval,
                deadline,
                self.stop,
            )
        finally:
            self._record_completed()
        if pending:
            outcome.still_pending = [j for j in pending if j not in owners]
            logger.warning(
                "%d import job(s) still pending at the end of the wait (job_wait_timeout %.0f s); "
                "the next run follows them up",
                len(pending),
                self.wait_timeout,
            )
        return outcome

    def _poll_once(self, job_id: str, run_id: str, outcome: JobsOutcome) -> bool:
        try:
            job = self.client.import_status(job_id)
        except RequestRejectedError as exc:
            if exc.status not in UNKNOWN_JOB_STATUSES:
                raise
            self._settle_unknown(job_id, outcome, exc.status)
            outcome.finished.append(job_id)
            return True
        if not job.is_terminal:
            return False
        self._finish(job, run_id, outcome)
        outcome.statuses[job.status] += 1
        outcome.finished.append(job_id)
        outcome.confirmed += job.created_count + job.updated_count
        return True

    def _settle_unknown(self, job_id: str, outcome: JobsOutcome, status: int) -> None:
        """SendGrid answers 404 for the job (expired, or never kept), or 400 (the spec's
        answer for a job ID it refuses): nothing says what became of its contacts, so they
        are unconfirmed and sent again, and the job stops blocking every later run."""
        logger.warning(
            "import job %s is unknown to SendGrid (%d); resending its contacts", job_id, status
        )
        job = ImportJob.from_json({"id": job_id, "status": "unknown"}, job_id)
        self.store.record_job_outcome(
            _job_row(job),
            failed=None,
            contacts_status=ContactStatus.UNCONFIRMED,
            note=f"SendGrid answered {status} for this job",
        )
        outcome.statuses["unknown"] += 1
        outcome.unconfirmed += self.store.job_contact_count(job_id, ContactStatus.UNCONFIRMED)

    def _record_completed(self) -> None:
        self.store.record_job_outcomes(self._completed)
        self._completed.clear()

    def _finish(self, job: ImportJob, run_id: str, outcome: JobsOutcome) -> None:
        if job.status == "completed" and not job.errored_count:
            self._completed.append(_job_row(job))
            if len(self._completed) >= RECORD_EVERY:
                self._record_completed()
            return
        failed, rest_status, note = None, ContactStatus.ACCEPTED, None
        # The status alone does not say every contact made it: a job "completed" with an
        # errored_count failed those (read errored_count whatever the status says).
        if job.status in ("errored", "failed") or job.errored_count:
            failed, rest_status, note = self._failures(job)
        self.store.record_job_outcome(
            _job_row(job), failed=failed, contacts_status=rest_status, note=note
        )
        # Contacts an earlier attempt of this run saw fail are counted once. A job that
        # failed none has nothing to copy (three queries a job saved).
        new_failures: dict[str, int] = {}
        if failed is not None and failed.num_rows:
            new_failures = self.store.record_job_failures_as_rejects(run_id=run_id, job_id=job.id)
        for raw, n in new_failures.items():
            outcome.failed += n
            outcome.failed_for_good += n if is_permanent(raw) else 0
            # Summaries and logs carry SendGrid's wording, never the values it echoes.
            outcome.failed_by_reason[reason(raw)] += n
        if rest_status == ContactStatus.UNCONFIRMED:
            outcome.unconfirmed += self.store.job_contact_count(job.id, ContactStatus.UNCONFIRMED)

    def _failures(self, job: ImportJob) -> tuple[pa.Table | None, ContactStatus, str | None]:
        """The contacts the errors file names, and what the job's other contacts are: accepted
        only when the file accounts for every contact the job errored."""
        if not job.errors_url:
            return None, ContactStatus.UNCONFIRMED, f"{job.status} without errors_url"
        try:
            errors = self.client.fetch_errors_file(job.errors_url)
        except ErrorsFileUnreadableError as exc:
            logger.warning("could not read the errors of job %s: %s", job.id, exc)
            return None, ContactStatus.UNCONFIRMED, "errors file unreadable"
        except SendGridError as exc:
            logger.warning("could not fetch the errors of job %s: %s", job.id, exc)
            return None, ContactStatus.UNCONFIRMED, "errors_url could not be fetched"
        failed = failed_contacts(errors)
        matched = self.store.count_job_contacts(job.id, failed)
        if errors.unmatched_rows or matched < job.errored_count:
            # Rows naming no contact of the job: the job's failures cannot be told apart
            # from its successes, so the others are sent again rather than taken as accepted.
            note = (
                f"errors file matched {matched} of {job.errored_count} errored contacts "
                f"({errors.unmatched_rows} rows named no known identifier)"
            )
            return failed, ContactStatus.UNCONFIRMED, note
        return failed, ContactStatus.ACCEPTED, None


def poll_until_done(
    job_ids: list[str],
    poll: Callable[[str], bool],
    clock: Clock,
    interval: float,
    deadline: float,
    stop: Callable[[], bool],
) -> list[str]:
    """Poll each job (``poll``: has it ended?) until all have ended, ``deadline`` passed or
    ``stop()``, the interval growing x1.5 up to ``MAX_POLL_INTERVAL``; every job is polled
    at least once. Returns the jobs still pending."""
    pending = list(dict.fromkeys(job_ids))
    while pending and not stop():
        pending = [j for j in pending if not poll(j)]
        remaining = deadline - clock.now()
        if not pending or remaining <= 0 or stop():
            break
        clock.sleep(min(interval, remaining))
        interval = min(interval * 1.5, MAX_POLL_INTERVAL)
    return pending


def failed_contacts(errors: ErrorsFile) -> pa.Table:
    """``FAILED_IN_JOB`` rows of an errors file: each contact key it names, with its reason
    and whether only a change of the row can fix it."""
    reasons = list(errors.failed.values())
    return pa.table(
        {
            "contact_key": pa.array(list(errors.failed), pa.string()),
            "reason": pa.array(reasons, pa.string()),
            "permanent": pa.array([is_permanent(r) for r in reasons], pa.bool_()),
        },
        schema=FAILED_IN_JOB,
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
