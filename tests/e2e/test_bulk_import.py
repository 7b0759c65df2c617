"""Bulk first loads through CSV import (issue 16.7), end to end through dlt into the emulator.

A load with more new contacts than ``bulk_threshold`` sends them as gzip CSV files
(``PUT /v3/marketing/contacts/imports``, then the file to its upload URL) instead of upserts;
the files are recorded like accepted upserts and their jobs followed, so the guarantees are
the upserts': a rerun sends nothing, an upload refused or a job failed loses nothing, and
what SendGrid ends up holding is what the upserts would have made.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed

from sendgrid_destination.dry_run import latest_plans
from sendgrid_destination.emulator import Emulator
from sendgrid_destination.errors import ConfigurationError
from tests.e2e.conftest import (
    API_KEY,
    cause_of,
    contact_states,
    contacts_table,
    destination_for,
    run_summary,
    state_rows,
    upserted_contacts,
    upserts,
)

IMPORT = "PUT /v3/marketing/contacts/imports"
UPLOAD = "PUT /_uploads/{job_id}"
CUSTOM = {"plan": "Text", "seats": "Number", "renewal": "Date"}


def _routes(emulator: Emulator, route: str) -> list[Any]:
    return [r for r in emulator.requests if r.route == route]


def _imported_contacts(emulator: Emulator) -> int:
    """Rows of the files the upload URL took (each job's requested_count)."""
    taken = {r.path.rsplit("/", 1)[-1] for r in _routes(emulator, UPLOAD) if r.status == 200}
    return sum(job["contact_count"] for job in emulator.jobs() if job["id"] in taken)


def _rich_table(n: int, *, start: int = 0) -> pa.Table:
    """Values that CSV must quote or keep exactly: commas, quotes, line breaks, backslashes,
    non-ASCII, a number with more digits than a double holds, dates, empty cells."""
    texts = ["plain", 'a, "quoted" word', "two\nlines", "back\\slash", "Zürich ✓", None, ""]
    return contacts_table(
        n,
        start=start,
        first_name=[texts[i % len(texts)] for i in range(n)],
        plan=[texts[(i + 3) % len(texts)] for i in range(n)],
        seats=[None if i % 5 == 0 else f"{i}.50000000000000000001" for i in range(n)],
        renewal=[None if i % 4 else f"2025-0{1 + i % 9}-1{i % 10}T08:00:00Z" for i in range(n)],
    )


def _mapping() -> dict[str, Any]:
    return {
        "email": "email",
        "first_name": "first_name",
        "custom_fields": {name: name for name in CUSTOM},
    }


def _with_fields(emulator: Emulator) -> Emulator:
    for name, kind in CUSTOM.items():
        emulator.add_custom_field(name, kind)  # type: ignore[arg-type]
    return emulator


def _comparable(emulator: Emulator) -> dict[str, dict[str, Any]]:
    drop = ("id", "created_at", "updated_at")
    found = {c["email"]: {k: v for k, v in c.items() if k not in drop} for c in emulator.contacts()}
    for contact in found.values():
        custom = contact.get("custom_fields", {})
        custom.update({k: _day(v) for k, v in custom.items() if k.endswith("_D")})
    return found


def _day(value: str) -> str:
    """A Date value's day: upserts send ISO-8601 and CSV files MM/DD/YYYY (the only form
    SendGrid documents for CSV), which the emulator stores as sent."""
    if "/" in value:
        return datetime.strptime(value, "%m/%d/%Y").date().isoformat()
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").date().isoformat()


# -- what goes by CSV ---------------------------------------------------------------------------


def test_a_first_load_over_the_threshold_goes_by_csv_import_and_a_rerun_sends_nothing(
    emulator, run, state_path
) -> None:
    _with_fields(emulator)
    dest = destination_for(
        emulator, state_path, mapping=_mapping(), bulk_threshold=100, bulk_max_contacts_per_file=100
    )

    info = run(_rich_table(250), dest)

    assert upserts(emulator) == []
    assert [r.status for r in _routes(emulator, IMPORT)] == [200, 200, 200]
    assert [r.status for r in _routes(emulator, UPLOAD)] == [200, 200, 200]
    assert not any("Authorization" in r.headers for r in _routes(emulator, UPLOAD))
    assert _imported_contacts(emulator) == len(emulator.contacts()) == 250
    assert set(contact_states(state_path).values()) == {("accepted", None)}
    summary = run_summary(state_path, info)
    assert (summary["new"], summary["imports"], summary["requests"]) == (250, 3, 0)
    assert summary["contacts_sent"] == 250
    assert summary["bytes_sent"] == sum(r.body_bytes for r in _routes(emulator, UPLOAD))
    assert {k: n for k, n in summary["jobs"].items() if n} == {"completed": 3}
    (recorded,) = state_rows(state_path, "SELECT count(*), sum(contact_count) FROM requests")
    assert recorded == (3, 250)

    emulator.clear_requests()
    again = run(_rich_table(250), dest)

    assert [r.route for r in emulator.requests if r.route.startswith("PUT")] == []
    assert run_summary(state_path, again)["unchanged"] == 250


def test_contacts_imported_by_csv_are_the_contacts_upserts_would_have_made(
    clock, tmp_path: Path, run
) -> None:
    data = _rich_table(60)
    found = []
    for bulk in ("always", "never"):
        with Emulator(api_key=API_KEY, clock=clock, job_polls_until_done=1) as emu:
            _with_fields(emu)
            state = tmp_path / f"{bulk}.duckdb"
            run(data, destination_for(emu, state, mapping=_mapping(), bulk=bulk), pipeline=bulk)
            assert len(_routes(emu, UPLOAD)) == (1 if bulk == "always" else 0)
            found.append(_comparable(emu))

    imported, upserted = found
    assert len(imported) == 60
    assert imported == upserted


def test_imported_contacts_join_the_loads_lists(emulator, run, state_path) -> None:
    vip = emulator.add_list("VIP")

    run(contacts_table(5), destination_for(emulator, state_path, bulk="always", list_ids=[vip]))

    assert len(_routes(emulator, UPLOAD)) == 1 and upserts(emulator) == []
    assert all(c["list_ids"] == [vip] for c in emulator.contacts())
    assert len(emulator.contacts()) == 5


def test_lists_by_name_apply_to_imports_and_rows_naming_their_own_lists_go_by_upserts(
    emulator, run, state_path
) -> None:
    # An import takes one set of lists per file: contacts whose list column names lists of
    # their own would lose them in a file, so they go by upserts, grouped by lists.
    vip, gold = emulator.add_list("VIP"), emulator.add_list("Gold")
    segments = [None, "Gold", None, "", "Gold", None]
    dest = destination_for(
        emulator, state_path, bulk="always", lists=["VIP"], list_column="segments"
    )

    run(contacts_table(6, segments=segments), dest)

    assert len(_routes(emulator, UPLOAD)) == 1
    assert upserted_contacts(emulator) == 2  # the two rows naming Gold
    lists = {c["email"]: sorted(c["list_ids"]) for c in emulator.contacts()}
    assert lists == {
        f"user{i}@example.com": sorted([vip, gold] if segments[i] else [vip]) for i in range(6)
    }


def test_a_plan_of_a_bulk_load_sends_no_import_and_no_file(emulator, run, state_path) -> None:
    dest = destination_for(emulator, state_path, bulk="always", plan=True)

    run(contacts_table(30), dest)

    assert {r.method for r in emulator.requests} <= {"GET"}
    assert emulator.contacts() == [] and not state_path.exists()
    summary = latest_plans(state_path)["contacts"]
    assert (summary["plan"], summary["new"], summary["imports"]) == (True, 30, 1)


@pytest.mark.parametrize(
    ("settings", "contacts"),
    [({"bulk_threshold": 40}, 40), ({"bulk": "never", "bulk_threshold": 0}, 40)],
    ids=["auto-at-the-threshold", "never"],
)
def test_a_load_at_the_threshold_or_with_bulk_never_goes_by_upserts(
    emulator, run, state_path, settings: dict[str, Any], contacts: int
) -> None:
    run(contacts_table(contacts), destination_for(emulator, state_path, **settings))

    assert _routes(emulator, IMPORT) == []
    assert upserted_contacts(emulator) == contacts


def test_contacts_without_email_or_with_an_identifier_csv_cannot_carry_go_by_upserts(
    emulator, run, state_path
) -> None:
    # Email is the only identifier with a field definition ID: a CSV cannot carry the others.
    n = 30
    emails = [None if i % 3 == 0 else f"user{i}@example.com" for i in range(n)]
    external = [None if i % 3 == 2 else f"ext-{i}" for i in range(n)]
    data = pa.table({"email": emails, "ext": external, "first_name": ["x"] * n})
    mapping = {"email": "email", "external_id": "ext", "first_name": "first_name"}
    # Text that looks like the other identifier's key does not keep a contact off the CSV.
    data = data.set_column(2, "first_name", [['"external_id":"x"'] * n])

    run(data, destination_for(emulator, state_path, mapping=mapping, bulk="always"))

    assert _imported_contacts(emulator) == 10  # email only: i % 3 == 2
    assert upserted_contacts(emulator) == 20  # external_id only, or both
    assert len(emulator.contacts()) == n
    assert set(contact_states(state_path).values()) == {("accepted", None)}


def test_contacts_whose_other_identifiers_come_from_the_state_go_by_upserts_not_csv(
    emulator, run, state_path
) -> None:
    # Table crm gave the contacts an external_id; table web maps email alone, so the state
    # completes external_id (SendGrid fails an update that leaves one out): a CSV cannot.
    crm = contacts_table(5).append_column("crm_id", pa.array([f"C{i}" for i in range(5)]))
    with_id = {"email": "email", "external_id": "crm_id"}
    run(crm, destination_for(emulator, state_path, mapping=with_id), name="crm")
    emulator.clear_requests()

    web = run(contacts_table(5), destination_for(emulator, state_path, bulk="always"), name="web")

    assert _routes(emulator, IMPORT) == [] and upserted_contacts(emulator) == 5
    summary = run_summary(state_path, web, "web")
    assert (summary["new"], summary["failed_in_jobs"]) == (5, 0)
    held = {c["email"]: (c["external_id"], c["first_name"]) for c in emulator.contacts()}
    assert held == {f"user{i}@example.com": (f"C{i}", f"First{i}") for i in range(5)}


def test_in_a_large_load_changed_contacts_go_by_upserts_and_new_ones_by_csv(
    emulator, run, state_path
) -> None:
    dest = destination_for(emulator, state_path, bulk_threshold=20)
    run(contacts_table(30), dest)
    emulator.clear_requests()
    changed = contacts_table(30, first_name=[f"new-{i}" for i in range(30)])

    info = run(pa.concat_tables([changed, contacts_table(25, start=30)]), dest)

    assert upserted_contacts(emulator) == 30
    assert _imported_contacts(emulator) == 25
    assert emulator.contact("user7@example.com")["first_name"] == "new-7"
    summary = run_summary(state_path, info)
    assert (summary["new"], summary["changed"], summary["imports"]) == (25, 30, 1)


# -- failures -----------------------------------------------------------------------------------


def test_an_upload_refused_gets_a_new_import_and_nothing_is_lost(emulator, run, state_path) -> None:
    emulator.faults.add(UPLOAD, status=403, body="<Error><Code>AccessDenied</Code></Error>")

    run(contacts_table(40), destination_for(emulator, state_path, bulk="always"))

    assert [r.status for r in _routes(emulator, UPLOAD)] == [403, 200]
    assert len(_routes(emulator, IMPORT)) == 2
    assert len(emulator.contacts()) == 40
    # Only the import whose file was taken is in the state; the abandoned one is not.
    (taken,) = [r.path.rsplit("/", 1)[-1] for r in _routes(emulator, UPLOAD) if r.status == 200]
    assert state_rows(state_path, "SELECT job_id, status FROM jobs") == [(taken, "completed")]


def test_an_upload_answered_503_is_sent_again_to_the_same_url(emulator, run, state_path) -> None:
    emulator.faults.add(UPLOAD, status=503, times=2)

    run(contacts_table(40), destination_for(emulator, state_path, bulk="always"))

    assert [r.status for r in _routes(emulator, UPLOAD)] == [503, 503, 200]
    assert len({r.path for r in _routes(emulator, UPLOAD)}) == 1
    assert len(_routes(emulator, IMPORT)) == 1
    assert len(emulator.contacts()) == 40


def test_uploads_refused_again_and_again_fail_the_attempt_and_dlts_retry_sends_the_file(
    emulator, run, state_path
) -> None:
    # Three imports in a row refused: the attempt ends with a transient error (nothing was
    # recorded), and dlt's retry of the file sends it with a fourth import.
    emulator.faults.add(UPLOAD, status=403, times=3)

    info = run(contacts_table(40), destination_for(emulator, state_path, bulk="always"))

    assert [r.status for r in _routes(emulator, UPLOAD)] == [403, 403, 403, 200]
    assert len(emulator.contacts()) == 40
    summary = run_summary(state_path, info)
    assert (summary["new"], summary["contacts_sent"], summary["imports"]) == (40, 40, 1)


def test_a_failed_import_job_fails_its_contacts_and_the_next_run_resends_them(
    emulator, run, state_path
) -> None:
    emulator.fail_next_jobs(1, reason="import failed")
    dest = destination_for(emulator, state_path, bulk_threshold=10)
    data = contacts_table(30)

    first = run(data, dest)

    assert emulator.contacts() == []
    assert set(contact_states(state_path).values()) == {("failed", "import failed")}
    assert run_summary(state_path, first)["failed_in_jobs"] == 30

    second = run(data, dest)

    assert len(emulator.contacts()) == 30
    assert set(contact_states(state_path).values()) == {("accepted", None)}
    assert run_summary(state_path, second)["retried"] == 30


def test_rows_an_import_job_errors_are_failed_with_sendgrids_reason_and_only_they_are_resent(
    emulator, run, state_path
) -> None:
    emulator.force_contact_errors({"user3@example.com": "bad row"})
    dest = destination_for(emulator, state_path, bulk="always")
    data = contacts_table(12)

    run(data, dest)

    states = contact_states(state_path)
    assert states.pop("email:user3@example.com") == ("failed", "bad row")
    assert set(states.values()) == {("accepted", None)}

    emulator.clear_contact_errors()
    emulator.clear_requests()
    run(data, dest)

    assert upserted_contacts(emulator) == 1 and _routes(emulator, UPLOAD) == []
    assert len(emulator.contacts()) == 12


def test_custom_fields_created_by_the_run_are_waited_for_before_the_import(
    clock, state_path, run
) -> None:
    data = contacts_table(4, plan=["a", "b", "c", "d"], seats=[1, 2, 3, 4])
    mapping = {"email": "email", "custom_fields": {"plan": "plan", "seats": "seats"}}
    with Emulator(api_key=API_KEY, clock=clock, custom_field_ready_seconds=10) as emu:
        dest = destination_for(
            emu, state_path, mapping=mapping, create_missing_custom_fields=True, bulk="always"
        )

        run(data, dest)

        ids = {f.name: f.id for f in emu.backend.custom_fields()}
        assert emu.contact("user2@example.com")["custom_fields"] == {
            ids["plan"]: "c",
            ids["seats"]: 3,
        }
        refused = [r for r in _routes(emu, IMPORT) if r.status == 400]
        assert refused and _routes(emu, IMPORT)[-1].status == 200
        assert sum(clock.sleeps) >= 10


# -- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"bulk": "sometimes"}, "bulk must be one of 'auto', 'never', 'always'"),
        ({"bulk_threshold": -1}, "bulk_threshold must be"),
        ({"bulk_max_contacts_per_file": 1_000_001}, "bulk_max_contacts_per_file must be between"),
        ({"bulk_max_contacts_per_file": 0}, "bulk_max_contacts_per_file must be between"),
    ],
)
def test_a_bulk_setting_out_of_range_stops_the_run_before_any_request_naming_it(
    emulator, run, state_path, settings: dict[str, Any], named: str
) -> None:
    with pytest.raises(PipelineStepFailed) as failed:
        run(contacts_table(3), destination_for(emulator, state_path, **settings))

    assert named in str(cause_of(failed.value, ConfigurationError))
    assert emulator.requests == []


def test_bulk_settings_come_from_the_environment_like_every_setting(
    emulator, run, state_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESTINATION__SENDGRID__BULK", "always")

    run(contacts_table(5), destination_for(emulator, state_path))

    assert _imported_contacts(emulator) == 5 and upserts(emulator) == []
