"""The run's counters, bumped in one place: each event of a sync is one method here.

``Tally(run_id, stream)`` keeps two ``RunSummary`` parts, because dlt may run one file several
times (a retried load job) and each row must be counted once across the attempts:

* ``plan``: what the file's rows are (read, replaced by a later row, rejected by the checks,
  unchanged, held back): every attempt reads the whole file, so the last attempt's counts
  replace the earlier ones';
* ``sent``: what this attempt did on the wire (contacts accepted as new, changed or retried,
  requests, bytes, refusals, jobs settled): attempts add up.

A contact is counted new, changed or retried when SendGrid accepts it (202), not when it is
rendered, so rows an attempt rendered but never sent are counted by the attempt that sends
them; rows an earlier attempt sent are "unchanged" to the next one and are not counted again.
SendGrid's refusals (a 400 naming a row, a job failing a contact) are counted by the attempt
that met them, and, for the run, as they stand in the state at the end of each attempt
(``settle_refusals``): a later attempt that sends the contact again supersedes its refusal.
SendGrid's reasons go through ``api.messages.reason``: they become log lines and summary keys,
so they carry its wording and never a value it echoed; the checks' own reasons never hold one.
"""

from __future__ import annotations

import logging
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc

from sendgrid_destination.api.messages import is_permanent, reason
from sendgrid_destination.import_jobs import JobsOutcome
from sendgrid_destination.plan import PlanCounts
from sendgrid_destination.state.store import SentLists
from sendgrid_destination.summary import RunSummary

logger = logging.getLogger("sendgrid_destination.jobs")


class Tally:
    def __init__(self, run_id: str, stream: str) -> None:
        self.plan = RunSummary(run_id, stream)
        self.sent = RunSummary(run_id, stream)
        self._pending_jobs: set[str] = set()

    @property
    def summary(self) -> RunSummary:
        """This attempt's counts, both parts together."""
        both = RunSummary.from_dict(self.plan.as_dict())
        both.merge(self.sent)
        return both

    # -- what the rows are (the last attempt's counts stand) ---------------------------------

    def planned(self, counts: PlanCounts) -> None:
        self.plan.rows_read += counts.rows_read
        self.plan.superseded += counts.superseded
        self.plan.unchanged += counts.unchanged - counts.sent_earlier - counts.waiting_for_change
        self.plan.waiting_for_change += counts.waiting_for_change
        self.plan.flagged += counts.flagged

    def found_unchanged(self, contacts: int) -> None:
        self.plan.unchanged += contacts

    def found_waiting(self, contacts: int) -> None:
        """Rendered, and found to be the JSON SendGrid refused for good: not sent."""
        self.plan.waiting_for_change += contacts

    def note(self, text: str) -> None:
        self.plan.notes.append(text)

    def held_back(self, contacts: int) -> None:
        self.plan.deferred += contacts

    def left_waiting(self, contacts: int) -> None:
        self.plan.waiting = contacts

    def refused_by_checks(self, rejects: pa.Table) -> None:
        self.plan.rejected += _rows(rejects)
        _add_reasons(self.plan, rejects, ours=True)

    def omitted_fields(self, omitted: pa.Table) -> None:
        """Fields left out of contacts that were sent (``on_invalid_value = "omit_field"``)."""
        self.plan.omitted += omitted.num_rows
        for text, n in _reason_counts(omitted):
            self.plan.omitted_by_reason[text] += n

    # -- what this attempt did (attempts add up) ---------------------------------------------

    def accepted(self, contacts: pa.Table, body_bytes: int) -> None:
        """An upsert's 202."""
        self._sent(contacts, body_bytes)
        self.sent.requests += 1

    def imported(self, contacts: pa.Table, file_bytes: int) -> None:
        """A CSV import's file, taken by its upload URL."""
        self._sent(contacts, file_bytes)
        self.sent.imports += 1

    def _sent(self, contacts: pa.Table, nbytes: int) -> None:
        new = _true_count(contacts["is_new"])
        retried = _true_count(pc.and_(contacts["retry"], pc.invert(contacts["is_new"])))
        s = self.sent
        s.new += new
        s.retried += retried
        s.changed += contacts.num_rows - new - retried
        s.bytes_sent += nbytes
        s.contacts_sent += contacts.num_rows

    def judged(self, *, left: int, not_deleted: int, waiting: int) -> None:
        """What became of the contacts whose rows left, or are flagged (``deletions``)."""
        self.plan.left_source = left
        self.plan.not_deleted = not_deleted
        self.plan.removals_waiting = waiting

    def over_delete_limit(self, contacts: int) -> None:
        self.plan.over_delete_limit = contacts

    def listed(self, lists: SentLists) -> None:
        self.sent.list_additions += lists.joined

    def already_gone(self, contacts: int) -> None:
        self.sent.already_gone += contacts

    def not_found_yet(self, contacts: int) -> None:
        """Contacts to remove that SendGrid's search missed once: the next load looks again."""
        self.sent.removals_waiting += contacts

    def removal_sent(self, *, deleted: bool, contacts: int) -> None:
        self.sent.removal_requests += 1
        if deleted:
            self.sent.deleted += contacts
        else:
            self.sent.list_removals += contacts

    def followed_elsewhere(self, kind: str, table: str, statuses: Counter[str]) -> None:
        """Jobs another table sent, followed by this load because a contact may be in both:
        said in a note, counted in that table's state only."""
        if not statuses:
            return
        ended = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
        text = (
            f"waited for {statuses.total()} {kind} job(s) of table '{table}' to end ({ended}): "
            "not counted here; `sendgrid-destination rejects` lists any contacts they failed "
            "under the run that sent them"
        )
        logger.info("%s", text)
        self.sent.notes.append(text)  # an attempt's event: a retry need not meet it again

    def removal_job_ended(self, status: str) -> None:
        self.sent.removal_jobs[status] += 1

    def removal_jobs_pending(self, jobs: int) -> None:
        self.sent.removal_jobs.pop("pending", None)
        if jobs:
            self.sent.removal_jobs["pending"] = jobs

    def refused_requests(self, requests: int, nbytes: int) -> None:
        self.sent.refused_requests += requests
        self.sent.refused_bytes += nbytes

    def refused_by_api(self, rejects: pa.Table) -> None:
        self.sent.rejected_by_api += _rows(rejects)
        _add_reasons(self.sent, rejects, ours=False)

    def jobs_settled(self, outcome: JobsOutcome) -> None:
        for table, theirs in sorted(outcome.elsewhere.items()):
            self.followed_elsewhere("import", table, theirs.statuses)
        # A job is counted once: finished, or (waited for more than once) still pending.
        self.sent.jobs.update(outcome.statuses)
        self._pending_jobs.update(outcome.still_pending)
        self._pending_jobs.difference_update(outcome.finished)
        self.sent.jobs.pop("pending", None)
        if self._pending_jobs:
            self.sent.jobs["pending"] = len(self._pending_jobs)
        self.sent.failed_in_jobs += outcome.failed
        self.sent.failed_for_good += outcome.failed_for_good
        self.sent.failed_by_reason.update(outcome.failed_by_reason)
        self.sent.unconfirmed += outcome.unconfirmed


def settle_refusals(
    run: RunSummary, attempts: list[RunSummary], standing: tuple[int, list[tuple[str, str, int]]]
) -> None:
    """Add the run's attempts' ``sent`` counts to ``run``, their refusals replaced by those
    standing in the state (``StateStore.refusals``): a row refused in one attempt and
    accepted in a later one is not counted refused, and one refused in both counts once."""
    for attempt in attempts:
        attempt.rejected_by_api = attempt.failed_in_jobs = attempt.failed_for_good = 0
        attempt.rejected_by_reason.clear()  # a sent part's reasons are SendGrid's only
        attempt.failed_by_reason.clear()
        run.merge(attempt)
    api_rows, by_reason = standing
    run.rejected_by_api += api_rows
    for stage, raw, n in by_reason:
        if stage == "api":
            run.rejected_by_reason[reason(raw)] += n
            continue
        run.failed_in_jobs += n
        run.failed_for_good += n if is_permanent(raw) else 0
        run.failed_by_reason[reason(raw)] += n


def _rows(rejects: pa.Table) -> int:
    return int(pc.count_distinct(rejects["row_number"]).as_py()) if rejects.num_rows else 0


def _add_reasons(summary: RunSummary, rejects: pa.Table, *, ours: bool) -> None:
    """Count rejects by reason: ours carry no value already; SendGrid's lose what it echoed."""
    for text, n in _reason_counts(rejects):
        summary.rejected_by_reason[text if ours else reason(text)] += n


def _reason_counts(rejects: pa.Table) -> list[tuple[str, int]]:
    if rejects.num_rows == 0:
        return []
    counts = rejects.group_by("reason").aggregate([("row_number", "count")])
    return [
        (str(text), int(n))
        for text, n in zip(
            counts["reason"].to_pylist(), counts["row_number_count"].to_pylist(), strict=True
        )
    ]


def _true_count(mask: pa.Array | pa.ChunkedArray) -> int:
    return int(pc.sum(mask).as_py() or 0)
