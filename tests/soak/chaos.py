"""The soak's seeded fault plan: what goes wrong before, during and around each run.

``Chaos(seed, emulator, emails)`` draws, for each run, a ``RunPlan``: faults armed before the
run starts (``arm_before``), faults armed once the run has made a given number of requests
(``during``), whether imports jobs stay pending for a while (``job_delay``), and whether and
when the loading process is SIGKILLed (``kill``). Every fault is one the emulator documents
(docs/emulator.md): status faults with rate-limit headers, dropped connections (before and
after the request was processed), a smaller upsert body limit answered 413 or 400, contacts
failed in their job, whole jobs failed, errors-file variants, import status 404s. Faults not
used up by a run stay queued for the next one, as a flaky service's would. ``counts`` tallies
what happened, by kind, for the figures: faults as ``arm`` arms them, and what the soak
reports (``jobs_pending``, kills that landed).
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from sendgrid_destination.emulator import Emulator
from sendgrid_destination.emulator.faults import ErrorsFileFault

UPSERT = "PUT /v3/marketing/contacts"
IMPORT_STATUS = "GET /v3/marketing/contacts/imports/{id}"
ERRORS_FILES: tuple[ErrorsFileFault, ...] = ("other_header", "html", "long_field", "not_found")
REASONS = ("mailbox rejected", "you have hit your contact limit", "error processing contact")

Fault = Callable[[Emulator], None]

# Every kind of trouble the plan makes (the soak checks that its seed made each one).
KINDS = (
    "429",
    "5xx",
    "drop",
    "drop_after",
    "413",
    "400_too_large",
    "contacts_failed_in_job",
    "job_failed",
    *(f"errors_file_{variant}" for variant in ERRORS_FILES),
    "import_404",
    "import_pending_then_404",
    "jobs_pending",
    "kill_early",
    "kill_during",
)


@dataclass(frozen=True)
class Kill:
    """SIGKILL the run ``after_seconds`` after it started or, with ``after_requests``, that
    many API requests (plus ``extra_ms``) into it, whichever the plan names."""

    after_seconds: float | None = None
    after_requests: int | None = None
    extra_ms: float = 0.0

    @property
    def kind(self) -> str:
        return "kill_early" if self.after_requests is None else "kill_during"


@dataclass
class RunPlan:
    before: list[tuple[str, Fault]] = field(default_factory=list)
    during: list[tuple[int, str, Fault]] = field(default_factory=list)  # (after n requests)
    job_delay: float = 0.0
    kill: Kill | None = None


class Chaos:
    def __init__(self, seed: int, emails: Callable[[], list[str]]) -> None:
        self.rng = random.Random(seed)
        self.emails = emails  # the real contacts' emails now (contact errors pick from them)
        self.counts: Counter[str] = Counter()

    def plan(self) -> RunPlan:
        rng = self.rng
        plan = RunPlan()
        for _ in range(rng.choice((0, 1, 2, 2, 3, 4))):
            plan.before.append(self._fault())
        for _ in range(rng.choice((0, 0, 1, 1, 2))):
            plan.during.append((rng.randint(1, 10), *self._fault()))
        if rng.random() < 0.25:
            plan.job_delay = rng.uniform(2.0, 4.0)
        if rng.random() < 0.4:
            # Early kills land while Python imports, dlt extracts or normalizes, or a pending
            # package loads; the others after some requests of the load.
            plan.kill = (
                Kill(after_seconds=rng.uniform(0.2, 3.5))
                if rng.random() < 0.35
                else Kill(after_requests=rng.randint(0, 14), extra_ms=rng.uniform(0, 40))
            )
        return plan

    def arm(self, kind: str, fault: Fault, emulator: Emulator) -> None:
        self.counts[kind] += 1
        fault(emulator)

    # -- the faults (each maker draws its parameters now and returns (kind, arm)) -----------

    def _fault(self) -> tuple[str, Fault]:
        makers: list[Callable[[], tuple[str, Fault]]] = [
            self._rate_limited,
            self._server_error,
            self._drop,
            self._drop_after,
            self._body_limit,
            self._contact_errors,
            self._failed_job,
            self._errors_file,
            self._import_404,
        ]
        return self.rng.choice(makers)()

    def _rate_limited(self) -> tuple[str, Fault]:
        route = self.rng.choice((UPSERT, UPSERT, IMPORT_STATUS))
        times = self.rng.randint(1, 3)

        def arm(emu: Emulator) -> None:
            reset = str(int(time.time()) + 1)
            headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
            emu.faults.add(route, status=429, headers=headers, times=times)

        return "429", arm

    def _server_error(self) -> tuple[str, Fault]:
        route = self.rng.choice((UPSERT, UPSERT, IMPORT_STATUS))
        status = self.rng.choice((500, 502, 503, 504))
        # Up to 4 in a row: more than max_attempts (3), so some exhaust the destination's
        # retries and dlt retries the job.
        times = self.rng.randint(1, 4)

        def arm(emu: Emulator) -> None:
            emu.faults.add(route, status=status, times=times)

        return "5xx", arm

    def _drop(self) -> tuple[str, Fault]:
        times = self.rng.randint(1, 2)

        def arm(emu: Emulator) -> None:
            emu.faults.add(UPSERT, action="drop", times=times)

        return "drop", arm

    def _drop_after(self) -> tuple[str, Fault]:
        def arm(emu: Emulator) -> None:
            # Processed (a job exists) and the answer lost: the contacts are sent again.
            emu.faults.add(UPSERT, action="drop_after")

        return "drop_after", arm

    def _body_limit(self) -> tuple[str, Fault]:
        limit = self.rng.randint(3_000, 9_000)
        answer = self.rng.choice((413, 400))

        def arm(emu: Emulator) -> None:
            emu.limit_upsert_body(limit, answer=answer)

        return ("413" if answer == 413 else "400_too_large"), arm

    def _contact_errors(self) -> tuple[str, Fault]:
        chosen = self._some_emails(1, 25)
        reason = self.rng.choice(REASONS)

        def arm(emu: Emulator) -> None:
            emu.force_contact_errors(dict.fromkeys(chosen, reason))

        return "contacts_failed_in_job", arm

    def _failed_job(self) -> tuple[str, Fault]:
        count = self.rng.randint(1, 2)
        reason = self.rng.choice(REASONS)

        def arm(emu: Emulator) -> None:
            emu.fail_next_jobs(count, reason)

        return "job_failed", arm

    def _errors_file(self) -> tuple[str, Fault]:
        variant = self.rng.choice(ERRORS_FILES)
        count = self.rng.randint(1, 2)
        # The variant matters only for a job with errors: fail the job whole, or many of its
        # contacts.
        whole = self.rng.random() < 0.5
        reason = self.rng.choice(REASONS)
        chosen = [] if whole else self._some_emails(5, 60)

        def arm(emu: Emulator) -> None:
            emu.fault_next_jobs(count, errors_file=variant, fail_reason=reason if whole else None)
            if chosen:
                emu.force_contact_errors(dict.fromkeys(chosen, reason))

        return f"errors_file_{variant}", arm

    def _import_404(self) -> tuple[str, Fault]:
        count = self.rng.randint(1, 2)
        later = self.rng.random() < 0.5
        polls = self.rng.randint(1, 3)

        def arm(emu: Emulator) -> None:
            if later:
                emu.fault_next_jobs(
                    count, import_status="pending_then_not_found", pending_polls=polls
                )
            else:
                emu.fault_next_jobs(count, import_status="not_found")

        return ("import_pending_then_404" if later else "import_404"), arm

    def _some_emails(self, low: int, high: int) -> list[str]:
        emails = sorted(self.emails())
        return self.rng.sample(emails, min(len(emails), self.rng.randint(low, high)))
