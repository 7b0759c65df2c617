"""When a row's fingerprint does not match the stored one, the JSON decides.

A fingerprint is a 64-bit digest of a contact's values (DuckDB's ``hash`` for fixed-width
ones, which DuckDB may change between versions; MD5 for text); the content hash (64 bits of the
MD5 of the JSON; its 32 hex digits before schema 8, a SHA-256 before schema 5) is stable.
These tests tamper with the stored fingerprints, remove them as a state file of schema version
2 had none, put back hex MD5s or SHA-256 hashes, or rewrite the state in schema 5's layout (a
status per contact), and check on the wire that nothing unchanged is resent and that the
fingerprints and hashes are rewritten. Two more show changes DuckDB's ``hash`` of text missed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pyarrow as pa

from sendgrid_destination.contact_sql import ContactSql
from sendgrid_destination.plan import Plan
from sendgrid_destination.source_rows import SourceRows
from sendgrid_destination.state import SCHEMA_VERSION, ContactStatus, StateStore
from tests.e2e.conftest import (
    DEFAULT_MAPPING,
    contacts_table,
    rejects_of,
    run_summary,
    state_rows,
    upserts,
)
from tests.planning import contact_sql, legacy_hash, plan_rows


def _fingerprints(state_path: Path) -> dict[str, int | None]:
    rows = state_rows(state_path, "SELECT contact_key, fingerprint FROM contacts")
    return {key: fingerprint for key, fingerprint in rows}


def _edit_state(state_path: Path, *statements: str) -> None:
    con = duckdb.connect(str(state_path))
    try:
        for sql in statements:
            con.execute(sql).fetchall()
    finally:
        con.close()


def test_every_contact_sent_has_a_fingerprint_in_the_state(
    emulator, destination, run, state_path
) -> None:
    run(contacts_table(50), destination())

    fingerprints = _fingerprints(state_path)
    assert len(fingerprints) == 50
    assert all(isinstance(f, int) for f in fingerprints.values())
    assert len(set(fingerprints.values())) == 50


def test_stale_fingerprints_make_the_json_decide_and_nothing_unchanged_is_resent(
    emulator, destination, run, state_path
) -> None:
    data = contacts_table(120)
    run(data, destination())
    before = _fingerprints(state_path)
    # What a DuckDB release with another hash function would leave behind.
    _edit_state(state_path, "UPDATE contacts SET fingerprint = fingerprint // 2 + 1")
    emulator.clear_requests()

    second = run(data, destination())

    assert upserts(emulator) == []
    summary = run_summary(state_path, second)
    assert (summary["unchanged"], summary["new"], summary["changed"]) == (120, 0, 0)
    assert _fingerprints(state_path) == before


def test_a_changed_row_with_a_stale_fingerprint_is_still_sent(
    emulator, destination, run, state_path
) -> None:
    data = contacts_table(30)
    run(data, destination())
    _edit_state(state_path, "UPDATE contacts SET fingerprint = NULL")
    emulator.clear_requests()
    names = data["first_name"].to_pylist()
    names[4] = "Renamed"
    changed = data.set_column(data.schema.get_field_index("first_name"), "first_name", [names])

    second = run(changed, destination())

    assert sum(r.contact_count or 0 for r in upserts(emulator)) == 1
    assert emulator.contact("user4@example.com")["first_name"] == "Renamed"
    summary = run_summary(state_path, second)
    assert (summary["unchanged"], summary["changed"]) == (29, 1)


def _hex_md5s(data: pa.Table) -> pa.Table:
    """Per contact of ``data`` (the default mapping), the 32 hex digits of the MD5 of its list
    scope and JSON, as schemas 5 to 7 recorded it (computed again: the state keeps 64 bits)."""
    contacts = plan_rows(contact_sql(DEFAULT_MAPPING, data.schema), data).contacts
    texts = zip(
        contacts["list_scope"].to_pylist(), contacts["contact_json"].to_pylist(), strict=True
    )
    return pa.table(
        {
            "contact_key": contacts["contact_key"],
            "h": [hashlib.md5(f"{scope}\n{cell}".encode()).hexdigest() for scope, cell in texts],
        }
    )


def _put_back_hex_md5s(state_path: Path, data: pa.Table) -> None:
    """Content hashes as schemas 5 to 7 recorded them: hex MD5 text in ``content_hash``."""
    con = duckdb.connect(str(state_path))
    try:
        con.register("hexes", _hex_md5s(data))
        con.execute(
            "UPDATE contacts SET content_hash = h.h FROM hexes h "
            "WHERE contacts.contact_key = h.contact_key"
        )
    finally:
        con.close()


# Schemas before 8 kept a deferred contact's hash as text (these tests defer none).
_DEFERRED_AS_TEXT = "ALTER TABLE deferred ALTER content_hash TYPE VARCHAR USING NULL"


def _as_schema_7(state_path: Path, data: pa.Table) -> None:
    """Rewrite the state in the layout schema 7 left: hex MD5s, no ``content_md5``."""
    _put_back_hex_md5s(state_path, data)
    _edit_state(
        state_path,
        "DROP VIEW contact_status",
        "ALTER TABLE contacts DROP COLUMN content_md5",
        _DEFERRED_AS_TEXT,
        "UPDATE meta SET value = '7' WHERE key = 'schema_version'",
    )


def _as_schema_5(state_path: Path, data: pa.Table, *, last_job_pending: bool = False) -> None:
    """Rewrite the state in the layout schema 5 left: hex MD5s, every
    contact with its own job id, run id, time and status, jobs without ``contacts_status``, no
    ``contact_status`` view. With ``last_job_pending``, the last job is unfinished and its
    contacts are ``sent``."""
    _put_back_hex_md5s(state_path, data)
    _edit_state(
        state_path,
        "CREATE TABLE old_contacts AS SELECT c.stream, c.contact_key, c.content_hash, "
        "s.job_id, s.status, c.reason, r.run_id, r.sent_at AS updated_at, c.fingerprint, "
        "c.seq FROM contacts c JOIN contact_status s USING (stream, contact_key) "
        "JOIN requests r ON r.seq = c.seq",
        "DROP VIEW contact_status",
        "DROP TABLE contacts",
        "ALTER TABLE old_contacts RENAME TO contacts",
        "ALTER TABLE jobs DROP COLUMN contacts_status",
        _DEFERRED_AS_TEXT,
        "UPDATE meta SET value = '5' WHERE key = 'schema_version'",
    )
    if last_job_pending:
        _edit_state(
            state_path,
            "UPDATE jobs SET status = 'pending', finished_at = NULL "
            "WHERE job_id = (SELECT job_id FROM requests ORDER BY seq DESC LIMIT 1)",
            "UPDATE contacts SET status = 'sent' WHERE seq = (SELECT max(seq) FROM requests)",
        )


def _rerun_resends_nothing(emulator, destination, run, state_path: Path, data: pa.Table) -> None:
    """Run ``data`` again on the upgraded state: nothing sent, every row unchanged, the file
    now at the current schema version."""
    emulator.clear_requests()

    second = run(data, destination())

    assert upserts(emulator) == []
    assert run_summary(state_path, second)["unchanged"] == data.num_rows
    assert state_rows(state_path, "SELECT value FROM meta WHERE key = 'schema_version'") == [
        (str(SCHEMA_VERSION),)
    ]


def test_a_schema_5_state_with_a_pending_job_is_migrated_and_the_job_still_settles_its_contacts(
    emulator, destination, run, state_path
) -> None:
    data = contacts_table(40)
    run(data, destination(max_contacts_per_request=15))
    _as_schema_5(state_path, data, last_job_pending=True)
    legacy = state_rows(state_path, "SELECT status, count(*) FROM contacts GROUP BY ALL")
    assert sorted(legacy) == [("accepted", 30), ("sent", 10)]
    _rerun_resends_nothing(emulator, destination, run, state_path, data)
    assert state_rows(state_path, "SELECT status, count(*) FROM contact_status GROUP BY ALL") == [
        ("accepted", 40)
    ]
    changed = data.set_column(
        data.schema.get_field_index("first_name"), "first_name", [["New"] * data.num_rows]
    )
    emulator.clear_requests()
    run(changed, destination())
    assert sum(r.contact_count or 0 for r in upserts(emulator)) == 40
    # Resent contacts are rows of the new layout: no status of their own.
    assert state_rows(state_path, "SELECT count(*) FROM contacts WHERE status IS NULL") == [(40,)]


def test_a_state_file_of_schema_version_2_is_migrated_without_resending_its_contacts(
    emulator, destination, run, state_path
) -> None:
    data = contacts_table(40)
    run(data, destination(max_contacts_per_request=15))
    _as_schema_5(state_path, data)
    _edit_state(
        state_path,
        "ALTER TABLE contacts DROP COLUMN fingerprint",
        "ALTER TABLE contacts DROP COLUMN seq",
        "ALTER TABLE requests DROP COLUMN seq",
        "UPDATE meta SET value = '2' WHERE key = 'schema_version'",
    )
    _rerun_resends_nothing(emulator, destination, run, state_path, data)
    assert None not in _fingerprints(state_path).values()
    # Requests are numbered in the order sent, and each contact carries its request's number.
    numbered = state_rows(
        state_path,
        "SELECT r.seq, count(*) FROM contact_status c JOIN requests r USING (job_id) "
        "WHERE c.seq = r.seq GROUP BY r.seq ORDER BY r.seq",
    )
    assert [seq for seq, _ in numbered] == [1, 2, 3]
    assert sorted(count for _, count in numbered) == [10, 15, 15]


def test_the_hex_md5s_of_a_schema_7_state_become_the_same_digests_and_nothing_is_resent(
    emulator, destination, run, state_path
) -> None:
    data = contacts_table(40)
    run(data, destination(max_contacts_per_request=15))
    _as_schema_7(state_path, data)
    # Without fingerprints, only the converted hashes can find the rows unchanged.
    _edit_state(state_path, "UPDATE contacts SET fingerprint = NULL")

    _rerun_resends_nothing(emulator, destination, run, state_path, data)

    hexes = dict(zip(*_hex_md5s(data).to_pydict().values(), strict=True))
    rows = state_rows(state_path, "SELECT contact_key, content_hash, content_md5 FROM contacts")
    assert {text for _, text, _ in rows} == {None}
    assert {key: number for key, _, number in rows} == {
        key: int(h[:16], 16) for key, h in hexes.items()
    }


def _put_back_sha256_hashes(state_path: Path, data: pa.Table) -> None:
    """Make the state what schema 4 left: SHA-256 content hashes (and no fingerprints, so the
    render must compare them)."""
    sql = contact_sql(DEFAULT_MAPPING, data.schema)
    contacts = plan_rows(sql, data).contacts
    legacy = pa.table(
        {
            "contact_key": contacts["contact_key"],
            "h": legacy_hash(sql, contacts["contact_json"]),
        }
    )
    con = duckdb.connect(str(state_path))
    try:
        con.register("legacy", legacy)
        con.execute(
            "UPDATE contacts SET content_hash = l.h, fingerprint = NULL FROM legacy l "
            "WHERE contacts.contact_key = l.contact_key"
        )
        con.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    finally:
        con.close()


def test_sha256_hashes_of_a_schema_4_state_are_compared_as_such_then_rewritten_as_md5(
    emulator, destination, run, state_path
) -> None:
    data = contacts_table(40)
    run(data, destination())
    _as_schema_5(state_path, data)
    _put_back_sha256_hashes(state_path, data)
    assert {len(h) for (h,) in state_rows(state_path, "SELECT content_hash FROM contacts")} == {64}
    names = data["first_name"].to_pylist()
    names[7] = "Renamed"
    changed = data.set_column(data.schema.get_field_index("first_name"), "first_name", [names])
    emulator.clear_requests()

    second = run(changed, destination())

    assert sum(r.contact_count or 0 for r in upserts(emulator)) == 1
    assert emulator.contact("user7@example.com")["first_name"] == "Renamed"
    summary = run_summary(state_path, second)
    assert (summary["unchanged"], summary["changed"]) == (39, 1)
    hashes = state_rows(state_path, "SELECT content_hash, content_md5 FROM contacts")
    assert {text for text, _ in hashes} == {None}
    assert None not in {number for _, number in hashes}
    assert None not in _fingerprints(state_path).values()

    emulator.clear_requests()
    run(changed, destination())
    assert upserts(emulator) == []


def _accepted_state(path: Path, sql: ContactSql, data: pa.Table) -> None:
    result = plan_rows(sql, data)
    with StateStore.open(path) as store:
        store.record_sent(
            run_id="r1", stream="s", job_id="j1", contacts=result.contacts, body_bytes=1
        )
        job = {
            "id": "j1",
            "status": "completed",
            "created_count": data.num_rows,
            "updated_count": 0,
            "errored_count": 0,
            "errors_url": None,
        }
        store.record_job_outcome(job, failed=None, contacts_status=ContactStatus.ACCEPTED)


def test_the_plan_of_unchanged_rows_leaves_nothing_to_render_and_keeps_only_changes(
    tmp_path: Path,
) -> None:
    data = contacts_table(10)
    sql = contact_sql({"email": "email", "first_name": "first_name"}, data.schema)
    _accepted_state(tmp_path / "state.duckdb", sql, data)
    names = data["first_name"].to_pylist()
    names[3] = "Changed"
    changed = data.set_column(1, "first_name", [names])

    with StateStore.open(tmp_path / "state.duckdb") as store:
        with Plan.build(store, sql, "s", "r2", SourceRows.from_batch(_batch(data))) as same:
            assert (same.counts.unchanged, same.counts.to_render, same.rejects.num_rows) == (
                10,
                0,
                0,
            )
        with Plan.build(store, sql, "s", "r2", SourceRows.from_batch(_batch(changed))) as plan:
            rendered = plan.render(changed, 0)

    assert (plan.counts.unchanged, plan.counts.to_render) == (9, 1)
    assert rendered.to_send["row_number"].to_pylist() == [3]
    assert rendered.to_send["is_new"].to_pylist() == [False]
    assert rendered.to_send["prev_hash"][0].as_py() is not None
    assert rendered.unchanged.num_rows == 0


def _batch(table: pa.Table) -> pa.RecordBatch:
    return table.combine_chunks().to_batches()[0]


def test_an_address_edited_where_duckdbs_string_hash_collides_is_sent_on_the_rerun(
    emulator, destination, run, state_path
) -> None:
    # DuckDB's hash() gives these two strings one value (it mixes a string 8 bytes at a time).
    old, new = "Apt 1200, Box 1209", "Apt 1207, Box 1909"
    assert duckdb.sql(f"SELECT hash('{old}') = hash('{new}')").fetchall() == [(True,)]
    mapping = {"email": "email", "address_line_2": "address_line_2"}
    run(
        pa.table({"email": ["a@example.com"], "address_line_2": [old]}),
        destination(mapping=mapping),
    )
    emulator.clear_requests()

    second = run(
        pa.table({"email": ["a@example.com"], "address_line_2": [new]}),
        destination(mapping=mapping),
    )

    summary = run_summary(state_path, second)
    assert (summary["changed"], summary["unchanged"]) == (1, 0)
    emulator.process_jobs()
    assert emulator.contact("a@example.com")["address_line_2"] == new


def test_a_date_edited_into_an_invalid_one_where_the_hash_collides_is_refused_on_the_rerun(
    emulator, destination, run, state_path
) -> None:
    valid, invalid = "2024-05-17 10:21", "2024-05.17 10:2z"
    assert duckdb.sql(f"SELECT hash('{valid}') = hash('{invalid}')").fetchall() == [(True,)]
    emulator.add_custom_field("visit", "Date")
    mapping = {"email": "email", "custom_fields": {"visit": "visit"}}
    run(pa.table({"email": ["a@example.com"], "visit": [valid]}), destination(mapping=mapping))

    second = run(
        pa.table({"email": ["a@example.com"], "visit": [invalid]}), destination(mapping=mapping)
    )

    assert run_summary(state_path, second)["unchanged"] == 0
    refused = rejects_of(state_path, "validation")
    assert [(r["column"], r["row_number"]) for r in refused] == [("visit", 0)]


def _two_contacts() -> pa.Table:
    return pa.table({"email": ["u1@x.com", "u2@x.com"], "first_name": ["One", "Two"]})


def test_a_contact_a_job_failed_for_good_still_waits_when_only_its_fingerprint_changed(
    emulator, destination, run, state_path
) -> None:
    # A DuckDB upgrade changes every fingerprint; so does a re-cased email (its raw value).
    emulator.force_contact_errors({"u2@x.com": "email 'u2@x.com' is not valid"})
    run(_two_contacts(), destination())
    emulator.clear_contact_errors()
    _edit_state(state_path, "UPDATE contacts SET fingerprint = fingerprint // 2 + 1")
    emulator.clear_requests()

    second = run(_two_contacts(), destination())
    recased = run(pa.table({"email": ["u1@x.com", " U2@X.com"], "first_name": ["One", "Two"]}),
                  destination())  # fmt: skip

    assert upserts(emulator) == []  # the same JSON SendGrid refused: never sent again
    for info in (second, recased):
        assert run_summary(state_path, info)["waiting_for_change"] == 1
    # Found by its JSON once, then by its fingerprint (recorded again: rendered no more).
    third = run(pa.table({"email": ["u1@x.com", " U2@X.com"], "first_name": ["One", "Two"]}),
                destination())  # fmt: skip
    assert run_summary(state_path, third)["waiting_for_change"] == 1
    assert upserts(emulator) == []


def test_a_contact_a_400_refused_for_good_still_waits_when_only_its_fingerprint_changed(
    emulator, destination, run, state_path
) -> None:
    body = {
        "errors": [{"field": "contacts[1].identifier", "message": "email 'u2@x.com' is not valid"}]
    }
    emulator.faults.add("PUT /v3/marketing/contacts", status=400, body=body, times=1)
    run(_two_contacts(), destination())
    assert state_rows(state_path, "SELECT count(*) FROM refused WHERE content_md5 IS NOT NULL") == [
        (1,)
    ]
    _edit_state(state_path, "UPDATE refused SET fingerprint = fingerprint // 2 + 1")
    emulator.clear_requests()

    second = run(_two_contacts(), destination())

    assert upserts(emulator) == []
    assert run_summary(state_path, second)["waiting_for_change"] == 1
    changed = pa.table({"email": ["u1@x.com", "u2@x.com"], "first_name": ["One", "Deux"]})
    run(changed, destination())  # its data changed: sent again
    assert sum(r.contact_count or 0 for r in upserts(emulator)) == 1
