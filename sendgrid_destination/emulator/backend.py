"""The emulator's state: contacts, field definitions, lists and jobs, behind one lock.

Contract: every public method is atomic (one ``RLock``), so the threaded server can call it
from any request thread. Accepted writes become pending ``Job``s; a job is *due* once it
has been polled ``job_polls_until_done`` times and is ``job_delay_seconds`` old (on the
injected clock). ``process_due`` applies all due jobs together, in ``job_order`` ("fifo",
or "reverse" because SendGrid promises no order between jobs); ``process_all`` ignores the
due rule. Test hooks (forced contact errors, the next jobs' faults) live here too, so a
fault is part of the state a job sees when it runs. A job whose fault keeps it
``pending_forever`` is never applied. No HTTP here.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterable
from typing import Any, Literal

from .clock import Clock
from .csv_import import Column
from .definitions import CustomField, FieldCatalog, ListCatalog, MarketingList
from .errors import NotFound
from .faults import JobFault, JobFaults
from .import_jobs import Job, JobContext, JobType, apply
from .rules import FieldType
from .store import ContactStore, StoredContact

JobOrder = Literal["fifo", "reverse"]


class Backend:
    """All mutable state of one emulator instance."""

    def __init__(
        self,
        clock: Clock,
        *,
        job_polls_until_done: int = 1,
        job_delay_seconds: float = 0.0,
        job_order: JobOrder = "fifo",
        custom_field_ready_seconds: float = 0.0,
        retain_contacts: bool = True,
        unique_list_names: bool = True,
        lists_page_limit: int | None = None,
    ) -> None:
        if job_order not in ("fifo", "reverse"):
            raise ValueError(f"job_order must be 'fifo' or 'reverse', not {job_order!r}")
        self.clock = clock
        self.polls_until_done = job_polls_until_done
        self.delay_seconds = job_delay_seconds
        self.job_order: JobOrder = job_order
        self.retain_contacts = retain_contacts
        # Without retaining: the contacts accepted, which contacts/count reports instead.
        self._forgotten = 0
        self.lock = threading.RLock()
        self.store = ContactStore()
        self.fields = FieldCatalog(custom_field_ready_seconds)
        self.lists = ListCatalog(unique_list_names)
        # Lists a page holds at most, whatever page_size asks: a client must follow
        # _metadata.next rather than trust one page of page_size.
        self.lists_page_limit = lists_page_limit
        self._jobs: dict[str, Job] = {}
        self._forced_errors: dict[str, str] = {}
        self.job_faults = JobFaults()

    # -- schema -----------------------------------------------------------------------

    def create_field(self, name: Any, field_type: Any) -> CustomField:
        with self.lock:
            return self.fields.create(name, field_type, self.clock.now())

    def custom_fields(self) -> list[CustomField]:
        with self.lock:
            return self.fields.all()

    def ready_field_ids(self) -> frozenset[str]:
        with self.lock:
            return self.fields.ready_ids(self.clock.now())

    def create_list(self, name: Any, allow_duplicate_name: bool = False) -> MarketingList:
        with self.lock:
            return self.lists.create(name, allow_duplicate_name)

    def all_lists(self) -> list[tuple[MarketingList, int]]:
        """Every list with its contact count."""
        with self.lock:
            counts = self.store.list_counts()
            return [(lst, counts.get(lst.id, 0)) for lst in self.lists.all()]

    def delete_list(self, list_id: str, *, delete_contacts: bool) -> Job | None:
        """OAI-L DeleteMarketingList: the list is gone at once and no contact holds it any
        more; with ``delete_contacts`` its contacts are deleted by an asynchronous job
        (returned). ``NotFound`` for a list that does not exist."""
        with self.lock:
            if self.lists.get(list_id) is None:
                raise NotFound("list not found", "id")
            members = [c for c in self.store.all() if list_id in c.list_ids]
            self.lists.remove(list_id)
            for contact in members:
                contact.list_ids = [i for i in contact.list_ids if i != list_id]
                self.store.save(contact)
            if delete_contacts:
                return self.enqueue_delete([c.id for c in members])
            return None

    def list_ids(self) -> frozenset[str]:
        with self.lock:
            return frozenset(lst.id for lst in self.lists.all())

    # -- jobs -------------------------------------------------------------------------

    def enqueue_upsert(self, contacts: list[dict[str, Any]], list_ids: list[str]) -> Job:
        if not self.retain_contacts:
            # Benchmark mode: validated and answered like any upsert, then forgotten, so
            # millions of contacts cost the emulator no memory. The job completes as "created".
            job = self._enqueue("upsert_contacts", len(contacts), list_ids=list_ids)
            job.created_count = len(contacts)
            with self.lock:
                self._forgotten += len(contacts)
            return job
        return self._enqueue("upsert_contacts", len(contacts), contacts=contacts, list_ids=list_ids)

    def enqueue_delete(self, contact_ids: list[str] | None) -> Job:
        """``None`` deletes every contact (``delete_all_contacts=true``)."""
        with self.lock:
            count = len(self.store) if contact_ids is None else len(contact_ids)
            return self._enqueue("delete_contacts", count, contact_ids=contact_ids)

    def enqueue_list_removal(self, list_id: str, contact_ids: list[str]) -> Job:
        return self._enqueue(
            "delete_contacts", len(contact_ids), contact_ids=contact_ids, remove_from_list=list_id
        )

    def enqueue_import(self, columns: list[Column | None], list_ids: list[str]) -> Job:
        """A CSV import: pending, and not processed before its file is uploaded."""
        return self._enqueue(
            "upsert",
            0,
            columns=columns,
            list_ids=list_ids,
            upload_signature=secrets.token_urlsafe(24),
            upload_header=secrets.token_urlsafe(24),
        )

    def attach_upload(self, job: Job, data: bytes) -> None:
        with self.lock:
            job.upload = data

    def custom_field_types(self) -> dict[str, FieldType]:
        """The types of the custom fields upserts and imports may use now."""
        with self.lock:
            ready = self.fields.ready_ids(self.clock.now())
            return {f.id: f.field_type for f in self.fields.all() if f.id in ready}

    def enqueue_identifier_removal(self, contact_id: str, kind: str, value: str) -> Job:
        return self._enqueue(
            "delete_contacts", 1, contact_ids=[contact_id], remove_identifier=(kind, value)
        )

    def _enqueue(self, job_type: JobType, requested: int, **payload: Any) -> Job:
        with self.lock:
            fault = self.job_faults.take()
            forced = fault.fail_reason if fault else None
            job = Job.new(
                job_type, self.clock.now(), requested, forced_failure=forced, fault=fault, **payload
            )
            self._jobs[job.id] = job
            return job

    def poll(self, job_id: str) -> Job | None:
        """The job for the imports route; a poll may make it (and others) due and apply them."""
        with self.lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            if job.status == "pending":
                self.process_due()
            # Counted after processing, on finished jobs too: a job fault's pending-then-404
            # counts every poll.
            job.polls += 1
            return job

    def process_due(self) -> int:
        with self.lock:
            now = self.clock.now()
            return self._apply(
                job
                for job in self._jobs.values()
                if job.polls >= self.polls_until_done and now - job.created_at >= self.delay_seconds
            )

    def process_all(self) -> int:
        with self.lock:
            return self._apply(self._jobs.values())

    def _apply(self, candidates: Iterable[Job]) -> int:
        pending = [job for job in candidates if job.status == "pending" and not job.stuck]
        if self.job_order == "reverse":
            pending.reverse()
        if not pending:
            return 0
        ctx = JobContext(
            {f.id: f for f in self.fields.all()},
            dict(self._forced_errors),
            self.clock.now(),
            self.retain_contacts,
        )
        for job in pending:
            apply(job, self.store, ctx)
        return len(pending)

    def job(self, job_id: str) -> Job | None:
        with self.lock:
            return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        with self.lock:
            return list(self._jobs.values())

    # -- test hooks -------------------------------------------------------------------

    def force_contact_errors(self, reasons: dict[str, str]) -> None:
        with self.lock:
            self._forced_errors.update(reasons)

    def clear_contact_errors(self) -> None:
        with self.lock:
            self._forced_errors.clear()

    def fail_next_jobs(self, count: int, reason: str) -> None:
        self.job_faults.add(JobFault(fail_reason=reason), count)

    # -- contacts ---------------------------------------------------------------------

    def contacts(self) -> list[StoredContact]:
        with self.lock:
            return self.store.all()

    def contact_by_email(self, email: str) -> StoredContact | None:
        with self.lock:
            return self.store.by_identifier("email", email.strip().lower())

    def contact_count(self) -> int:
        """The contacts kept; without retaining, those accepted (every upsert as new)."""
        with self.lock:
            return len(self.store) + self._forgotten

    def contact_exists(self, contact_id: str) -> bool:
        with self.lock:
            return self.store.get(contact_id) is not None

    def search(self, kind: str, values: list[str]) -> dict[str, dict[str, Any]]:
        """The search routes' ``result`` map: one entry per distinct searched value."""
        with self.lock:
            result: dict[str, dict[str, Any]] = {}
            for value in values:
                key = value.lower() if kind in ("email", "any_email") else value
                found = self._find(kind, key)
                result[key] = (
                    {"contact": found.details()} if found else {"error": "contact not found"}
                )
            return result

    def _find(self, kind: str, value: str) -> StoredContact | None:
        if kind == "any_email":
            return self.store.by_any_email(value)
        return self.store.by_identifier(kind, value)
