"""SendGrid's identifier rule: "in order to update a contact, all of its existing identifiers
must be present". Every update carries the identifiers the contact has; a change SendGrid
cannot make is refused before sending; a permanent failure is not resent forever."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest
import requests

from sendgrid_destination.dry_run import latest_plans
from sendgrid_destination.emulator import Emulator
from sendgrid_destination.state import StateStore
from tests.e2e.conftest import API_KEY, contact_states, rejects_of, run_summary, upserts

MAPPING = {"email": "email", "external_id": "crm_id", "first_name": "first_name"}


def _rows(*rows: tuple[str | None, str | None, str]) -> pa.Table:
    emails, ids, names = zip(*rows, strict=True)
    return pa.table(
        {
            "email": pa.array(emails, pa.string()),
            "crm_id": pa.array(ids, pa.string()),
            "first_name": pa.array(names, pa.string()),
        }
    )


def test_a_row_whose_identifier_became_null_is_completed_and_its_new_name_arrives(
    emulator, destination, run, state_path
) -> None:
    run(_rows(("a@x.com", "A1", "Ann")), destination(mapping=MAPPING))

    second = run(_rows(("a@x.com", None, "Anna")), destination(mapping=MAPPING))

    contact = emulator.contact("a@x.com")
    assert (contact["first_name"], contact["external_id"]) == ("Anna", "A1")
    summary = run_summary(state_path, second)
    assert (summary["changed"], summary["failed_in_jobs"]) == (1, 0)
    (put,) = [r for r in upserts(emulator) if r.status == 202][1:]
    assert put.contact_count == 1


def test_with_filling_off_such_a_row_is_refused_before_sending_naming_the_identifier(
    emulator, destination, run, state_path
) -> None:
    run(_rows(("a@x.com", "A1", "Ann")), destination(mapping=MAPPING))
    emulator.clear_requests()

    run(
        _rows(("a@x.com", None, "Anna")),
        destination(mapping=MAPPING, fill_missing_identifiers=False),
    )

    assert upserts(emulator) == []
    (refused,) = rejects_of(state_path, "validation")
    assert refused["column"] == "crm_id" and refused["reason"].startswith("external_id:")
    assert emulator.contact("a@x.com")["first_name"] == "Ann"


def test_a_row_reaching_the_contact_by_its_other_identifier_updates_the_same_contact(
    emulator, destination, run, state_path
) -> None:
    run(_rows(("a@x.com", "A1", "Ann")), destination(mapping=MAPPING))

    run(_rows((None, "A1", "Annie")), destination(mapping=MAPPING))

    assert len(emulator.contacts()) == 1
    assert emulator.contact("a@x.com")["first_name"] == "Annie"
    assert set(contact_states(state_path)) == {"email:a@x.com"}  # one contact, one key


def test_an_email_change_beside_a_stable_external_id_is_refused_clearly_not_failed_forever(
    emulator, destination, run, state_path
) -> None:
    run(_rows(("a@x.com", "A1", "Ann")), destination(mapping=MAPPING))
    emulator.clear_requests()

    run(_rows(("b@x.com", "A1", "Ann")), destination(mapping=MAPPING))

    assert upserts(emulator) == []
    (refused,) = rejects_of(state_path, "validation")
    assert refused["column"] == "email"
    assert "an upsert cannot change an identifier" in refused["reason"]
    assert [c["email"] for c in emulator.contacts()] == ["a@x.com"]


def _in_sendgrid(emulator: Emulator, method: str, path: str, body: dict[str, Any]) -> None:
    """A call someone makes in SendGrid outside this sync, then SendGrid runs its job."""
    response = requests.request(
        method,
        emulator.base_url + path,
        json=body or None,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    )
    assert response.status_code == 202, response.text
    emulator.process_jobs()


@pytest.mark.parametrize("change", ["identifier removed", "contact deleted", "none"])
def test_a_row_refused_for_an_identifier_change_is_sent_once_the_change_is_made_in_sendgrid(
    emulator, destination, run, state_path, change
) -> None:
    # The state kept the identifiers SendGrid had accepted, and refused the row on every
    # later run: the remedy its reject names (change it in SendGrid) could never work.
    run(_rows(("a@x.com", "A1", "Ann")), destination(mapping=MAPPING))
    emulator.process_jobs()
    run(_rows(("b@x.com", "A1", "Ann")), destination(mapping=MAPPING))
    contact_id = emulator.contact("a@x.com")["id"]
    if change == "identifier removed":
        body = {"identifier_type": "EMAIL", "identifier_value": "a@x.com"}
        _in_sendgrid(emulator, "DELETE", f"/v3/marketing/contacts/{contact_id}/identifiers", body)
    elif change == "contact deleted":
        _in_sendgrid(emulator, "DELETE", f"/v3/marketing/contacts?ids={contact_id}", {})
        # Found by none of its identifiers: gone only once missed on two runs in a row (a
        # search may lag behind SendGrid's writes), so the first run refuses the row again.
        missed = run(_rows(("b@x.com", "A1", "Anna")), destination(mapping=MAPPING))
        assert run_summary(state_path, missed)["rejected"] == 1

    third = run(_rows(("b@x.com", "A1", "Anna")), destination(mapping=MAPPING))
    emulator.process_jobs()

    summary = run_summary(state_path, third)
    held = [(c.get("email"), c.get("external_id"), c["first_name"]) for c in emulator.contacts()]
    if change == "none":  # SendGrid still holds a@x.com: refused again, nothing sent
        assert (summary["contacts_sent"], summary["rejected"]) == (0, 1)
        assert held == [("a@x.com", "A1", "Ann")]
    else:  # the same contact gains b@x.com, or a new one is made with both
        assert (summary["contacts_sent"], summary["rejected"]) == (1, 0)
        assert any("identifier change" in note for note in summary["notes"])
        assert held == [("b@x.com", "A1", "Anna")]
        if change == "identifier removed":
            assert emulator.contacts()[0]["id"] == contact_id
        emulator.clear_requests()
        run(_rows(("b@x.com", "A1", "Anna")), destination(mapping=MAPPING))
        assert upserts(emulator) == []  # the rerun finds it unchanged


def test_a_table_mapping_only_the_email_still_sends_the_identifiers_its_contacts_have(
    emulator, destination, run, state_path
) -> None:
    run(_rows(("a@x.com", "A1", "Ann")), destination(mapping=MAPPING), name="crm")

    run(
        pa.table({"email": ["a@x.com"], "first_name": ["Anne"]}),
        destination(mapping={"email": "email", "first_name": "first_name"}),
        name="newsletter",
    )

    contact = emulator.contact("a@x.com")
    assert (contact["first_name"], contact["external_id"]) == ("Anne", "A1")


def test_a_permanent_failure_is_sent_once_then_waits_for_its_row_to_change(
    emulator, destination, run, state_path
) -> None:
    data = pa.table({"email": ["u1@x.com", "u2@x.com"], "first_name": ["One", "Two"]})
    emulator.force_contact_errors({"u2@x.com": "email 'u2@x.com' is not valid"})
    first = run(data, destination())
    assert run_summary(state_path, first)["failed_for_good"] == 1
    emulator.clear_contact_errors()
    emulator.clear_requests()

    second = run(data, destination())

    assert upserts(emulator) == []  # not resent while the row is the same
    assert run_summary(state_path, second)["waiting_for_change"] == 1

    changed = data.set_column(1, "first_name", [["One", "Deux"]])
    run(changed, destination())

    assert sum(r.contact_count or 0 for r in upserts(emulator)) == 1
    assert emulator.contact("u2@x.com")["first_name"] == "Deux"


def test_a_failure_the_job_does_not_explain_is_resent_as_before(
    emulator, destination, run, state_path
) -> None:
    data = pa.table({"email": ["u1@x.com"], "first_name": ["One"]})
    emulator.force_contact_errors({"u1@x.com": "internal error, try again"})
    run(data, destination())
    emulator.clear_contact_errors()
    emulator.clear_requests()

    second = run(data, destination())

    assert sum(r.contact_count or 0 for r in upserts(emulator)) == 1
    assert run_summary(state_path, second)["retried"] == 1


# -- a contact created with one identifier whose row gains another -------------------------


def _assert_four_people_x0_with_email(emulator: Emulator, email: str) -> None:
    """SendGrid holds the four people, X0 one contact with its external_id and ``email``."""
    emulator.process_jobs()
    assert len(emulator.contacts()) == 4
    (first,) = [c for c in emulator.contacts() if c.get("external_id") == "X0"]
    assert first["email"] == email


def _people(first_email: str | None, n: int = 4) -> pa.Table:
    """n people known by external_id only; the first one's row may carry an email too."""
    return _rows(*[(first_email if i == 0 else None, f"X{i}", f"N{i}") for i in range(n)])


@pytest.mark.parametrize("identifiers", [("email", "crm_id"), ("phone_number_id", "crm_id")])
def test_a_row_that_gains_a_higher_identifier_stays_its_contact_and_a_rerun_sends_nothing(
    emulator, destination, run, state_path, identifiers
) -> None:
    gained, _ = identifiers
    mapping = {gained: "email", "external_id": "crm_id", "first_name": "first_name"}
    value = "a@x.com" if gained == "email" else "+14155550100"
    run(_people(None), destination(mapping=mapping, mode="mirror"))

    second = run(_people(value), destination(mapping=mapping, mode="mirror"))
    emulator.clear_requests()
    third = run(_people(value), destination(mapping=mapping, mode="mirror"))

    summary = run_summary(state_path, second)
    assert (summary["changed"], summary["new"], summary["left_source"]) == (1, 0, 0)
    assert summary["deleted"] == 0
    emulator.process_jobs()
    assert len(emulator.contacts()) == 4
    first = next(c for c in emulator.contacts() if c.get("external_id") == "X0")
    assert first.get(gained) == value
    assert "external_id:X0" in contact_states(state_path)  # still its key
    assert upserts(emulator) == [] and run_summary(state_path, third)["unchanged"] == 4


def test_membership_keeps_a_contact_in_its_list_when_its_row_gains_an_email(
    emulator, destination, run
) -> None:
    vip = emulator.add_list("VIP")
    settings = {"mapping": MAPPING, "mode": "membership", "list_ids": [vip]}
    run(_people(None), destination(**settings))

    run(_people("a@x.com"), destination(**settings))
    run(_people("a@x.com"), destination(**settings))

    emulator.process_jobs()
    first = next(c for c in emulator.contacts() if c.get("external_id") == "X0")
    assert first["list_ids"] == [vip] and first["email"] == "a@x.com"


def test_a_gained_email_whose_update_failed_in_its_job_is_retried_under_the_contacts_key(
    emulator, destination, run, state_path
) -> None:
    settings = {"mapping": MAPPING, "mode": "mirror", "max_delete_fraction": 1.0}
    run(_people(None), destination(**settings))
    emulator.force_contact_errors({"a@x.com": "internal error, try again"})
    run(_people("a@x.com"), destination(**settings))  # the update fails in its job
    emulator.clear_contact_errors()

    third = run(_people("a@x.com"), destination(**settings))

    summary = run_summary(state_path, third)
    assert (summary["retried"], summary["new"], summary["deleted"]) == (1, 0, 0)
    _assert_four_people_x0_with_email(emulator, "a@x.com")


def test_contacts_sent_with_one_identifier_alone_do_not_put_the_rule_in_play_for_other_tables(
    emulator, destination, run, state_path
) -> None:
    run(_people(None), destination(mapping=MAPPING))  # every row: its external_id only

    with StateStore.open(state_path, read_only=True) as store:
        kept = store.con.execute("SELECT count(*) FROM identities").fetchall()[0][0]
        assert (kept, store.has_identities()) == (0, False)


@pytest.mark.slow
def test_a_million_rows_resolve_against_a_million_known_contacts_within_the_memory_cap(
    destination, run, state_path
) -> None:
    # Every contact known with its email and external_id (as a load with both mapped leaves
    # them): the plan matches each row to its contact under the state's memory cap (the
    # match ran out of memory at this size).
    n = 1_000_000
    with StateStore.open(state_path) as store:
        store.con.execute(
            "INSERT INTO identities SELECT 'email:u' || i || '@x.com', 'u' || i || '@x.com', "
            f"NULL, 'X' || i, NULL FROM range({n}) t(i)"
        )
    rows = pa.table(
        {
            "email": [f"u{i}@x.com" for i in range(n)],
            "crm_id": [f"X{i}" for i in range(n)],
            "first_name": ["N"] * n,
        }
    )

    run(rows, destination(mapping=MAPPING, plan=True))  # a plan: the match, nothing sent

    planned = latest_plans(state_path)["contacts"]
    assert (planned["rows_read"], planned["rejected"], planned["new"]) == (n, 0, n)


@pytest.mark.slow
def test_a_rerun_of_300000_rows_with_two_identifiers_matches_its_contacts_within_the_memory_cap(
    emulator, destination, run, state_path
) -> None:
    # Against the contacts and identities its own first run recorded, the rows as wide as the
    # check makes them: matching them and joining the match back in one query ran out of the
    # state's memory cap at this size (every rerun of such a table failed).
    n = 300_000
    rows = pa.table(
        {
            "email": [f"u{i}@x.com" for i in range(n)],
            "crm_id": [f"X{i}" for i in range(n)],
            "first_name": ["N"] * n,
        }
    )
    run(rows, destination(mapping=MAPPING))
    emulator.clear_requests()

    again = run(rows, destination(mapping=MAPPING))

    assert upserts(emulator) == [] and run_summary(state_path, again)["unchanged"] == n


@pytest.mark.parametrize("mode", ["upsert", "mirror"])
def test_a_row_gaining_an_email_while_its_contacts_creating_job_is_pending_stays_that_contact(
    emulator, destination, run, state_path, mode
) -> None:
    settings = {"mapping": MAPPING, "mode": mode, "max_delete_fraction": 1.0}
    emulator.backend.polls_until_done = 10_000  # the first run's job outlives it
    run(_people(None, 2), destination(**settings, job_wait_timeout=1))
    run(_people("a@x.com", 2), destination(**settings, job_wait_timeout=1))  # held back
    emulator.backend.polls_until_done = 1
    emulator.process_jobs()

    run(_rows(("a@x.com", "X0", "Ann"), (None, "X1", "N1")), destination(**settings))

    emulator.process_jobs()
    (x0,) = [c for c in emulator.contacts() if c.get("external_id") == "X0"]
    assert (x0.get("email"), x0.get("first_name")) == ("a@x.com", "Ann")
    assert set(contact_states(state_path)) == {"external_id:X0", "external_id:X1"}


def test_a_mirrored_contact_whose_mapping_gains_the_email_column_is_kept_not_deleted(
    emulator, destination, run, state_path
) -> None:
    only_id = {"external_id": "crm_id", "first_name": "first_name"}
    settings = {"mode": "mirror", "max_delete_fraction": 1.0}
    run(_people(None), destination(mapping=only_id, **settings))

    second = run(_people("a@x.com"), destination(mapping=MAPPING, **settings))

    assert run_summary(state_path, second)["deleted"] == 0
    _assert_four_people_x0_with_email(emulator, "a@x.com")


def test_a_state_that_tracks_one_contact_under_two_keys_matches_the_row_once(
    emulator, destination, run, state_path
) -> None:
    # An earlier version keyed X0's first send external_id:X0, and the send after its row
    # gained an email email:a@x.com (recorded in identities with both): one SendGrid contact.
    run(_people(None), destination(mapping=MAPPING))
    with StateStore.open(state_path) as store:
        store.con.execute(
            "INSERT INTO contacts (stream, contact_key, seq, first_seq) "
            "SELECT stream, 'email:a@x.com', seq, first_seq FROM contacts "
            "WHERE contact_key = 'external_id:X0'"
        )
        store.con.execute(
            "INSERT INTO identities VALUES ('email:a@x.com', 'a@x.com', NULL, 'X0', NULL)"
        )

    run(
        _rows(("a@x.com", "X0", "Ann"), *[(None, f"X{i}", f"N{i}") for i in (1, 2, 3)]),
        destination(mapping=MAPPING),
    )

    assert rejects_of(state_path) == []
    emulator.process_jobs()
    (x0,) = [c for c in emulator.contacts() if c.get("external_id") == "X0"]
    assert x0["first_name"] == "Ann"


@pytest.mark.parametrize("carried", ["external_id", "email"])
@pytest.mark.parametrize("wrong, owner", [(7, 3), (3, 7)])
def test_a_row_carrying_another_contacts_identifier_neither_replaces_that_contacts_row_nor_deletes_its_own(  # noqa: E501
    emulator, destination, run, state_path, wrong, owner, carried
) -> None:
    # A data error: the row carries the owner's identifier beside its own other one. With the
    # owner's email, its first identifier matches the owner, yet it stands for neither.
    settings = {"mapping": MAPPING, "mode": "mirror"}
    rows = [(f"user{i}@example.com", f"E{i}", f"First{i}") for i in range(20)]
    run(_rows(*rows), destination(**settings))
    rows[owner] = (rows[owner][0], rows[owner][1], "Renamed")  # the owner's true row changes
    email, external_id, name = rows[wrong]
    if carried == "email":
        rows[wrong] = (rows[owner][0], external_id, name)
    else:
        rows[wrong] = (email, f"E{owner}", name)

    second = run(_rows(*rows), destination(**settings))

    summary = run_summary(state_path, second)
    assert (summary["rejected"], summary["superseded"], summary["changed"]) == (1, 0, 1)
    assert (summary["left_source"], summary["deleted"]) == (0, 0)
    assert emulator.contact(f"user{owner}@example.com")["first_name"] == "Renamed"
    assert emulator.contact(f"user{wrong}@example.com")["external_id"] == f"E{wrong}"
    (reject,) = rejects_of(state_path)
    assert "belong to different contacts" in reject["reason"]
    assert reject["row_number"] == wrong
    named = owner if carried == "email" else wrong  # the contact its email matches
    assert reject["contact_key"] == f"email:user{named}@example.com"


def test_a_row_carrying_another_contacts_identifier_stands_for_its_contact_tracked_by_any_key(
    emulator, destination, run, state_path
) -> None:
    # Contact 0 was created by its external_id alone (tracked as external_id:E0), then gained
    # an email. Its row then carries user1's E1: refused, and still contact 0's row.
    settings = {"mapping": MAPPING, "mode": "mirror", "max_delete_fraction": 0.5}
    rows = [(f"user{i}@example.com", f"E{i}", f"First{i}") for i in range(20)]
    rows[0] = (None, "E0", "First0")
    run(_rows(*rows), destination(**settings))
    rows[0] = ("user0@example.com", "E0", "First0")
    run(_rows(*rows), destination(**settings))
    rows[0] = ("user0@example.com", "E1", "First0")

    third = run(_rows(*rows), destination(**settings))

    summary = run_summary(state_path, third)
    assert (summary["rejected"], summary["left_source"], summary["deleted"]) == (1, 0, 0)
    assert emulator.contact("user0@example.com")["external_id"] == "E0"
    (reject,) = rejects_of(state_path)
    assert reject["contact_key"] == "external_id:E0"
