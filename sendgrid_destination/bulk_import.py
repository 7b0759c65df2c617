"""New contacts of a large load go by CSV import: a few files instead of hundreds of upserts.

``bulk_import(...)`` is the one hook ``ContactSync`` uses, a context manager around sending.
It yields something whose ``take(contacts)`` keeps the contacts it will import and returns
the rest, for the upserts. Bulk is on when ``config.bulk`` is ``"always"``, or ``"auto"`` and
the load has more than ``bulk_threshold`` new contacts (the plan counts them); off, or when
the account's ``field_definitions`` give email no ID, ``take`` returns every contact.

What goes by CSV: new contacts identified by email, carrying no field without a field
definition ID (``bulk_csv.CsvLayout``) and no list but the load's static ones (a list
column's per-row lists stay on the upserts, grouped by lists); contacts sent before
(changed, retried) and the rest stay on the upserts. They fill files of up to
``bulk_max_contacts_per_file`` contacts (``bulk_csv.CsvFile``, gzip). A full file, and the
last one when the block ends without an error, is sent on a worker thread (``Dispatcher``,
one file at a time) while the render goes on; the next file starts once it is recorded, so
one file is in memory at a time:

1. ``PUT /v3/marketing/contacts/imports`` with the columns' field IDs and the load's static
   list IDs (``list_ids`` and the resolved ``lists``); a 400 naming a custom field that
   ``field_definitions`` still lists (created moments ago) is retried with backoff until
   ``custom_field_ready_timeout``, as upserts are;
2. the gzip file PUT to its ``upload_uri`` with its ``upload_headers`` (``SendGridClient.
   upload_file``: no API key, https or loopback only, no redirects, 5xx and dropped
   connections retried); a URL that refuses the file (expired, used) gets a new import, up to
   ``UPLOAD_ATTEMPTS`` imports per file, then ``UploadRefusedError`` (transient);
3. ``record(ImportedFile)`` on the calling thread once the upload is taken: the caller records
   the file like an accepted upsert (``record_sent``) and follows its job with the run's.

So the state and its guarantees are the upserts': a contact is recorded once its file was
taken, a crash resends at most the files in flight (one being uploaded), and a failed job's
contacts are marked failed from its errors file and sent again by the next run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.api.models import CsvImport
from sendgrid_destination.bulk_csv import CsvFile, CsvLayout, ImportFile, file_contacts
from sendgrid_destination.clock import Clock
from sendgrid_destination.config import SendGridConfiguration
from sendgrid_destination.dispatch import Dispatcher
from sendgrid_destination.errors import (
    ImportRejectedError,
    RequestRejectedError,
    UploadRefusedError,
)
from sendgrid_destination.mapping import Binding
from sendgrid_destination.sender import until_custom_fields_ready
from sendgrid_destination.state import StateStore

logger = logging.getLogger("sendgrid_destination.bulk")

# Imports requested for one file when upload URLs keep refusing it: a refusal means the URL
# (expired, already used), not the file, so a new one usually takes it; three refusals in a
# row mean something else is wrong, and dlt's retry of the load is the better judge.
UPLOAD_ATTEMPTS = 3


class BulkSink(Protocol):
    def take(self, contacts: pa.Table) -> pa.Table:
        """Keep the contacts (``RENDERED``) that go by CSV; return the others."""
        ...


@dataclass(frozen=True)
class ImportedFile:
    """A file its upload URL took: the import's job, its contacts, the bytes uploaded."""

    job_id: str
    contacts: pa.Table
    file_bytes: int


@dataclass(frozen=True)
class _Uploaded:
    job_id: str
    file: ImportFile


def wants_bulk(config: SendGridConfiguration, new_contacts: int) -> bool:
    return config.bulk == "always" or (
        config.bulk == "auto" and new_contacts > config.bulk_threshold
    )


@contextmanager
def bulk_import(
    client: SendGridClient,
    store: StateStore,
    config: SendGridConfiguration,
    clock: Clock,
    bindings: Sequence[Binding],
    *,
    scope: str,
    new_contacts: int,
    record: Callable[[ImportedFile], None],
) -> Iterator[BulkSink]:
    """See the module docstring; ``scope``: the load's static list IDs, sorted and joined
    (``ContactSql.scope``), which every file's import puts its contacts in."""
    layout = _layout(client, bindings, config) if wants_bulk(config, new_contacts) else None
    if layout is None:
        yield _NoBulk()
        return
    logger.info(
        "%d new contacts (bulk = %s, bulk_threshold %d): those identified by email go by CSV "
        "import, in files of up to %d",
        *(new_contacts, config.bulk, config.bulk_threshold, config.bulk_max_contacts_per_file),
    )
    sender = _FileSender(client, layout, scope.split(",") if scope else [], clock, config)
    per_file = config.bulk_max_contacts_per_file
    spill_dir = Path(store.path).parent
    with store.workspace() as cursor:

        def recorded(uploaded: _Uploaded) -> None:  # on this thread: the cursor is not shared
            contacts = file_contacts(cursor, uploaded.file)
            record(ImportedFile(uploaded.job_id, contacts, uploaded.file.file_bytes))

        def new_file(number: int) -> CsvFile:
            table = f"sg_bulk_file_{number}"
            return CsvFile(layout, cursor, spill_dir, table=table, max_contacts=per_file)

        with Dispatcher(sender.send, recorded, 1) as dispatch:
            files = _Files(new_file, dispatch)
            try:
                yield _Bulk(layout, files, scope)
                files.close()  # the last file, when nothing raised
            finally:
                files.discard()


def _layout(
    client: SendGridClient, bindings: Sequence[Binding], config: SendGridConfiguration
) -> CsvLayout | None:
    reserved = {f.name: f.id for f in client.field_definitions().reserved if f.id}
    layout = CsvLayout.of(
        bindings,
        reserved,
        date_format=config.date_format,
        csv_date_format=config.csv_date_format,
    )
    if layout is None:
        logger.warning(
            "bulk import skipped: the mapping has no email, or the account's field_definitions "
            "list no ID for it; new contacts go by upserts"
        )
    return layout


class _NoBulk:
    def take(self, contacts: pa.Table) -> pa.Table:
        return contacts


class _Files:
    """Fills import files and hands each full one to the dispatcher.

    A new file starts only once the one uploading is taken and recorded (the dispatcher's
    drain), so one file is being built or sent at a time.
    """

    def __init__(
        self, new_file: Callable[[int], CsvFile], dispatch: Dispatcher[ImportFile, _Uploaded]
    ) -> None:
        self._new_file = new_file
        self._dispatch = dispatch
        self._open: CsvFile | None = None
        self._made = 0

    def add(self, contacts: pa.Table) -> None:
        while contacts.num_rows:  # bounded: each turn takes rows or sends a non-empty file
            if self._open is None:
                self._dispatch.drain()
                self._made += 1
                self._open = self._new_file(self._made)
            room = self._open.room(contacts)
            if room == 0 and self._open.rows == 0:
                raise AssertionError("a contact larger than a whole import file reached it")
            self._open.add(contacts.slice(0, room))
            contacts = contacts.slice(room)
            if contacts.num_rows or self._open.full:
                self._send_open()

    def close(self) -> None:
        """Send the file being filled, if it has any contact."""
        if self._open is not None and self._open.rows:
            self._send_open()

    def discard(self) -> None:
        """Drop the file being filled, if any (the block ended before it was complete)."""
        if self._open is not None:
            self._open.discard()
            self._open = None

    def _send_open(self) -> None:
        assert self._open is not None
        finished, self._open = self._open.finish(), None
        self._dispatch.send([finished])


class _Bulk:
    def __init__(self, layout: CsvLayout, files: _Files, scope: str) -> None:
        self._layout = layout
        self._files = files
        self._scope = scope

    def take(self, contacts: pa.Table) -> pa.Table:
        # An import takes one set of lists for its whole file: a contact whose row names lists
        # of its own (list_column) stays on the upserts, which are grouped by lists.
        in_scope = pc.equal(pc.fill_null(contacts["list_scope"], ""), self._scope)
        eligible = pc.and_(self._layout.eligible(contacts), in_scope)
        if not pc.any(eligible).as_py():
            return contacts
        self._files.add(contacts.filter(eligible))
        return contacts.filter(pc.invert(eligible))


@dataclass
class _FileSender:
    """Sends one file (on a worker thread): an import, its upload; see the module doc."""

    client: SendGridClient
    layout: CsvLayout
    list_ids: list[str]
    clock: Clock
    config: SendGridConfiguration

    def send(self, file: ImportFile) -> _Uploaded:
        try:
            return _Uploaded(self._upload(file), file)
        finally:
            file.close()

    def _upload(self, file: ImportFile) -> str:
        """The job of the import whose upload URL took the file."""
        refused: UploadRefusedError | None = None
        for _ in range(UPLOAD_ATTEMPTS):
            started = self._start()
            try:
                self.client.upload_file(started, file.data)
            except UploadRefusedError as exc:
                logger.warning("%s; requesting a new import for its file", exc)
                refused = exc
                continue
            logger.info(
                "CSV import %s: %d contacts, %s bytes gzip (%s bytes of CSV) uploaded",
                started.job_id,
                file.contact_count,
                f"{file.file_bytes:,}",
                f"{file.csv_bytes:,}",
            )
            return started.job_id
        assert refused is not None
        raise refused

    def _start(self) -> CsvImport:
        """The import; while SendGrid refuses custom fields it still lists, wait and retry."""
        return until_custom_fields_ready(
            lambda: self.client.start_csv_import(self.layout.field_mappings, self.list_ids),
            self._not_ready,
            self.clock,
            self.config.custom_field_ready_timeout,
            " in CSV imports",
        )

    def _not_ready(self, exc: RequestRejectedError) -> bool:
        """The 400 names custom fields of ours that field_definitions lists: not ready yet."""
        if not isinstance(exc, ImportRejectedError):
            return False
        ours = {c.field_id for c in self.layout.columns if c.custom}
        named = {i for i in ours if any(i in e.message for e in exc.errors)}
        defined = {f.id for f in self.client.field_definitions().custom} if named else set()
        return bool(named) and named <= defined
