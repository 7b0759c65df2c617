"""One load of one table, as a pipeline: rows in, contacts upserted, jobs followed, outcomes
recorded.

``ContactSync(...).run(rows)`` runs these steps, in this order (``run`` reads as the list):

1. **bind**: the mapping against the rows' schema, custom field names resolved to the
   account's IDs, list IDs checked, the body size learned for the account, and whether
   SendGrid's identifier rule is in play: everything that must hold before the first upsert;
2. **settle earlier jobs**: import jobs left pending by earlier runs are followed first, since
   contacts they failed must not look unchanged (every wait of the run shares one budget,
   ``job_wait_timeout``);
3. **plan** (``Plan``): one pass over all the rows checks them, resolves them against the
   identifiers SendGrid holds, keeps each contact key's last row, records the rejects and drops
   rows unchanged by fingerprint; a mapped column that stopped arriving stops the table
   (``drift``);
4. **send**: per batch, render the planned rows, set apart those unchanged by content and
   those whose previous version rides on a job still pending (held back: SendGrid promises
   no order between jobs, so a newer version must not overtake an older one still queued),
   refuse contacts too large for any request, let a large load's new contacts go by CSV
   import (``bulk_import``), pack the rest and dispatch up to ``max_in_flight`` bodies; then
   the last body. Every 202 and every uploaded file is recorded right after it arrives, and
   this run's jobs are followed to their end, whatever raises (``Dispatcher``,
   ``_following_jobs``); a signal stops the sending (``stop``);
5. **held back**: with the contacts earlier runs deferred, wait for the jobs blocking them
   within the budget, decide again through the plan, send what they no longer block, and
   keep the rest in the state for a later run.
6. **removals** (``deletions.Removals``, its steps hooked in above: earlier removal jobs
   settled in step 2, the load's keys kept and the deletion limits checked in step 3): remove
   contacts from the lists their rows no longer name, delete or remove those whose rows left
   or are flagged, and follow those jobs.

The counters live in one ``Tally``; the returned ``RunSummary`` is its result.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.bulk_import import BulkSink, ImportedFile, bulk_import
from sendgrid_destination.clock import Clock
from sendgrid_destination.config import SendGridConfiguration
from sendgrid_destination.contact_model import IDENTIFIERS
from sendgrid_destination.contact_sql import ContactSql
from sendgrid_destination.custom_fields import resolve_custom_fields
from sendgrid_destination.deletions import Removals
from sendgrid_destination.dispatch import Dispatcher
from sendgrid_destination.dispositions import TableIntent
from sendgrid_destination.drift import ColumnStats, check_columns
from sendgrid_destination.errors import SendGridError, StoppedError
from sendgrid_destination.identifiers import IdentifierPolicy
from sendgrid_destination.identity_refresh import refresh_refused_identities
from sendgrid_destination.import_jobs import JobsOutcome, JobTracker
from sendgrid_destination.mapping import FieldMapping, bind_custom, bind_reserved
from sendgrid_destination.membership import bind_lists
from sendgrid_destination.packing import Body, GroupedPacker
from sendgrid_destination.plan import Plan, Rendered
from sendgrid_destination.progress import NoProgress, SyncObserver
from sendgrid_destination.schemas import RENDERED
from sendgrid_destination.sender import BodySender, SendOutcome, for_good
from sendgrid_destination.source_rows import SourceRows
from sendgrid_destination.state import StateStore
from sendgrid_destination.summary import RunSummary
from sendgrid_destination.tally import Tally

logger = logging.getLogger("sendgrid_destination.sync")

# Fingerprints found stale (the JSON had not changed) are rewritten in groups of this many:
# each update reads the whole contacts table.
_REFRESH_ROWS = 1_000_000


@dataclass(frozen=True)
class _Setup:
    """What ``bind`` produced: the compiled SQL, the one packer, the sender, and the
    identifier rule when several identifiers are in play."""

    sql: ContactSql
    packer: GroupedPacker
    sender: BodySender
    identifiers: IdentifierPolicy | None


@dataclass
class ContactSync:
    config: SendGridConfiguration
    mapping: FieldMapping
    client: SendGridClient
    store: StateStore
    clock: Clock
    run_id: str
    stream: str
    # Asked between bodies and batches: true once a signal (SIGTERM, Ctrl-C) asked the load
    # to stop; then no new body is sent and what was accepted is recorded.
    stop: Callable[[], bool] = lambda: False
    # Told planned / sent / confirmed counts (progress, the remote state's uploads).
    observer: SyncObserver = field(default_factory=NoProgress)
    # What the table's load asks beyond upserts (dlt's disposition and hints, ``mode``),
    # and whether this is a plan (dry run): see ``deletions``.
    intent: TableIntent = field(default_factory=TableIntent)
    plan_only: bool = False
    # The keys the load's other tables still to come may send (see ``deletions``).
    to_come: Callable[[duckdb.DuckDBPyConnection], pa.Table] | None = None
    tally: Tally = field(init=False)
    _job_ids: list[str] = field(default_factory=list, init=False)
    _deadline: float = field(default=0.0, init=False)
    _refresh: list[pa.Table] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.tally = Tally(self.run_id, self.stream)
        self._tracker = JobTracker(
            self.client,
            self.store,
            self.clock,
            self.config.job_poll_interval,
            self.config.job_wait_timeout,
            self.stop,
        )
        self._removals = Removals(
            self.config,
            self.client,
            self.store,
            self.clock,
            self.run_id,
            self.stream,
            self.intent,
            self.tally,
            self.stop,
            self.plan_only,
            self.to_come,
        )

    @property
    def summary(self) -> RunSummary:
        return self.tally.summary

    def run(self, rows: SourceRows) -> RunSummary:
        self.store.start_run(self.run_id, self.stream)
        # One budget for every wait on import jobs in this run (settling, following, held
        # back): a job pending forever costs the run job_wait_timeout once, not per wait.
        self._deadline = self.clock.now() + self.config.job_wait_timeout
        setup = self._bind(rows)
        pending_at_start = self._settle_earlier_jobs()
        if setup.identifiers is not None:
            self._refresh_identities()
        with Plan.build(
            self.store,
            setup.sql,
            self.stream,
            self.run_id,
            rows,
            setup.identifiers,
            self._removals.record_keys,
        ) as plan:
            stats = self._check_drift(setup, rows)
            self._record_plan(plan)
            self._removals.prepare()  # raises before any upsert when over the limits
            held_back = self._send_planned(plan, setup, hold_back=pending_at_start)
            self._send_held_back(plan, setup, held_back)
        self._removals.execute(self._deadline)
        if stats.rows:
            self.store.set_column_stats(self.stream, stats.as_dict())
        return self.summary

    # -- the steps ---------------------------------------------------------------------------

    def _bind(self, rows: SourceRows) -> _Setup:
        """Everything that must hold before the first upsert; raises ConfigurationError."""
        schema = rows.schema
        reserved = bind_reserved(self.mapping, schema)  # before the network: columns exist
        fields = resolve_custom_fields(
            self.client,
            self.mapping,
            schema,
            create_missing=self.config.create_missing_custom_fields,
        )
        created = "would be created" if self.plan_only else "created"
        for name in fields.created:
            self.tally.note(
                f"custom field {name!r} was not in the account: {created} as {fields.types[name]}"
            )
        custom = bind_custom(self.mapping, schema, fields.types, fields.ids)
        list_ids, list_column = bind_lists(self.client, self.config, rows)
        learned = self.store.learned_max_bytes()
        max_bytes = min(self.config.max_request_bytes, learned or self.config.max_request_bytes)
        identifiers = self._identifier_policy()
        return _Setup(
            ContactSql(
                reserved + custom,
                list_ids=list_ids,
                date_format=self.config.date_format,
                identities=identifiers is not None,
                on_invalid_value=self.config.on_invalid_value,
                list_column=list_column,
                deleted_sql=self.intent.deleted_sql(schema.names),
            ),
            # New and known contacts apart when this table may delete: see GroupedPacker.
            GroupedPacker(
                max_bytes,
                self.config.max_contacts_per_request,
                split_new=self.intent.may_delete,
                limit_bytes=self.config.max_request_bytes,
            ),
            BodySender(self.client, self.clock, self.config.custom_field_ready_timeout),
            identifiers,
        )

    def _identifier_policy(self) -> IdentifierPolicy | None:
        """The identifier rule is in play when the mapping has several identifiers, or the
        account has contacts accepted with several (another table's mapping, say)."""
        mapped = {f: c for f, c in self.mapping.reserved.items() if f in IDENTIFIERS}
        if len(mapped) < 2 and not self.store.has_identities():
            return None
        return IdentifierPolicy(self.config.fill_missing_identifiers, mapped)

    def _settle_earlier_jobs(self) -> bool:
        """Follow earlier runs' pending jobs; whether any (of any table) is still pending."""
        self._wait_for(self.store.pending_jobs())
        self._removals.settle(self._deadline)
        # Within one load a key occurs once (last row wins), so only jobs still pending now
        # (upserts, removals of any table) can bear on a contact.
        return bool(self.store.pending_jobs() or self.store.removals.any_in_flight())

    def _refresh_identities(self) -> None:
        """Contacts refused last run for an identifier change: read what SendGrid holds now
        (the remedy is to change it there; see identity_refresh)."""
        changed = refresh_refused_identities(
            self.client, self.store, self.stream, self.run_id, self._stopped
        )
        if changed:
            self.tally.note(
                f"{changed} contact(s) refused last run for an identifier change hold other "
                "identifiers in SendGrid now: their rows were checked against those"
            )

    def _check_drift(self, setup: _Setup, rows: SourceRows) -> ColumnStats:
        """Stop on a mapped column (or the list column) that stopped arriving; note type
        changes (see drift)."""
        kinds: dict[str, str] = {b.column: b.arrow_kind for b in setup.sql.bindings}
        listed = setup.sql.list_column
        if listed is not None:
            kinds[listed.column] = listed.kind
        stats = ColumnStats(rows.rows_read, {c: rows.values_read.get(c, 0) for c in kinds}, kinds)
        last = self.store.column_stats(self.stream)
        report = check_columns(
            self.stream,
            stats,
            None if last is None else ColumnStats.from_dict(last),
            allow_missing=self.config.allow_missing_columns,
            list_column=None if listed is None else listed.column,
        )
        for note in report.notes:
            logger.warning("%s", note)
            self.tally.note(note)
        return stats

    def _record_plan(self, plan: Plan) -> None:
        self.tally.planned(plan.counts)
        self.observer.planned(plan.counts.to_render)
        if plan.rejects.num_rows:
            self._record_rejects(plan.rejects, "validation")
            self.tally.refused_by_checks(plan.rejects)
        self.store.invalid_rows.remember(self.run_id, self.stream, plan.invalid_rows)
        if plan.omitted.num_rows:  # on_invalid_value = "omit_field": sent without them
            self._record_rejects(plan.omitted, "omitted")
            self.tally.omitted_fields(plan.omitted)

    def _send_planned(self, plan: Plan, setup: _Setup, *, hold_back: bool) -> list[pa.Table]:
        """Render, pack and send every planned row; return the contacts held back."""
        held: list[pa.Table] = []
        with (
            self._following_jobs(),
            self._dispatcher(setup) as dispatch,
            self._bulk_import(setup, plan) as bulk,
        ):
            for rendered in plan.rendered_batches():
                if (stopped := self._stopped()) is not None:
                    raise stopped
                to_send = self._take_unchanged(rendered)
                if hold_back and pc.any(to_send["pending"]).as_py():
                    held.append(to_send.filter(to_send["pending"]))
                    self.tally.held_back(held[-1].num_rows)
                    to_send = to_send.filter(pc.invert(to_send["pending"]))
                to_send = bulk.take(self._refuse_oversize(setup, to_send))
                dispatch.send(setup.packer.add(to_send))
            dispatch.send(setup.packer.flush())
            self._refresh_fingerprints()
        return held

    def _send_held_back(self, plan: Plan, setup: _Setup, held: list[pa.Table]) -> None:
        """Contacts whose previous version rides on a pending job (this load's, and those an
        earlier run deferred): wait for those jobs within the run's budget, send what they
        no longer block, and defer the rest to a later run (kept in the state)."""
        contacts = pa.concat_tables([*held, self._deferred_still_wanted()])
        if contacts.num_rows == 0:
            return
        self._wait_for(self.store.pending_jobs_of(contacts))
        decided = plan.decide_again(contacts)
        self._remember_unchanged(decided.unchanged)
        self._remember_waiting(decided.waits)
        free = decided.to_send.filter(pc.invert(decided.to_send["pending"]))
        waiting = decided.to_send.filter(decided.to_send["pending"])
        # Until accepted, the free ones stay deferred too: a crash must not lose them.
        self.store.defer(self.run_id, self.stream, decided.to_send)
        self.tally.left_waiting(waiting.num_rows)
        if waiting.num_rows:
            logger.warning(
                "%d changed contact(s) wait for the import job carrying their previous version; "
                "a later run sends them once it has finished",
                waiting.num_rows,
            )
        to_send = self._refuse_oversize(setup, free)
        with self._following_jobs(), self._dispatcher(setup) as dispatch:
            dispatch.send([*setup.packer.add(to_send), *setup.packer.flush()])
            self._refresh_fingerprints()

    def _deferred_still_wanted(self) -> pa.Table:
        """The changes earlier loads deferred, but for contacts this load deletes or takes
        out of lists (their rows left, or are flagged): those are dropped, not sent, since an
        upsert would race the removal (``Removals.leaving``)."""
        deferred = self.store.deferred(self.stream).cast(RENDERED)
        gone = pc.is_in(deferred["contact_key"], self._removals.leaving())
        if not pc.any(gone).as_py():
            return deferred
        dropped = pc.sum(gone).as_py()
        self.tally.note(
            f"{dropped} deferred change(s) of contacts whose rows left (or are flagged as "
            "deleted) were dropped, not sent: this load deletes them or takes them out of lists"
        )
        kept = deferred.filter(pc.invert(gone))
        self.store.defer(self.run_id, self.stream, kept)
        return kept

    def _wait_for(self, job_ids: list[str]) -> None:
        if job_ids:
            outcome = self._tracker.wait(job_ids, self.run_id, self._deadline, self.stream)
            self._jobs_settled(outcome)

    def _refuse_oversize(self, setup: _Setup, contacts: pa.Table) -> pa.Table:
        fitting, too_big = setup.packer.split_oversize(contacts)
        if too_big.num_rows:
            self._record_rejects(too_big, "validation")
            self.tally.refused_by_checks(too_big)
        return fitting

    # -- unchanged contacts ------------------------------------------------------------------

    def _take_unchanged(self, rendered: Rendered) -> pa.Table:
        """Count and remember the rows found unchanged by content, and those whose JSON is
        their send SendGrid refused for good; return what is to send."""
        self.tally.found_unchanged(rendered.unchanged.num_rows)
        self._remember_unchanged(rendered.unchanged)
        self._remember_waiting(rendered.waits)
        return rendered.to_send

    def _remember_waiting(self, waits: pa.Table) -> None:
        if waits.num_rows:  # rare (a fingerprint changed, the data not): recorded at once
            self.tally.found_waiting(waits.num_rows)
            self.store.refresh_waiting(self.stream, waits)

    def _remember_unchanged(self, unchanged: pa.Table) -> None:
        if unchanged.num_rows:
            self._refresh.append(unchanged.select(["contact_key", "fingerprint", "content_hash"]))
            if sum(t.num_rows for t in self._refresh) >= _REFRESH_ROWS:
                self._refresh_fingerprints()

    def _refresh_fingerprints(self) -> None:
        if self._refresh:
            self.store.refresh_fingerprints(self.stream, pa.concat_tables(self._refresh))
            self._refresh = []

    # -- sending and recording (recording on the main thread only) ---------------------------

    def _dispatcher(self, setup: _Setup) -> Dispatcher[Body, SendOutcome]:
        def record(outcome: SendOutcome) -> None:
            self._record_outcome(outcome)
            if outcome.learned_max_bytes is not None:
                self._learn_max_bytes(setup, outcome.learned_max_bytes)
            elif outcome.accepted:
                self._confirm_max_bytes(setup, max(n for _, _, n in outcome.accepted))

        return Dispatcher(setup.sender.send, record, self.config.max_in_flight, self._stopped)

    def _stopped(self) -> StoppedError | None:
        if not self.stop():
            return None
        return StoppedError(
            "The load was asked to stop (a signal): no new request was sent, every request "
            "SendGrid accepted is recorded, and the next run goes on from there."
        )

    def _bulk_import(self, setup: _Setup, plan: Plan) -> AbstractContextManager[BulkSink]:
        """New contacts of a large load go by CSV import (``bulk_import``); each file its
        upload URL took is recorded like an accepted upsert, and its job followed with them."""
        return bulk_import(
            self.client,
            self.store,
            self.config,
            self.clock,
            setup.sql.bindings,
            scope=setup.sql.scope,
            new_contacts=plan.counts.new,
            record=self._record_import,
        )

    def _record_import(self, imported: ImportedFile) -> None:
        self.tally.imported(imported.contacts, imported.file_bytes)
        self._record_accepted(imported.job_id, imported.contacts, imported.file_bytes)

    def _record_accepted(self, job_id: str, contacts: pa.Table, nbytes: int) -> None:
        """A 202 or an uploaded file, counted already: its contacts into the state, with the
        attempt's counters (a killed attempt's are found there), its job to follow."""
        lists = self.store.record_sent(
            run_id=self.run_id, stream=self.stream, job_id=job_id, contacts=contacts,
            body_bytes=nbytes, progress=self.tally.sent.as_dict(),
        )  # fmt: skip
        self._job_ids.append(job_id)
        self.observer.sent(contacts.num_rows)
        self.tally.listed(lists)

    def _learn_max_bytes(self, setup: _Setup, max_bytes: int) -> None:
        """Bodies from now on, and in later runs, are packed to what SendGrid accepted."""
        if max_bytes < setup.packer.max_bytes:
            logger.warning(
                "SendGrid refused a request body as too large: packing bodies of at most "
                "%d bytes from now on (remembered in the state file)",
                max_bytes,
            )
            setup.packer.set_max_bytes(max_bytes)
            self.store.set_learned_max_bytes(max_bytes)

    def _confirm_max_bytes(self, setup: _Setup, accepted_bytes: int) -> None:
        """A body larger than the learned budget was accepted (a contact over the budget
        goes alone): SendGrid's limit is at least that, so the budget grows back to it."""
        if accepted_bytes > setup.packer.max_bytes and self.store.learned_max_bytes():
            setup.packer.set_max_bytes(accepted_bytes)
            self.store.set_learned_max_bytes(setup.packer.max_bytes)

    def _record_outcome(self, outcome: SendOutcome) -> None:
        for job_id, contacts, nbytes in outcome.accepted:
            self.tally.accepted(contacts, nbytes)
            self._record_accepted(job_id, contacts, nbytes)
        for rejected in outcome.rejected:
            # A row an earlier attempt of this run saw refused is counted once.
            self.tally.refused_by_api(self._record_rejects(rejected, "api"))
            self.store.record_refused_for_good(self.run_id, self.stream, for_good(rejected))
        self.tally.refused_requests(outcome.refused_requests, outcome.refused_bytes)

    def _record_rejects(self, rejects: pa.Table, stage: str) -> pa.Table:
        return self.store.record_rejects(
            run_id=self.run_id, stream=self.stream, rejects=rejects, stage=stage
        )

    @contextmanager
    def _following_jobs(self) -> Iterator[None]:
        """On leaving the block, follow this run's jobs to their end, even when it raised
        (then the original error wins; a job still pending is followed by the next run)."""
        try:
            yield
        except StoppedError:
            raise  # stopping is bounded: the next run follows the jobs
        except Exception:
            try:
                self._follow_jobs()
            except SendGridError as follow_error:
                logger.warning("could not follow this run's jobs after an error: %s", follow_error)
            raise
        self._follow_jobs()

    def _follow_jobs(self) -> None:
        job_ids, self._job_ids = self._job_ids, []
        self._wait_for(job_ids)

    def _jobs_settled(self, outcome: JobsOutcome) -> None:
        self.tally.jobs_settled(outcome)
        self.observer.confirmed(outcome.confirmed)
