"""Deletions and list removals: one mechanism for mirror mode, ``replace``, ``hard_delete``
and lists.

What leaves SendGrid, and when:

* a list that a contact's row no longer names (its ``list_column``, or a list taken out of
  the settings): the contact is removed from that list, if this sync put it there (queued
  by ``StateStore.record_sent`` when the row is sent) and no other table's last send of it
  did;
* a contact whose row left a table that is loaded whole (``mode = "membership"`` or
  ``"mirror"``, ``write_disposition = "replace"``), or whose last row the ``hard_delete``
  column flags: deleted when the table deletes (mirror, replace, a flag) and this sync created
  it (``state.schema`` states the rule) and no other table sends it (in the state, or in the
  load's job files still to come: ``tables_to_come``); otherwise removed from the
  lists this table put it in. Either way the table then forgets it: a row that comes back is
  sent again as new. A contact this sync did not create is never deleted;
* a contact whose last send rides on a job not yet ended (or on a removal in flight) waits for
  the next load.

Until its removal's job is done, such a contact is ``unconfirmed`` in the state (set before
the first request): after a crash, a failed job or one SendGrid no longer knows, a row of it
that comes back is sent again (after any removal still in flight), never skipped as
unchanged, since SendGrid may have deleted it or taken it out of its lists.

Safety: once a table's rows are all known (after its last job file is planned, before any of
that file's upserts), the contacts to delete or to remove from lists because their rows left
or are flagged are counted. More than ``max_deletes``, or more than ``max_delete_fraction`` of
the contacts the state holds for the table, stops the load (``DeletionLimitError``) before
anything is deleted, unless ``force_deletes``. A plan (dry run) reports it instead.

Then contact IDs are looked up (``contact_ids``), removals and deletions are sent in URL-sized
chunks, and their jobs are followed to their end within the run's wait budget (a job still
pending is settled first by the next load). The 202s are recorded ``RECORD_EVERY`` requests
at a time, and the jobs' ends likewise: one transaction per request scanned the queue each
time (a 1M-contact list move is ~4,700 requests). A crash loses at most that many records;
the next load looks those contacts up again and sends only what is still to do (a removal
or deletion already done is found done).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.api.models import FoundContact
from sendgrid_destination.clock import Clock
from sendgrid_destination.contact_ids import find_contacts, url_chunks
from sendgrid_destination.dispositions import TableIntent
from sendgrid_destination.errors import DeletionLimitError, RequestRejectedError, StoppedError
from sendgrid_destination.import_jobs import UNKNOWN_JOB_STATUSES, poll_until_done
from sendgrid_destination.progress import active_pipeline
from sendgrid_destination.schemas import SENT_REMOVALS
from sendgrid_destination.state import StateStore
from sendgrid_destination.state.removals import EndedJob, RemovalLedger
from sendgrid_destination.tally import Tally

logger = logging.getLogger("sendgrid_destination.deletions")

_DECIDED = pa.schema(
    [
        pa.field("contact_key", pa.string()),
        pa.field("cause", pa.string()),
        pa.field("action", pa.string()),  # delete, unlist, forget, wait
        pa.field("lists", pa.string()),
    ]
)
# DELETEs whose 202s (or jobs' ends) are recorded in one transaction (see the docstring).
RECORD_EVERY = 50
_PAIRS = pa.schema([pa.field("contact_key", pa.string()), pa.field("list_id", pa.string())])


@dataclass
class Removals:
    """The removals of one sink call of one table; see the module docstring."""

    config: Any  # SendGridConfiguration: max_deletes, max_delete_fraction, force_deletes...
    client: SendGridClient
    store: StateStore
    clock: Clock
    run_id: str
    stream: str
    intent: TableIntent
    tally: Tally
    stop: Callable[[], bool] = lambda: False
    plan_only: bool = False  # a dry run: a deletion over the limit is reported, not raised
    # The keys the load's other tables still to come may send (``tables_to_come``), read on a
    # cursor of the state only when this table would delete.
    to_come: Callable[[duckdb.DuckDBPyConnection], pa.Table] | None = None
    _decided: pa.Table = field(default_factory=_DECIDED.empty_table, init=False)
    _sent_jobs: list[str] = field(default_factory=list, init=False)
    _unrecorded: list[pa.Table] = field(default_factory=list, init=False)  # SENT_REMOVALS
    _ended: list[EndedJob] = field(default_factory=list, init=False)  # not recorded yet
    # Removals in flight that other tables sent (``settle`` follows them): job -> (table,
    # kind of job), and the statuses of those that ended, by (table, kind).
    _theirs: dict[str, tuple[str, str]] = field(default_factory=dict, init=False)
    _theirs_ended: dict[tuple[str, str], Counter[str]] = field(default_factory=dict, init=False)
    # This table's jobs of earlier loads still pending once ``settle`` waited for them:
    # counted with those ``execute`` leaves pending.
    _pending_earlier: int = field(default=0, init=False)

    @property
    def _ledger(self) -> RemovalLedger:
        return self.store.removals

    @property
    def _judges_now(self) -> bool:
        """A whole table is judged at its last file; flagged rows in every call."""
        return self.intent.last_file or not self.intent.whole_source

    # -- the steps, in the order the sync calls them ------------------------------------

    def record_keys(self, cur: duckdb.DuckDBPyConnection, relation: str) -> None:
        """The plan's hook: keep this file's keys (all, or the flagged ones)."""
        if self.intent.records_keys:
            # A table judged by its flags alone keeps its flagged keys, and every key while a
            # contact a search missed waits: its row may be back (``candidates``).
            flagged_only = not self.intent.whole_source and not self._ledger.has_missed(self.stream)
            RemovalLedger.record_load_keys(
                cur,
                relation,
                run_id=self.run_id,
                stream=self.stream,
                file_key=self.intent.file_key,
                flagged_only=flagged_only,
            )

    def settle(self, deadline: float) -> None:
        """Follow the removal jobs earlier loads left pending (before anything is decided),
        of every table: an upsert of a contact waits for any removal of it in flight.
        Another table's jobs are counted in a note, not in this table's ``removal_jobs``."""
        self._theirs = self._ledger.sent_by_other_tables(self.stream)
        try:
            self._pending_earlier = self._follow(self._ledger.in_flight(), deadline)
            self.tally.removal_jobs_pending(self._pending_earlier)
        finally:
            for (table, kind), statuses in sorted(self._theirs_ended.items()):
                self.tally.followed_elsewhere(kind, table, statuses)
            self._theirs, self._theirs_ended = {}, {}

    def prepare(self) -> None:
        """Decide what leaves, and stop here if it is more than the limits allow."""
        if not (self.intent.records_keys and self._judges_now):
            return
        candidates = self._ledger.candidates(
            self.run_id, self.stream, whole_source=self.intent.whole_source
        )
        self._decided = self._decide(self._shared_with_tables_to_come(candidates))
        action = self._decided["action"]
        destructive = _count(pc.is_in(action, pa.array(["delete", "unlist"])))
        self._check_limit(destructive, self._ledger.tracked(self.stream))

    def leaving(self) -> pa.Array:
        """The contacts this load deletes or takes out of lists (``prepare``'s decision): a
        change of theirs an earlier load deferred is not to be sent, since an upsert racing
        the removal could bring the contact back, or back into the list. Those it forgets
        or that wait keep theirs: no removal is sent that it could race."""
        decided = self._decided
        removed = pc.is_in(decided["action"], pa.array(["delete", "unlist"]))
        return decided.filter(removed)["contact_key"].combine_chunks()

    def execute(self, deadline: float) -> None:
        """Look the contacts up, send the removals and deletions, follow their jobs."""
        decided, self._decided = self._decided, _DECIDED.empty_table()
        if self.intent.records_keys and self._judges_now:
            self._ledger.clear_failed(self.stream)
        self._ledger.forget(self.stream, _where(decided, "forget"), gone=False)
        deleting = _where(decided, "delete")
        unlisting = self._unlisting(decided)
        keys = pa.concat_arrays(
            [deleting["contact_key"].combine_chunks(), unlisting["contact_key"].combine_chunks()]
        )
        # Before any request: a crash, a job that fails or one SendGrid forgot (404) leaves
        # these contacts' fate unknown, so a row that comes back must be sent, not skipped as
        # unchanged (a done job forgets them: ``finish_jobs``).
        leaving = decided.filter(pc.is_in(decided["action"], pa.array(["delete", "unlist"])))
        self._ledger.distrust(self.stream, leaving["contact_key"].combine_chunks())
        found = find_contacts(self.client, pc.unique(keys).to_pylist(), self._stopped)
        self._forget_gone(decided, found)
        self._unlist(decided, unlisting, found)
        self._delete(deleting, found)
        pending = self._pending_earlier + self._follow(self._sent_jobs, deadline)
        self.tally.removal_jobs_pending(pending)
        self._sent_jobs, self._pending_earlier = [], 0
        if self.intent.records_keys and self._judges_now:
            self._ledger.drop_missed_back(self.run_id, self.stream)
            self._ledger.clear_load_keys(self.run_id, self.stream)

    # -- deciding ------------------------------------------------------------------------

    def _shared_with_tables_to_come(self, candidates: pa.Table) -> pa.Table:
        """A contact the load's next tables send is shared, as one their earlier loads sent:
        moving from this table to another in one load, it must not be deleted before the
        other table sends it (``tables_to_come``)."""
        wanted, ours = self._wanted_and_ours(candidates)
        if self.to_come is None or not _count(pc.and_(wanted, ours)):
            return candidates
        coming = self._ledger.tracked_as(self.to_come)
        shared = pc.or_(candidates["shared"], pc.is_in(candidates["contact_key"], coming))
        return candidates.set_column(candidates.schema.get_field_index("shared"), "shared", shared)

    def _wanted_and_ours(self, candidates: pa.Table) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
        """Per candidate: the table asks for its deletion (mirror, or a flag), and this sync
        created it and no other table sends it (only then is it deleted)."""
        deletes = pa.scalar(self.intent.mode == "mirror")
        wanted = pc.or_(pc.equal(candidates["cause"], "flagged"), deletes)
        return wanted, pc.and_(candidates["created"], pc.invert(candidates["shared"]))

    def _decide(self, candidates: pa.Table) -> pa.Table:
        wanted, ours = self._wanted_and_ours(candidates)
        listed = pc.not_equal(candidates["lists"], "")
        waiting = candidates["waiting"]
        action = pc.if_else(
            waiting,
            "wait",
            pc.if_else(pc.and_(wanted, ours), "delete", pc.if_else(listed, "unlist", "forget")),
        )
        left = _count(pc.equal(candidates["cause"], "left"))
        kept = _count(pc.and_(pc.and_(wanted, pc.invert(ours)), pc.invert(waiting)))
        self.tally.judged(left=left, not_deleted=kept, waiting=_count(waiting))
        if _count(waiting):
            logger.info(
                "%d contact(s) that left table %r wait for a job carrying them; the next load "
                "decides",
                _count(waiting),
                self.stream,
            )
        return pa.table(
            {
                "contact_key": candidates["contact_key"],
                "cause": candidates["cause"],
                "action": action,
                "lists": candidates["lists"],
            },
            schema=_DECIDED,
        )

    def _check_limit(self, count: int, tracked: int) -> None:
        config = self.config
        over_count = config.max_deletes is not None and count > config.max_deletes
        over_fraction = count > config.max_delete_fraction * tracked
        if not count or not (over_count or over_fraction) or config.force_deletes:
            return
        self.tally.over_delete_limit(count)
        share = f"{count / tracked:.0%} " if tracked else ""
        limits = [f"max_deletes = {config.max_deletes}"] if over_count else []
        limits += [f"max_delete_fraction = {config.max_delete_fraction:g}"] * over_fraction
        message = (
            f"This load would delete or remove from lists {count} contact(s) whose rows left "
            f"table {self.stream!r} (or are flagged as deleted): {share}of the {tracked} this "
            f"sync holds for it, more than {' and '.join(limits)} allow(s). Nothing was "
            "deleted or sent. If the source is right, allow it once: load again with "
            "force_deletes = true for that load only (e.g. "
            "DESTINATION__SENDGRID__FORCE_DELETES=true), or raise the limit. If another "
            f"pipeline or sync file loads a table named {self.stream!r} into this state "
            "file, its contacts look gone from this one: give each its own table name (a "
            "sync file's source.resource) or state_path instead. If the source is wrong, "
            "fix it, and drop the load dlt keeps pending (it would stop again): "
            f"`dlt -y pipeline {_pipeline_name()} abort-packages` (with --pipelines-dir if the "
            "pipeline has its own)."
        )
        if self.plan_only:
            logger.warning("plan: %s", message)
            return
        raise DeletionLimitError(message)

    # -- sending -------------------------------------------------------------------------

    def _unlisting(self, decided: pa.Table) -> pa.Table:
        """(contact, list) pairs to remove: the lists of contacts that left, and those that
        contacts still here no longer name (not of contacts deleted or forgotten now)."""
        left = _where(decided, "unlist")
        lists = pc.split_pattern(left["lists"].combine_chunks(), ",")
        pairs = pa.table(
            {
                "contact_key": left["contact_key"]
                .combine_chunks()
                .take(pc.list_parent_indices(lists)),
                "list_id": pc.list_flatten(lists),
            },
            schema=_PAIRS,
        )
        queued = self._ledger.queued_drops(self.stream)
        self._ledger.drop_queued(self.stream, queued.filter(queued["held"]))  # kept: moot
        drops = queued.filter(pc.invert(queued["held"])).select(_PAIRS.names).cast(_PAIRS)
        ending = decided.filter(pc.is_in(decided["action"], pa.array(["delete", "forget"])))
        drops = drops.filter(pc.invert(pc.is_in(drops["contact_key"], ending["contact_key"])))
        return pa.concat_tables([pairs, drops])

    def _forget_gone(self, decided: pa.Table, found: dict[str, FoundContact]) -> None:
        """Contacts SendGrid no longer holds: nothing to remove or delete. Its search lags
        behind jobs (seconds to minutes), so a contact it misses is taken for gone only when
        a later load's search misses it too; until then it waits, still tracked."""
        acting = decided.filter(pc.is_in(decided["action"], pa.array(["delete", "unlist"])))
        here = pc.is_in(acting["contact_key"], _keys(found))
        self._ledger.drop_missed(self.stream, acting.filter(here)["contact_key"].combine_chunks())
        missing = acting.filter(pc.invert(here))
        before = self._ledger.missed_before(
            self.stream, self.run_id, missing["contact_key"].combine_chunks()
        )
        again = pc.is_in(missing["contact_key"], before)
        gone, first = missing.filter(again), missing.filter(pc.invert(again))
        self._ledger.forget(self.stream, gone, gone=True)
        self._ledger.record_missed(self.stream, self.run_id, first)
        self.tally.already_gone(gone.num_rows)
        self.tally.not_found_yet(first.num_rows)

    def _unlist(self, decided: pa.Table, pairs: pa.Table, found: dict[str, FoundContact]) -> None:
        """Per list, remove the contacts that are in it (as the search shows them); pairs
        whose contact is gone or not in the list are moot. A contact that left is forgotten
        once its last removal is done (``finish_jobs``), or now when it needs none."""
        leaving = _where(decided, "unlist")
        by_list, moot = _by_list(pairs, found, leaving)
        self._ledger.drop_queued(self.stream, _pairs(moot))
        acting = pa.array([key for rows in by_list.values() for key, _, _ in rows], pa.string())
        idle = leaving.filter(
            pc.and_(
                pc.invert(pc.is_in(leaving["contact_key"], acting)),
                pc.is_in(leaving["contact_key"], _keys(found)),
            )
        )
        self._ledger.forget(self.stream, idle, gone=False)
        for list_id, rows in sorted(by_list.items()):
            self._send(list_id, rows)

    def _delete(self, deleting: pa.Table, found: dict[str, FoundContact]) -> None:
        rows = [
            (key, found[key].id, cause)
            for key, cause in zip(
                deleting["contact_key"].to_pylist(), deleting["cause"].to_pylist(), strict=True
            )
            if key in found
        ]
        if rows:
            self._send(None, rows)

    def _send(self, list_id: str | None, rows: Sequence[tuple[str, str, str]]) -> None:
        """DELETE ``rows`` (key, contact ID, cause): from a list, or (``list_id`` None) from
        the account, in URL-sized chunks; every 202 is recorded before this returns or
        raises, ``RECORD_EVERY`` at a time."""
        ids = [contact_id for _, contact_id, _ in rows]
        start = 0
        try:
            for chunk in url_chunks(ids, self.client.ids_url_length(list_id)):
                part = rows[start : start + len(chunk)]
                start += len(chunk)
                self._send_chunk(list_id, part)
        finally:
            self._record_sent()

    def _record_sent(self) -> None:
        unrecorded, self._unrecorded = self._unrecorded, []
        if unrecorded:
            sent = pa.concat_tables(unrecorded)
            self._ledger.record_sent(run_id=self.run_id, stream=self.stream, sent=sent)

    def _send_chunk(
        self, list_id: str | None, rows: Sequence[tuple[str, str, str]], *, again: bool = False
    ) -> None:
        if (stop := self._stopped()) is not None:
            raise stop
        ids = [contact_id for _, contact_id, _ in rows]
        try:
            if list_id is None:
                job_id = self.client.delete_contacts(ids)
            else:
                job_id = self.client.remove_from_list(list_id, ids)
        except RequestRejectedError as exc:
            if exc.status == 414 and len(rows) > 1:  # the URL was still too long: halve it
                half = len(rows) // 2
                self._send_chunk(list_id, rows[:half])
                self._send_chunk(list_id, rows[half:])
                return
            if exc.status == 404 and not again:
                if list_id is None:
                    self._after_delete_not_found(rows)
                else:
                    self._after_not_found(list_id, rows)
                return
            raise
        self._unrecorded.append(
            pa.table(
                {
                    "contact_key": [r[0] for r in rows],
                    "contact_id": ids,
                    "cause": [r[2] for r in rows],
                    "job_id": [job_id] * len(rows),
                    "list_id": pa.array([list_id] * len(rows), pa.string()),
                },
                schema=SENT_REMOVALS,
            )
        )
        self._sent_jobs.append(job_id)
        self.tally.removal_sent(deleted=list_id is None, contacts=len(rows))
        if len(self._unrecorded) >= RECORD_EVERY:
            self._record_sent()

    def _after_not_found(self, list_id: str, rows: Sequence[tuple[str, str, str]]) -> None:
        """A list removal answered 404: the list, or one of the contacts, is gone since the
        search (deleted in SendGrid meanwhile). Look again; send once more what is still to
        remove (a second 404 stops the load); what is gone needs no removal, and a list that
        is gone holds no one (deleted in the UI: every later load would stop here)."""
        if list_id not in {lst.id for lst in self.client.lists()}:
            logger.warning(
                "list %s no longer exists in SendGrid: its %d removal(s) have nothing to do",
                list_id,
                len(rows),
            )
            found: dict[str, FoundContact] = {}
        else:
            found = find_contacts(self.client, [key for key, _, _ in rows], self._stopped)
        still = [
            (key, found[key].id, cause)
            for key, _, cause in rows
            if key in found and list_id in found[key].list_ids
        ]
        kept = {key for key, _, _ in still}
        self._ledger.drop_queued(
            self.stream, _pairs([(key, list_id) for key, _, _ in rows if key not in kept])
        )
        if still:
            self._send_chunk(list_id, still, again=True)

    def _after_delete_not_found(self, rows: Sequence[tuple[str, str, str]]) -> None:
        """A deletion answered 404 (``MarketingContacts404``): a contact is gone since the
        search, deleted elsewhere meanwhile. Look again: delete once more those still there
        (a second 404 stops the load); those not found are judged as a search that missed
        them (``_forget_gone``: gone once a later load misses them too)."""
        found = find_contacts(self.client, [key for key, _, _ in rows], self._stopped)
        missed = [(key, cause) for key, _, cause in rows if key not in found]
        self._forget_gone(
            pa.table(
                {
                    "contact_key": pa.array([key for key, _ in missed], pa.string()),
                    "action": pa.array(["delete"] * len(missed), pa.string()),
                    "cause": pa.array([cause for _, cause in missed], pa.string()),
                }
            ),
            {},
        )
        still = [(key, found[key].id, cause) for key, _, cause in rows if key in found]
        if still:
            self._send_chunk(None, still, again=True)

    # -- following -----------------------------------------------------------------------

    def _follow(self, job_ids: list[str], deadline: float) -> int:
        """Follow ``job_ids`` until they end or the deadline; return how many of this
        table's are still pending."""
        if not job_ids:
            return 0
        try:
            pending = poll_until_done(
                job_ids,
                self._poll,
                self.clock,
                self.config.job_poll_interval,
                deadline,
                self.stop,
            )
        finally:
            self._record_ended()
        ours = len([j for j in pending if j not in self._theirs])
        if pending:
            logger.warning(
                "%d removal job(s) still pending at the end of the wait; the next load "
                "follows them up first",
                len(pending),
            )
        return ours

    def _poll(self, job_id: str) -> bool:
        try:
            job = self.client.import_status(job_id)
        except RequestRejectedError as exc:
            if exc.status not in UNKNOWN_JOB_STATUSES:
                raise
            self._finish(job_id, "unknown", f"SendGrid answered {exc.status} for this job")
            return True
        if not job.is_terminal:
            return False
        # "completed" with an errored_count did not do all it was asked: as errored.
        status = "errored" if job.status == "completed" and job.errored_count else job.status
        self._finish(job_id, status, None if status == "completed" else status)
        return True

    def _finish(self, job_id: str, status: str, note: str | None) -> None:
        succeeded = status == "completed"
        if not succeeded:
            logger.warning(
                "removal job %s ended %s; its removals are tried again by the next load",
                job_id,
                status,
            )
        self._ended.append(EndedJob(job_id, succeeded, note))
        if job_id in self._theirs:
            self._theirs_ended.setdefault(self._theirs[job_id], Counter())[status] += 1
        else:
            self.tally.removal_job_ended(status)
        if len(self._ended) >= RECORD_EVERY:
            self._record_ended()

    def _record_ended(self) -> None:
        ended, self._ended = self._ended, []
        self._ledger.finish_jobs(ended)

    def _stopped(self) -> StoppedError | None:
        if not self.stop():
            return None
        return StoppedError(
            "The load was asked to stop (a signal): no new removal was sent, every one "
            "SendGrid accepted is recorded, and the next run goes on from there."
        )


def _pipeline_name() -> str:
    pipeline = active_pipeline()
    return str(pipeline.pipeline_name) if pipeline is not None else "<pipeline name>"


def _by_list(
    pairs: pa.Table, found: dict[str, FoundContact], leaving: pa.Table
) -> tuple[dict[str, list[tuple[str, str, str]]], list[tuple[str, str]]]:
    """The (key, contact ID, cause) to remove from each list, and the moot pairs. A contact
    that left is forgotten once unlisted (its cause); a list that a contact still here (or
    one waiting to be judged) no longer names is only left (``dropped``)."""
    causes = dict(
        zip(leaving["contact_key"].to_pylist(), leaving["cause"].to_pylist(), strict=True)
    )
    moot: list[tuple[str, str]] = []
    by_list: dict[str, list[tuple[str, str, str]]] = {}
    for key, list_id in zip(
        pairs["contact_key"].to_pylist(), pairs["list_id"].to_pylist(), strict=True
    ):
        contact = found.get(key)
        if contact is None or list_id not in contact.list_ids:
            moot.append((key, list_id))
        else:
            by_list.setdefault(list_id, []).append((key, contact.id, causes.get(key, "dropped")))
    return by_list, moot


def _where(decided: pa.Table, action: str) -> pa.Table:
    return decided.filter(pc.equal(decided["action"], action))


def _count(mask: pa.Array | pa.ChunkedArray) -> int:
    return int(pc.sum(mask).as_py() or 0) if len(mask) else 0


def _keys(found: dict[str, FoundContact]) -> pa.Array:
    return pa.array(list(found), pa.string())


def _pairs(pairs: list[tuple[str, str]]) -> pa.Table:
    return pa.table(
        {"contact_key": [p[0] for p in pairs], "list_id": [p[1] for p in pairs]}, schema=_PAIRS
    )
