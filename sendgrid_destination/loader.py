"""One load of one table: rows in, contacts upserted, jobs followed, outcomes recorded.

``ContactLoader.load_file(path, batch_rows)`` loads a dlt job file, ``load_batch(batch,
first_row)`` one RecordBatch (dlt's ``batch_size > 0`` mode). Either way:

1. check the mapping against the data and resolve custom fields and lists, all before any
   other request; follow up import jobs left pending by earlier runs (contacts they failed
   must not look unchanged);
2. plan (``plan.build_plan``): one pass over all the rows checks them; of rows sharing a
   contact key the last wins; the rejects are recorded, and the rest joined once with the
   state, dropping unchanged rows by fingerprint;
3. per batch, only if the plan kept any row: render the planned rows (JSON, content hash),
   count as unchanged those whose content hash equals the last one sent (refreshing their
   fingerprint and content hash), hold back contacts whose previous version rides on a job
   still pending from an earlier run, pack, and send up to ``max_in_flight`` bodies at
   once, recording each body's hashes right after its 202;
4. flush the last body, follow this run's jobs to their end, then wait once more for the
   jobs blocking the held-back contacts and send them (SendGrid promises no order between
   jobs, so a newer version must not overtake an older one still queued);
5. return the run's ``RunSummary``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.clock import Clock
from sendgrid_destination.config import SendGridConfiguration
from sendgrid_destination.custom_fields import resolve_custom_fields
from sendgrid_destination.errors import ConfigurationError, SendGridTransientError
from sendgrid_destination.fields import FieldType
from sendgrid_destination.jobfile import JobFile
from sendgrid_destination.jobs import JobsOutcome, JobTracker
from sendgrid_destination.mapping import FieldMapping, bind_mapping
from sendgrid_destination.packing import Body, Packer, envelope_prefix
from sendgrid_destination.plan import Plan, build_plan
from sendgrid_destination.redaction import redact
from sendgrid_destination.sender import BodySender, SendOutcome
from sendgrid_destination.state import StateStore
from sendgrid_destination.summary import RunSummary
from sendgrid_destination.transform import Transformer, keep_last_per_key, with_row_numbers

logger = logging.getLogger("sendgrid_destination.loader")


@dataclass
class _Prepared:
    transformer: Transformer
    packer: Packer
    sender: BodySender


@dataclass
class ContactLoader:
    config: SendGridConfiguration
    mapping: FieldMapping
    client: SendGridClient
    store: StateStore
    clock: Clock
    run_id: str
    stream: str
    summary: RunSummary = field(init=False)
    _job_ids: list[str] = field(default_factory=list, init=False)
    _held_back: list[pa.Table] = field(default_factory=list, init=False)
    _refresh: list[pa.Table] = field(default_factory=list, init=False)
    _prepared: _Prepared | None = field(default=None, init=False)
    _jobs_pending_at_start: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        self.summary = RunSummary(self.run_id, self.stream)
        self._prefix = envelope_prefix(self.config.list_ids or [])
        self._tracker = JobTracker(
            self.client,
            self.store,
            self.clock,
            self.config.job_poll_interval,
            self.config.job_wait_timeout,
        )

    def load_file(self, path: str, batch_rows: int) -> RunSummary:
        """Load a whole job file; duplicates of a contact key resolve across the file. The file
        is read whole for the plan, and once more for rendering only if some row needs it."""
        job = JobFile(path, self.mapping.columns, batch_rows)
        with self._sending() as dispatcher:
            prepared = self._start(job.schema)
            with self._plan(prepared, job.reader(), lambda: job.rows_read) as plan:
                if plan.to_render:
                    for batch, first_row in job.batches():
                        self._send_batch(prepared, plan, batch, first_row, dispatcher)
        return self.summary

    def load_batch(self, batch: pa.RecordBatch, first_row: int) -> RunSummary:
        """Load one RecordBatch whose first row is row ``first_row`` of the load package."""
        with self._sending() as dispatcher:
            prepared = self._start(batch.schema)
            source = with_row_numbers(batch, first_row)
            with self._plan(prepared, source, lambda: batch.num_rows) as plan:
                if plan.to_render:
                    self._send_batch(prepared, plan, batch, first_row, dispatcher)
        return self.summary

    # -- steps -------------------------------------------------------------------------------

    @contextmanager
    def _sending(self) -> Iterator[_Dispatcher]:
        self.store.start_run(self.run_id, self.stream)
        with ThreadPoolExecutor(self.config.max_in_flight, "sendgrid-upsert") as pool:
            dispatcher = _Dispatcher(pool, self.config.max_in_flight, self._record)
            yield dispatcher
            if self._prepared and (last := self._prepared.packer.flush()):
                dispatcher.submit(self._sender.send, last)
            dispatcher.drain()
            self._finish_jobs()
            self._send_held_back(dispatcher)

    def _start(self, schema: pa.Schema) -> _Prepared:
        prepared = self._prepare(schema)
        # Earlier runs' jobs first: contacts they failed must not look unchanged.
        self._absorb_jobs(self._tracker.wait(self.store.pending_jobs(), self.run_id))
        # Within one load a key occurs once (last row wins), so only jobs still pending now
        # can carry an earlier version of a contact.
        self._jobs_pending_at_start = bool(self.store.pending_jobs(self.stream))
        return prepared

    @contextmanager
    def _plan(
        self,
        prepared: _Prepared,
        source: pa.Table | pa.RecordBatchReader,
        rows_read: Callable[[], int],
    ) -> Iterator[Plan]:
        plan = build_plan(
            self.store.con, str(self.store.path), prepared.transformer, self.stream, source
        )
        try:
            self.summary.rows_read += rows_read()
            self.summary.superseded += plan.superseded
            self.summary.unchanged += rows_read() - plan.superseded - plan.kept
            self._record_rejects(plan.rejects, "validation")
            yield plan
            self._refresh_fingerprints()
        finally:
            plan.close()

    def _refresh_fingerprints(self) -> None:
        # Each update reads the whole contacts table: batched, not one per batch.
        if self._refresh:
            self.store.refresh_fingerprints(self.stream, pa.concat_tables(self._refresh))
            self._refresh = []

    def _send_batch(
        self,
        prepared: _Prepared,
        plan: Plan,
        batch: pa.RecordBatch,
        first_row: int,
        dispatcher: _Dispatcher,
    ) -> None:
        rendered = plan.render(batch, first_row)
        if rendered.unchanged.num_rows:
            self._refresh.append(
                rendered.unchanged.select(["contact_key", "fingerprint", "content_hash"])
            )
            self.summary.unchanged += rendered.unchanged.num_rows
            if sum(t.num_rows for t in self._refresh) >= _REFRESH_ROWS:
                self._refresh_fingerprints()
        contacts = rendered.to_send
        new = _true_count(contacts["is_new"])
        self.summary.new += new
        self.summary.changed += contacts.num_rows - new
        if self._jobs_pending_at_start and pc.any(contacts["pending"]).as_py():
            pending = contacts["pending"]
            self._held_back.append(contacts.filter(pending))
            self.summary.deferred += _true_count(pending)
            contacts = contacts.filter(pc.invert(pending))
        for body in prepared.packer.add(contacts):
            dispatcher.submit(self._sender.send, body)

    def _prepare(self, schema: pa.Schema) -> _Prepared:
        """Everything that must hold before the first upsert; raises ConfigurationError."""
        known_types: dict[str, FieldType] = {name: "Text" for name in self.mapping.custom}
        bind_mapping(self.mapping, schema, known_types)  # columns exist: fail before the network
        fields = resolve_custom_fields(
            self.client,
            self.mapping,
            schema,
            create_missing=self.config.create_missing_custom_fields,
        )
        bindings = bind_mapping(self.mapping, schema, fields.types, fields.ids)
        self._check_lists()
        # On the state's DuckDB instance: one memory budget for the plan, the render and the
        # state, not one each (a 10M-row load filled both to their cap).
        transformer = Transformer(
            bindings,
            list_ids=self.config.list_ids or [],
            date_format=self.config.date_format,
            connection=self.store.con,
        )
        packer = Packer(
            self._prefix, self.config.max_request_bytes, self.config.max_contacts_per_request
        )
        sender = BodySender(
            self.client, self._prefix, self.clock, self.config.custom_field_ready_timeout
        )
        self._prepared = _Prepared(transformer, packer, sender)
        return self._prepared

    @property
    def _sender(self) -> BodySender:
        assert self._prepared is not None
        return self._prepared.sender

    def _check_lists(self) -> None:
        wanted = list(self.config.list_ids or [])
        if not wanted:
            return
        known = {lst.id for lst in self.client.lists()}
        missing = [list_id for list_id in wanted if list_id not in known]
        if missing:
            raise ConfigurationError(
                f"list_ids not found in this SendGrid account: {', '.join(missing)}. Copy the "
                "IDs from Marketing > Contacts > Lists (the ID is in the list's URL)."
            )

    # -- recording (main thread only) --------------------------------------------------------

    def _record(self, outcome: SendOutcome) -> None:
        for job_id, contacts, nbytes in outcome.accepted:
            self.store.record_sent(
                run_id=self.run_id,
                stream=self.stream,
                job_id=job_id,
                contacts=contacts,
                body_bytes=nbytes,
            )
            self._job_ids.append(job_id)
            self.summary.requests += 1
            self.summary.bytes_sent += nbytes
            self.summary.contacts_sent += contacts.num_rows
        for rejected in outcome.rejected:
            self._record_rejects(rejected, "api")

    def _record_rejects(self, rejects: pa.Table, stage: str) -> None:
        if rejects.num_rows == 0:
            return
        self.store.record_rejects(
            run_id=self.run_id, stream=self.stream, rejects=rejects, stage=stage
        )
        rows = int(pc.count_distinct(rejects["row_number"]).as_py())
        if stage == "api":
            self.summary.rejected_by_api += rows
        else:
            self.summary.rejected += rows
        counts = rejects.group_by("reason").aggregate([("row_number", "count")])
        for reason, n in zip(
            counts["reason"].to_pylist(), counts["row_number_count"].to_pylist(), strict=True
        ):
            self.summary.rejected_by_reason[redact(str(reason))] += int(n)

    # -- jobs and held-back contacts ---------------------------------------------------------

    def _finish_jobs(self) -> None:
        job_ids, self._job_ids = self._job_ids, []
        if job_ids:
            self._absorb_jobs(self._tracker.wait(job_ids, self.run_id))

    def _absorb_jobs(self, outcome: JobsOutcome) -> None:
        self.summary.jobs.update(outcome.statuses)
        self.summary.failed_in_jobs += outcome.failed
        self.summary.failed_by_reason.update(outcome.failed_by_reason)
        self.summary.unconfirmed += outcome.unconfirmed

    def _send_held_back(self, dispatcher: _Dispatcher) -> None:
        if not self._held_back:
            return
        held = keep_last_per_key(pa.concat_tables(self._held_back)).select(
            ["contact_key", "row_number", "fingerprint", "contact_json", "content_hash"]
        )
        self._held_back = []
        # Their earlier versions ride on jobs of earlier runs that were still pending at the
        # start: give those jobs one more wait before sending over them.
        blocking = self.store.pending_jobs_of(self.stream, held)
        if blocking:
            self._absorb_jobs(self._tracker.wait(blocking, self.run_id))
        diff = self.store.diff(self.stream, held)
        if pc.any(self.store.pending_keys(self.stream, diff.to_send)).as_py():
            raise SendGridTransientError(
                "Changed contacts are waiting for the import job carrying their previous "
                "version, which is still pending; the load will be retried. Raise "
                "job_wait_timeout if SendGrid is slow today."
            )
        packer = Packer(
            self._prefix, self.config.max_request_bytes, self.config.max_contacts_per_request
        )
        for body in [*packer.add(diff.to_send), packer.flush()]:
            if body is not None:
                dispatcher.submit(self._sender.send, body)
        dispatcher.drain()
        self._finish_jobs()


# Fingerprints found stale (the JSON had not changed) are rewritten in groups of this many.
_REFRESH_ROWS = 1_000_000


class _Dispatcher:
    """Up to ``limit`` bodies in flight; outcomes recorded on the calling thread, in order of
    completion. On an error, in-flight bodies still finish and are recorded before it is
    raised, so every 202 that arrived is in the state."""

    def __init__(
        self, pool: ThreadPoolExecutor, limit: int, record: Callable[[SendOutcome], None]
    ) -> None:
        self._pool = pool
        self._limit = limit
        self._record = record
        self._inflight: set[Future[SendOutcome]] = set()

    def submit(self, send: Callable[[Body], SendOutcome], body: Body) -> None:
        while len(self._inflight) >= self._limit:
            self._collect(FIRST_COMPLETED)
        self._inflight.add(self._pool.submit(send, body))

    def drain(self) -> None:
        while self._inflight:
            self._collect(FIRST_COMPLETED)

    def _collect(self, how: str) -> None:
        done, self._inflight = wait(self._inflight, return_when=how)
        errors = []
        for future in done:
            try:
                self._record(future.result())
            except Exception as exc:
                errors.append(exc)
        if errors:
            for future in self._inflight:
                future.cancel()
            rest, self._inflight = wait(self._inflight), set()
            for future in rest.done:
                if not future.cancelled() and future.exception() is None:
                    self._record(future.result())
            raise errors[0]


def _true_count(mask: pa.Array | pa.ChunkedArray) -> int:
    return int(pc.sum(mask).as_py() or 0)
