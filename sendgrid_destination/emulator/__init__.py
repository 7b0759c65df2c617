"""An in-process emulator of the SendGrid Marketing Contacts API, for tests and demos.

``Emulator`` serves the routes the destination uses (upsert, CSV import and its upload
host, import status, field definitions, lists, search, delete, identifier removal, count)
on a real loopback port, enforces the real limits and error bodies, processes accepted
writes as asynchronous jobs, and adds a fault plan and a ``/_emulator/`` control plane.
See ``docs/emulator.md``.

Layout (moto's split): ``rules`` (SendGrid's rules, from the specs) / ``backend``,
``store``, ``definitions``, ``import_jobs``, ``csv_import`` (state and jobs) / ``app``,
``handlers``, ``routes``, ``uploads``, ``errors``, ``http_types`` (HTTP) / ``faults`` /
``ratelimit`` / ``server`` (transport) / ``control`` (the control plane) / ``facade``
(this API) / ``cli``. The emulator imports nothing from the destination package but
``csv_fields`` (no rule of SendGrid's: the one lock around Python's process-wide CSV cell
limit, which both read under): it is the independent statement the destination is tested
against.
"""

from . import rules
from .app import RecordedRequest
from .facade import Emulator
from .faults import BodyLimit, FaultPlan, FaultRule, JobFault
from .ratelimit import DEFAULT_RATE_LIMIT, RateLimit

__all__ = [
    "DEFAULT_RATE_LIMIT",
    "BodyLimit",
    "Emulator",
    "FaultPlan",
    "FaultRule",
    "JobFault",
    "RateLimit",
    "RecordedRequest",
    "rules",
]
