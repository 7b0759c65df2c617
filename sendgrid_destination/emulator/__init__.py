"""An in-process emulator of the SendGrid Marketing Contacts API, for tests and demos.

``Emulator`` serves the routes the destination uses (upsert, import status, field
definitions, lists, search, delete, count) on a real loopback port, enforces the real
limits and error bodies, processes accepted writes as asynchronous jobs, and adds a fault
plan and a ``/_emulator/`` control plane. See ``docs/emulator.md``.

Layout (moto's split): ``rules`` (SendGrid's rules, from the specs) / ``backend`` (state
and jobs) / ``app``, ``handlers``, ``routes`` (HTTP) / ``faults`` / ``ratelimit`` /
``server`` (transport) / ``facade`` (this API). The emulator imports nothing from the
destination package: it is the independent statement the destination is tested against.
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
