"""What a run did, as counters: kept in the runs table, logged, and printed by the demo.

The summary holds counts and reasons only, never a key or a value, so it is safe to log.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

# The attribute that marks the log record of a load's summary, for a handler that prints the
# summary itself (the CLI) and leaves that record out.
SUMMARY_LOG = "sendgrid_summary"
_COUNTERS = ("rejected_by_reason", "omitted_by_reason", "jobs", "failed_by_reason", "removal_jobs")


@dataclass
class RunSummary:
    run_id: str
    stream: str
    rows_read: int = 0
    superseded: int = 0  # rows replaced by a later row with the same contact key
    new: int = 0
    changed: int = 0
    retried: int = 0  # sent again because their last send failed in its job or is unconfirmed
    unchanged: int = 0
    # Rows whose last send SendGrid refused for good (a missing identifier, a value it
    # refuses), unchanged since: not sent again until their data changes.
    waiting_for_change: int = 0
    deferred: int = 0  # held back behind a pending job carrying the contact's previous version
    waiting: int = 0  # of those (and of earlier runs'), left for a later run to send
    rejected: int = 0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    # on_invalid_value = "omit_field": fields left out of contacts that were sent anyway
    omitted: int = 0
    omitted_by_reason: Counter[str] = field(default_factory=Counter)
    contacts_sent: int = 0
    requests: int = 0
    imports: int = 0  # CSV imports (files) accepted; their bytes are in bytes_sent
    bytes_sent: int = 0
    rejected_by_api: int = 0
    # Requests SendGrid refused (a 400 naming contacts, a body too large), and their bytes:
    # not in requests and bytes_sent (accepted ones), sent all the same.
    refused_requests: int = 0
    refused_bytes: int = 0
    jobs: Counter[str] = field(default_factory=Counter)
    failed_in_jobs: int = 0
    failed_for_good: int = 0  # of failed_in_jobs: not resent until the row changes
    failed_by_reason: Counter[str] = field(default_factory=Counter)
    unconfirmed: int = 0
    notes: list[str] = field(default_factory=list)  # schema drift and the like
    # The table was not loaded: its configuration is wrong (the message says what to fix).
    error: str | None = None
    # The latest attempt failed, or was stopped, part-way (``failure_text``): the counts are
    # of what it did before; rows it did not get to are in none of them (the next attempt,
    # dlt's retry or the next run, sends them).
    failed: str | None = None
    # Lists (per contact and list) and removals; see ``deletions``.
    list_additions: int = 0  # lists contacts were put in by accepted upserts
    list_removals: int = 0  # contacts SendGrid accepted to remove from a list (per list)
    flagged: int = 0  # rows the hard_delete column flags (last row of their contact)
    left_source: int = 0  # contacts of a table loaded whole whose rows are gone
    deleted: int = 0  # contacts SendGrid accepted to delete
    not_deleted: int = 0  # left or flagged, but not created by this sync: kept in SendGrid
    # Left or flagged, a job carrying them not ended, or not found by SendGrid's search yet
    # (it lags behind jobs): the next load decides them.
    removals_waiting: int = 0
    already_gone: int = 0  # left or flagged, no longer in SendGrid
    removal_requests: int = 0  # DELETE requests (deletions and list removals) accepted
    removal_jobs: Counter[str] = field(default_factory=Counter)
    # More contacts to delete or remove than the limits allow (the load stopped, or a plan
    # reports that a real load would).
    over_delete_limit: int = 0
    # A plan only: the rows refused, when more than fail_on_rejects allows (the load would fail).
    over_rejects_limit: int = 0
    plan: bool = False  # a dry run: nothing was written to SendGrid or to the state file

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in _COUNTERS:
            data[key] = dict(getattr(self, key))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        counters = {k: Counter(data.get(k) or {}) for k in _COUNTERS}
        summary = cls(run_id=str(data["run_id"]), stream=str(data["stream"]))
        for name, value in data.items():
            if name not in ("run_id", "stream"):
                setattr(summary, name, counters.get(name, value))
        return summary

    def merge(self, other: RunSummary) -> None:
        """Add another file's counters of the same run into this one."""
        for name, value in vars(other).items():
            if name in ("run_id", "stream"):
                continue
            current = getattr(self, name)
            if name == "notes":
                value = [n for n in value if n not in current]
            if name in ("error", "plan", "failed"):
                setattr(self, name, current or value)
                continue
            setattr(self, name, current + value)

    def format(self) -> str:
        """A few readable lines (no keys, no values)."""
        if self.error:
            return f"run {self.run_id} ({self.stream}): NOT LOADED: {self.error}"
        lines = [
            f"run {self.run_id} ({self.stream}): "
            + (f"FAILED part-way ({self.failed}); before that: " if self.failed else "")
            + f"{self.rows_read} rows read; "
            f"{self.new} new, {self.changed} changed, "
            + (f"{self.retried} retried (failed before), " if self.retried else "")
            + f"{self.unchanged} unchanged (skipped)"
            + (f", {self.superseded} replaced by a later row" if self.superseded else ""),
            f"  {self._sent} {_count(self.contacts_sent, 'contact')} in "
            f"{_count(self.requests, 'request')}"
            + (f" and {_count(self.imports, 'CSV import')}" if self.imports else "")
            + f" ({self.bytes_sent:,} bytes)",
            f"  {'would be rejected' if self.plan else 'rejected before SendGrid accepted them'}: "
            f"{self.rejected + self.rejected_by_api}",
        ]
        if self.refused_requests:
            lines.insert(
                2,
                f"  refused by SendGrid: {_count(self.refused_requests, 'request')} "
                f"({self.refused_bytes:,} bytes); their other contacts were sent again",
            )
        lines += [f"    {n} x {reason}" for reason, n in self.rejected_by_reason.most_common()]
        if self.omitted:
            lines.append(f"  fields left out of contacts sent (omit_field): {self.omitted}")
            lines += [f"    {n} x {reason}" for reason, n in self.omitted_by_reason.most_common()]
        if not self.plan:  # a plan's jobs are its own stand-ins: they say nothing
            jobs = ", ".join(f"{n} {s}" for s, n in sorted(self.jobs.items()) if n) or "none"
            lines.append(f"  jobs: {jobs}")
            lines.append(
                f"  contacts failed in jobs: {self.failed_in_jobs} "
                f"({self.failed_in_jobs - self.failed_for_good} will be retried, "
                f"{self.failed_for_good} wait for a change in their data)"
            )
        if self.waiting_for_change:
            lines.append(
                f"  not sent, refused before and unchanged since: {self.waiting_for_change}"
            )
        lines += [f"    {n} x {reason}" for reason, n in self.failed_by_reason.most_common()]
        if self.deferred or self.waiting:
            lines.append(
                f"  held back behind a pending job: {self.deferred}; "
                f"left for a later run: {self.waiting}"
            )
        lines += [f"  note: {note}" for note in self.notes]
        if self.unconfirmed:
            lines.append(f"  contacts unconfirmed (job errors unreadable): {self.unconfirmed}")
        return "\n".join(self._plan_header() + lines + self._removal_lines())

    @property
    def _sent(self) -> str:
        return "would send" if self.plan else "sent"

    def stops(self) -> str | None:
        """Why a load would fail (a plan's finding), else None."""
        reasons = []
        if self.over_delete_limit:
            reasons.append(
                f"it would stop before sending anything: {self.over_delete_limit} contacts to "
                f"delete or remove from table {self.stream!r} exceed max_deletes / "
                "max_delete_fraction"
            )
        if self.over_rejects_limit:
            reasons.append(
                f"it would send the good rows, then fail: {self.over_rejects_limit} rows of "
                f"table {self.stream!r} would be refused, more than fail_on_rejects allows"
            )
        return "; ".join(reasons) or None

    def _plan_header(self) -> list[str]:
        if not self.plan:
            return []
        return ["PLAN (dry run): nothing was sent to SendGrid or written to the state file"]

    def _removal_lines(self) -> list[str]:
        lines = []
        deleted = "would delete" if self.plan else "deleted"
        if self.list_additions or self.list_removals:
            lines.append(f"  lists: {self.list_additions} additions, {self.list_removals} removals")
        if self.left_source or self.flagged:
            lines.append(
                f"  left the source: {self.left_source}; flagged as deleted: {self.flagged}; "
                f"{deleted} {self.deleted}, kept (not created by this sync) {self.not_deleted}, "
                f"already gone {self.already_gone}, waiting for a job or a search "
                f"{self.removals_waiting}"
            )
        elif self.deleted:
            lines.append(f"  {deleted}: {self.deleted}")
        if (self.removal_requests or self.removal_jobs) and not self.plan:
            jobs = ", ".join(f"{n} {s}" for s, n in sorted(self.removal_jobs.items()) if n)
            lines.append(
                f"  removal requests: {self.removal_requests}; removal jobs: {jobs or 'none'}"
            )
        if self.over_delete_limit and self.plan:
            lines.append(
                "  a load would STOP here, sending and deleting nothing: "
                f"{self.over_delete_limit} contacts to delete or remove exceed max_deletes / "
                "max_delete_fraction (the counts above are what it does once force_deletes = "
                "true allows it)"
            )
        elif self.over_delete_limit:
            lines.append(
                f"  STOPPED: {self.over_delete_limit} contacts to delete or remove exceed "
                "max_deletes / max_delete_fraction (force_deletes = true allows it once)"
            )
        if self.over_rejects_limit:
            lines.append(
                f"  a load would send the good rows, then FAIL: {self.over_rejects_limit} rows "
                "refused, more than fail_on_rejects allows"
            )
        return lines


def _count(n: int, noun: str) -> str:
    """``1 contact``, ``2 contacts``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
