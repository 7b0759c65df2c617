"""``sendgrid-destination run SYNC.toml``: the example sync files run, a second run sends
nothing, ``--json`` prints one object that matches the summary in the state, environment
variables override the file, and exit codes say what happened (0 / 1 / 2)."""

from __future__ import annotations

import re
import shlex
import sqlite3
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.sample_warehouse import build, touch
from sendgrid_destination.cli import main
from sendgrid_destination.state import StateStore
from tests.sync.conftest import SyncEnv, example

CUSTOMERS = 1_000


def test_the_duckdb_example_syncs_and_its_second_run_sends_nothing(sync_env: SyncEnv) -> None:
    build(sync_env.workdir / "warehouse.duckdb", rows=CUSTOMERS)

    first = sync_env.run(example("duckdb_customers.toml"), "--json")
    second = sync_env.run(example("duckdb_customers.toml"), "--json")

    assert (first.code, second.code) == (0, 0), first.err + second.err
    totals = first.json()["totals"]
    assert totals["rows_read"] == CUSTOMERS + 1  # one customer exported twice
    assert totals["new"] == totals["contacts_sent"] == len(sync_env.emulator.contacts())
    assert totals["new"] + totals["rejected"] + totals["superseded"] == totals["rows_read"]
    assert second.json()["totals"]["contacts_sent"] == 0
    assert second.json()["totals"]["unchanged"] == totals["new"]


def test_json_output_is_one_object_that_matches_the_summary_in_the_state(
    sync_env: SyncEnv,
) -> None:
    build(sync_env.workdir / "warehouse.duckdb", rows=CUSTOMERS)

    result = sync_env.run(example("duckdb_customers.toml"), "--json")

    document = result.json()
    assert document["ok"] is True and document["error"] is None
    assert document["sync"] == "duckdb_customers_to_sendgrid"
    assert document["state"] == str(sync_env.state_path)
    assert document["duration_seconds"] > 0
    (table,) = document["tables"]
    assert table == sync_env.state_summary(table["run_id"])
    totals = document["totals"]
    for key in ("new", "changed", "unchanged", "rejected", "requests", "bytes_sent"):
        assert totals[key] == table[key]
    assert totals["jobs"] == {"completed": table["requests"]}
    assert totals["rejected_by_reason"] == table["rejected_by_reason"]
    # Logs go to stderr, but for the summary, which the command prints (here as JSON).
    assert "SendGrid sync summary" not in result.err and " INFO sendgrid_destination" in result.err
    # Not a terminal: progress is log lines on stderr, not a bar.
    assert f"SendGrid contacts sent: {table['contacts_sent']}/" in result.err


def test_changed_rows_are_the_only_ones_sent_again(sync_env: SyncEnv) -> None:
    warehouse = build(sync_env.workdir / "warehouse.duckdb", rows=CUSTOMERS)
    sync_env.run(example("duckdb_customers.toml"))
    changed = touch(warehouse, 7)

    result = sync_env.run(example("duckdb_customers.toml"), "--json")

    assert result.code == 0
    assert result.json()["totals"]["changed"] == result.json()["totals"]["contacts_sent"] == changed


def test_the_parquet_example_syncs_every_file_its_glob_matches(sync_env: SyncEnv) -> None:
    exports = sync_env.workdir / "exports"
    exports.mkdir()
    for part in range(3):
        pq.write_table(_people(part * 10, 10), exports / f"customers-{part}.parquet")
    pq.write_table(_people(100, 5), exports / "other.parquet")  # not matched by the glob

    result = sync_env.run(example("parquet_customers.toml"), "--json")

    assert result.code == 0, result.err
    assert result.json()["tables"][0]["stream"] == "customers"
    assert sorted(c["email"] for c in sync_env.emulator.contacts()) == sorted(
        f"p{i}@example.com" for i in range(30)
    )
    plans = {v for c in sync_env.emulator.contacts() for v in c["custom_fields"].values()}
    assert plans == {"pro"}


def test_a_cursor_extracts_only_rows_updated_since_the_last_run(sync_env: SyncEnv) -> None:
    warehouse = sync_env.workdir / "people.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "CREATE TABLE people AS SELECT 'p' || i || '@example.com' AS email, "
            "'v1' AS first_name, TIMESTAMP '2026-01-01' + INTERVAL (i) MINUTE AS updated_at "
            "FROM range(50) t(i)"
        )
    sync_file = sync_env.write(
        "people.toml",
        'name = "people"\n[source]\nkind = "duckdb"\npath = "people.duckdb"\n'
        'table = "people"\ncursor = "updated_at"\n'
        '[destination.sendgrid.mapping]\nemail = "email"\nfirst_name = "first_name"\n',
    )
    assert sync_env.run(sync_file).code == 0
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "UPDATE people SET first_name = 'v2', updated_at = TIMESTAMP '2026-02-01' "
            "WHERE email IN ('p3@example.com', 'p4@example.com')"
        )

    result = sync_env.run(sync_file, "--json")

    assert result.json()["totals"]["rows_read"] == 2
    assert result.json()["totals"]["changed"] == 2
    names = {c["email"]: c["first_name"] for c in sync_env.emulator.contacts()}
    assert names["p3@example.com"] == "v2" and names["p5@example.com"] == "v1"
    # --full-refresh extracts every row again; the state still skips the unchanged ones.
    refreshed = sync_env.run(sync_file, "--json", "--full-refresh").json()["totals"]
    assert (refreshed["rows_read"], refreshed["contacts_sent"]) == (50, 0)


@pytest.mark.parametrize("source", ["duckdb", "parquet", "sql_table", "sql_query"])
def test_a_cursor_run_that_finds_no_new_rows_still_runs_and_follows_the_jobs_left_pending(
    sync_env: SyncEnv, monkeypatch: pytest.MonkeyPatch, source: str
) -> None:
    # dlt's incremental drops the rows at the cursor's boundary that it has seen: before, such
    # a run gave dlt no data, so the destination never ran ("Nothing was loaded") and a job
    # the last run left pending was not followed.
    people = pa.table(
        {
            "email": [f"p{i}@example.com" for i in range(5)],
            "updated_at": pa.array([1_700_000_000 + i for i in range(5)], pa.timestamp("s")),
        }
    )
    spec = _write_people(sync_env, source, people)
    sync_file = sync_env.write(
        "people.toml",
        f'name = "people"\n[source]\n{spec}cursor = "updated_at"\n'
        '[destination.sendgrid.mapping]\nemail = "email"\n',
    )
    monkeypatch.setenv("DESTINATION__SENDGRID__JOB_WAIT_TIMEOUT", "0")
    first = sync_env.run(sync_file, "--json")
    assert first.code == 0, first.err
    assert first.json()["totals"]["jobs"] == {"pending": 1}
    monkeypatch.delenv("DESTINATION__SENDGRID__JOB_WAIT_TIMEOUT")

    again = sync_env.run(sync_file, "--json")

    assert again.code == 0, again.err
    (table,) = again.json()["tables"]
    assert (table["rows_read"], table["contacts_sent"]) == (0, 0)
    with StateStore.open(sync_env.state_path, read_only=True) as store:
        assert store.pending_jobs() == []


@pytest.mark.parametrize("source", ["duckdb", "parquet", "sql_table", "sql_query"])
@pytest.mark.parametrize(
    ("cursor", "said"),
    [
        ("updated", "source.cursor = 'updated' is not a column of the source"),
        ("maybe", "source.cursor = 'maybe' is empty (null) in some rows"),
    ],
)
def test_a_cursor_the_source_cannot_give_is_a_sync_file_error_naming_the_cursor(
    sync_env: SyncEnv, source: str, cursor: str, said: str
) -> None:
    # dlt's own chain ends in a bare KeyError of the column, whose message redaction hides.
    people = pa.table(
        {
            "email": [f"p{i}@example.com" for i in range(3)],
            "updated_at": pa.array([1_700_000_000 + i for i in range(3)], pa.timestamp("s")),
            "maybe": pa.array([1_700_000_000, None, 1_700_000_002], pa.timestamp("s")),
        }
    )
    spec = _write_people(sync_env, source, people)
    sync_file = sync_env.write(
        "people.toml",
        f'name = "people"\n[source]\n{spec}cursor = "{cursor}"\n'
        '[destination.sendgrid.mapping]\nemail = "email"\n',
    )

    result = sync_env.run(sync_file, "--json")

    assert result.code == 2, result.err
    assert said in result.json()["error"]
    assert "example.com" not in result.err + result.out
    assert sync_env.upserts() == []


def test_environment_variables_override_the_sync_file(
    sync_env: SyncEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    pq.write_table(_people(0, 3), sync_env.workdir / "people.parquet")
    sync_file = sync_env.write(
        "people.toml",
        'name = "people"\n[source]\nkind = "parquet"\npath = "people.parquet"\n'
        "[destination.sendgrid]\nmax_contacts_per_request = 30000\n"
        '[destination.sendgrid.mapping]\nemail = "email"\nfirst_name = "first_name"\n',
    )
    monkeypatch.setenv("DESTINATION__SENDGRID__MAPPING__FIRST_NAME", "last_name")
    monkeypatch.setenv("DESTINATION__SENDGRID__MAX_CONTACTS_PER_REQUEST", "1")

    result = sync_env.run(sync_file, "--json")

    assert result.code == 0, result.err
    assert result.json()["totals"]["requests"] == 3
    assert {c["first_name"] for c in sync_env.emulator.contacts()} == {"Last0", "Last1", "Last2"}


def test_a_mistake_in_the_sync_file_exits_2_naming_the_key(sync_env: SyncEnv) -> None:
    sync_file = sync_env.write(
        "bad.toml",
        'name = "bad"\n[source]\nkind = "duckdb"\npath = "x.duckdb"\ntable = "t"\n'
        '[destination.sendgrid]\nmaping = { email = "email" }\n',
    )

    result = sync_env.run(sync_file, "--json")

    assert result.code == 2
    document = result.json()
    assert document["ok"] is False
    assert "destination.sendgrid.maping" in document["error"]
    assert "(did you mean destination.sendgrid.mapping?)" in document["error"]
    assert "__is_resolved__" not in document["error"]  # dlt's own fields are not settings
    assert "destination.sendgrid.keep_runs" in document["error"]  # what is allowed
    assert sync_env.emulator.requests == []


def test_a_missing_api_key_exits_2_before_anything_is_extracted(
    sync_env: SyncEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DESTINATION__SENDGRID__API_KEY")
    sync_file = _people_sync(sync_env)

    result = sync_env.run(sync_file)

    assert result.code == 2
    assert "DESTINATION__SENDGRID__API_KEY" in result.err
    assert not (sync_env.pipelines_dir / "people").exists()  # no pending package left


@pytest.mark.parametrize(
    ("mapping", "said"),
    [
        ('firstname = "first_name"\nemail = "email"\n', "did you mean 'first_name'?"),
        ('first_name = "first_name"\n', "The mapping has no identifier"),
    ],
    ids=["misspelt-field", "no-identifier"],
)
def test_a_mapping_wrong_without_any_data_exits_2_before_anything_is_extracted(
    sync_env: SyncEnv, mapping: str, said: str
) -> None:
    pq.write_table(_people(0, 3), sync_env.workdir / "people.parquet")
    sync_file = sync_env.write(
        "people.toml",
        'name = "people"\n[source]\nkind = "parquet"\npath = "people.parquet"\n'
        f"[destination.sendgrid.mapping]\n{mapping}",
    )

    result = sync_env.run(sync_file)

    assert result.code == 2
    assert said in result.err
    assert not (sync_env.pipelines_dir / "people").exists()  # no pending package left


def test_a_mapping_naming_a_missing_column_exits_2(sync_env: SyncEnv) -> None:
    pq.write_table(_people(0, 3), sync_env.workdir / "people.parquet")
    sync_file = sync_env.write(
        "people.toml",
        'name = "people"\n[source]\nkind = "parquet"\npath = "people.parquet"\n'
        '[destination.sendgrid.mapping]\nemail = "email"\nfirst_name = "given_name"\n',
    )

    result = sync_env.run(sync_file, "--json")

    assert result.code == 2, result.err
    assert "given_name" in result.json()["error"]
    assert sync_env.upserts() == []


def test_fail_on_rejects_exits_1_after_the_good_rows_are_sent(sync_env: SyncEnv) -> None:
    people = _people(0, 4)
    emails = people["email"].to_pylist()
    emails[1] = "not-an-email"
    pq.write_table(people.set_column(0, "email", pa.array(emails)), sync_env.workdir / "p.parquet")
    sync_file = _parquet_sync(
        sync_env,
        "[destination.sendgrid]\nfail_on_rejects = 0\n"
        '[destination.sendgrid.mapping]\nemail = "email"\n',
    )

    result = sync_env.run(sync_file, "--json")

    assert result.code == 1, result.err
    document = result.json()
    assert document["ok"] is False and "fail_on_rejects" in document["error"]
    assert document["totals"]["rejected"] == 1
    assert document["totals"]["contacts_sent"] == 3
    assert len(sync_env.emulator.contacts()) == 3


def test_the_command_fail_on_rejects_suggests_lists_the_refused_rows_of_the_sync_files_state(
    sync_env: SyncEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sync file's own state file, which the command's default (from the settings in the
    # environment and .dlt) would not find.
    monkeypatch.delenv("DESTINATION__SENDGRID__STATE_PATH")
    people = _people(0, 3)
    pq.write_table(
        people.set_column(0, "email", pa.array(["p0@example.com", "bad", "p2@example.com"])),
        sync_env.workdir / "p.parquet",
    )
    sync_file = _parquet_sync(
        sync_env,
        '[destination.sendgrid]\nfail_on_rejects = 0\nstate_path = "own state.duckdb"\n'
        '[destination.sendgrid.mapping]\nemail = "email"\n',
    )
    error = sync_env.run(sync_file, "--json").json()["error"]

    suggested = re.search(r"`sendgrid-destination (rejects [^`]+)`", error)
    assert suggested is not None, error
    sync_env.capsys.readouterr()
    code = main(shlex.split(suggested.group(1)))

    out = sync_env.capsys.readouterr().out
    assert code == 0
    assert out.count("\n") == 2 and "not a valid email" in out  # the header and the row


def test_json_totals_count_the_csv_imports_a_bulk_load_sent(sync_env: SyncEnv) -> None:
    pq.write_table(_people(0, 5), sync_env.workdir / "p.parquet")
    sync_file = _parquet_sync(
        sync_env,
        '[destination.sendgrid]\nbulk = "always"\n'
        '[destination.sendgrid.mapping]\nemail = "email"\n',
    )

    totals = sync_env.run(sync_file, "--json").json()["totals"]

    assert (totals["contacts_sent"], totals["requests"], totals["imports"]) == (5, 0, 1)


def _parquet_sync(sync_env: SyncEnv, settings: str) -> Path:
    """A sync file reading ``p.parquet`` (in the work directory), with ``settings``."""
    return sync_env.write(
        "people.toml",
        'name = "people"\n[source]\nkind = "parquet"\npath = "p.parquet"\n' + settings,
    )


def _people(start: int, n: int) -> pa.Table:
    ids = range(start, start + n)
    return pa.table(
        {
            "email": [f"p{i}@example.com" for i in ids],
            "first_name": [f"First{i}" for i in ids],
            "last_name": [f"Last{i}" for i in ids],
            "country": ["NL"] * n,
            "plan": ["pro"] * n,
        }
    )


def test_the_cli_shows_a_bar_on_a_terminal_and_log_lines_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import io
    import sys

    from dlt.common.runtime.collector import LogCollector, TqdmCollector

    from sendgrid_destination.sync_command import _progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    on_terminal = _progress("auto")
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    in_a_log = _progress("auto")

    assert isinstance(on_terminal, TqdmCollector)
    assert isinstance(in_a_log, LogCollector)
    assert _progress("none") is None


def _sqlite_sync(sync_env: SyncEnv, url: str, table: str) -> Path:
    return sync_env.write(
        "sql.toml",
        f'name = "sql"\n[source]\nkind = "sql"\nurl = "{url}"\ntable = "{table}"\n'
        '[destination.sendgrid.mapping]\nemail = "email"\n',
    )


def test_a_sql_source_without_the_table_exits_2_with_one_json_object_naming_it(
    sync_env: SyncEnv,
) -> None:
    database = sync_env.workdir / "source.db"
    sqlite3.connect(database).close()  # a database without the table

    result = sync_env.run(_sqlite_sync(sync_env, f"sqlite:///{database}", "people"), "--json")

    assert result.code == 2, result.err
    document = result.json()
    assert document["ok"] is False
    assert "'people'" in document["error"]
    assert "Traceback" not in result.err
    assert sync_env.emulator.requests == []


def test_a_refused_api_key_is_said_in_one_line_without_dlts_tracebacks(
    sync_env: SyncEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESTINATION__SENDGRID__API_KEY", "SG.test-not-this-one")
    pq.write_table(_people(0, 2), sync_env.workdir / "p.parquet")
    sync_file = _parquet_sync(
        sync_env,
        '[destination.sendgrid.mapping]\nemail = "email"\n',
    )

    result = sync_env.run(sync_file, "--progress", "none")

    assert result.code == 1
    assert "Traceback" not in result.err and "failed terminally" not in result.err
    (error,) = [line for line in result.err.splitlines() if line.startswith("error:")]
    assert "SendGrid refused the API key" in error


def test_a_sql_source_that_cannot_be_opened_exits_1_with_one_json_object(
    sync_env: SyncEnv,
) -> None:
    url = f"sqlite:///{sync_env.workdir / 'no' / 'such' / 'dir' / 'x.db'}"

    result = sync_env.run(_sqlite_sync(sync_env, url, "people"), "--json")

    assert result.code == 1, result.err
    document = result.json()
    assert document["ok"] is False
    assert "sql source could not be read" in document["error"]
    assert sync_env.emulator.requests == []


def test_a_source_error_quoting_a_value_is_shown_without_the_value(sync_env: SyncEnv) -> None:
    # DuckDB's conversion error quotes the value it could not convert.
    warehouse = sync_env.workdir / "people.duckdb"
    duckdb.connect(str(warehouse)).close()
    sync_file = sync_env.write(
        "bad.toml",
        f'name = "bad"\n[source]\nkind = "duckdb"\npath = "{warehouse}"\n'
        "query = \"SELECT 'a@example.com' AS email, "
        "CAST('secret-value@example.com' AS INTEGER) AS n\"\n"
        '[destination.sendgrid.mapping]\nemail = "email"\n',
    )

    result = sync_env.run(sync_file, "--json")

    assert result.code == 1
    assert "ConversionException" in result.json()["error"]
    assert "secret-value" not in result.out + result.err


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("DESTINATION__SENDGRID__MAX_IN_FLIGHT", "abc", "max_in_flight"),
        ("DESTINATION__SENDGRID__READ_BATCH_ROWS", "0", "read_batch_rows"),
        ("DESTINATION__SENDGRID__DATE_FORMAT", "%Q", "date_format"),
    ],
)
def test_a_setting_that_cannot_be_used_exits_2_with_one_json_object_naming_it(
    sync_env: SyncEnv, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, named: str
) -> None:
    monkeypatch.setenv(variable, value)
    sync_file = _people_sync(sync_env)

    result = sync_env.run(sync_file, "--json")

    assert result.code == 2, result.err
    assert named in result.json()["error"]
    assert not (sync_env.pipelines_dir / "people").exists()  # nothing extracted


def test_a_variable_naming_no_setting_is_named_in_a_warning_with_the_closest_one(
    sync_env: SyncEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESTINATION__SENDGRID__MAX_INFLIGHT", "4242")
    sync_file = _people_sync(sync_env)

    result = sync_env.run(sync_file)

    assert result.code == 0, result.err
    (warning,) = [line for line in result.err.splitlines() if "naming no setting" in line]
    assert "DESTINATION__SENDGRID__MAX_INFLIGHT (did you mean " in warning
    assert "MAX_IN_FLIGHT?)" in warning
    assert "4242" not in result.err  # names only, never values


def _people_sync(sync_env: SyncEnv, people: int = 3, settings: str = "") -> Path:
    """A sync file of ``people`` in a parquet file, mapping only their emails, with these
    ``settings`` (TOML lines) under [destination.sendgrid]."""
    pq.write_table(_people(0, people), sync_env.workdir / "people.parquet")
    return sync_env.write(
        "people.toml",
        'name = "people"\n[source]\nkind = "parquet"\npath = "people.parquet"\n'
        f"[destination.sendgrid]\n{settings}"
        '[destination.sendgrid.mapping]\nemail = "email"\n',
    )


def _write_people(sync_env: SyncEnv, kind: str, people: pa.Table) -> str:
    """``people`` as the ``[source]`` of ``kind`` holds them; returns that section's lines."""
    if kind == "parquet":
        pq.write_table(people, sync_env.workdir / "people.parquet")
        return 'kind = "parquet"\npath = "people.parquet"\n'
    if kind == "duckdb":
        with duckdb.connect(str(sync_env.workdir / "people.duckdb")) as con:
            con.register("people_rows", people)
            con.execute("CREATE OR REPLACE TABLE people AS SELECT * FROM people_rows")
        return 'kind = "duckdb"\npath = "people.duckdb"\ntable = "people"\n'
    database = sync_env.workdir / "people.db"
    columns = ", ".join(
        f"{f.name} {'TIMESTAMP' if pa.types.is_timestamp(f.type) else 'TEXT'}"
        for f in people.schema
    )
    rows = [
        tuple(v if v is None or isinstance(v, str) else str(v) for v in row.values())
        for row in people.to_pylist()
    ]
    with sqlite3.connect(database) as con:
        con.execute("DROP TABLE IF EXISTS people")
        con.execute(f"CREATE TABLE people ({columns})")
        con.executemany(f"INSERT INTO people VALUES ({', '.join('?' * people.num_columns)})", rows)
    which = 'table = "people"' if kind == "sql_table" else 'query = "SELECT * FROM people"'
    return f'kind = "sql"\nurl = "sqlite:///{database}"\n{which}\n'


@pytest.mark.parametrize("kind", ["duckdb", "parquet", "sql_table", "sql_query"])
def test_a_mirrored_source_that_became_empty_removes_every_contact_it_synced(
    sync_env: SyncEnv, kind: str
) -> None:
    def sync_file(people: pa.Table) -> Path:
        return sync_env.write(
            "people.toml",
            f'name = "people"\n[source]\n{_write_people(sync_env, kind, people)}'
            '[destination.sendgrid]\nmode = "mirror"\nmax_delete_fraction = 1.0\n'
            '[destination.sendgrid.mapping]\nemail = "email"\nfirst_name = "first_name"\n',
        )

    people = _people(0, 4).select(["email", "first_name"])
    assert sync_env.run(sync_file(people)).code == 0
    assert len(sync_env.emulator.contacts()) == 4

    result = sync_env.run(sync_file(people.slice(0, 0)), "--json")

    assert result.code == 0, result.err
    (table,) = result.json()["tables"]
    assert (table["rows_read"], table["left_source"], table["deleted"]) == (0, 4, 4)
    sync_env.emulator.process_jobs()
    assert sync_env.emulator.contacts() == []


def _fails_after_the_first_body(sync_env: SyncEnv) -> Path:
    """A sync of ten people whose first run fails with five of them sent: the first body is
    accepted, the second meets 500s until the client (and dlt's retries) give up."""
    sync_env.emulator.faults.add("PUT /v3/marketing/contacts", action="delay", delay=0, times=1)
    sync_env.emulator.faults.add("PUT /v3/marketing/contacts", status=500, times=100)
    sync_file = _people_sync(
        sync_env, 10, "max_contacts_per_request = 5\nmax_in_flight = 1\nmax_attempts = 2\n"
    )
    failed = sync_env.run(sync_file, "--json")
    assert failed.code == 1 and failed.json()["totals"]["contacts_sent"] == 5
    sync_env.emulator.faults.clear()
    return sync_file


def test_after_a_failed_run_the_totals_count_only_what_the_next_run_did(
    sync_env: SyncEnv,
) -> None:
    sync_file = _fails_after_the_first_body(sync_env)
    accepted_before = [r for r in sync_env.upserts() if r.status == 202]

    result = sync_env.run(sync_file, "--json")

    assert result.code == 0, result.err
    sent = [r for r in sync_env.upserts() if r.status == 202][len(accepted_before) :]
    totals = result.json()["totals"]
    assert (totals["contacts_sent"], totals["requests"], totals["new"]) == (5, len(sent), 5)
    assert totals["jobs"] == {"completed": 1}
    # The pending load's summary in tables covers both runs, as the state keeps it.
    pending, fresh = result.json()["tables"]
    assert (pending["contacts_sent"], fresh["contacts_sent"], fresh["unchanged"]) == (10, 0, 10)
    assert len(sync_env.emulator.contacts()) == 10


def test_a_plan_after_a_failed_run_says_what_the_next_run_then_does(sync_env: SyncEnv) -> None:
    sync_file = _fails_after_the_first_body(sync_env)

    plan = sync_env.run(sync_file, "--plan", "--json")
    run = sync_env.run(sync_file, "--json")

    assert (plan.code, run.code) == (0, 0), plan.err + run.err
    keys = ("rows_read", "new", "changed", "unchanged", "contacts_sent", "requests", "bytes_sent")
    planned, done = plan.json()["totals"], run.json()["totals"]
    assert {k: planned[k] for k in keys} == {k: done[k] for k in keys}
    assert (done["contacts_sent"], done["requests"]) == (5, 1)
    # The new data's plan saw what completing the pending load would record: nothing new.
    assert [t["new"] for t in plan.json()["tables"]] == [t["new"] for t in run.json()["tables"]]
    assert planned["jobs"] == {}  # a plan's jobs are its own stand-ins: not counted


def test_refusals_a_failed_run_counted_and_the_next_run_superseded_add_nothing_to_its_totals(
    sync_env: SyncEnv,
) -> None:
    # The failed run's first job fails its five contacts; the next run resends them (the
    # pending load first) and SendGrid accepts them: the load's summary now has no failure.
    sync_env.emulator.fail_next_jobs(1, "Something went wrong temporarily")
    sync_file = _fails_after_the_first_body(sync_env)

    result = sync_env.run(sync_file, "--json")

    assert result.code == 0, result.err
    totals = result.json()["totals"]
    assert (totals["failed_in_jobs"], totals["failed_by_reason"]) == (0, {})
    assert totals["contacts_sent"] == 10 and len(sync_env.emulator.contacts()) == 10


@pytest.mark.parametrize(
    ("source", "named"),
    [
        ('table = "peopel"', "table 'peopel' (Catalog Error"),
        ('query = "SELEC * FROM people"', "query (Parser Error"),
        ('query = "SELECT mail FROM people"', "query (Binder Error"),
    ],
)
def test_a_duckdb_source_without_the_table_or_with_a_broken_query_exits_2_naming_it(
    sync_env: SyncEnv, source: str, named: str
) -> None:
    section = _write_people(sync_env, "duckdb", _people(0, 3).select(["email", "first_name"]))
    section = section.replace('table = "people"', source)
    sync_file = sync_env.write(
        "people.toml",
        f'name = "people"\n[source]\n{section}[destination.sendgrid.mapping]\nemail = "email"\n',
    )

    result = sync_env.run(sync_file, "--json")

    assert result.code == 2, result.err
    assert named in result.json()["error"] and "under [source]" in result.json()["error"]
    assert sync_env.emulator.requests == []


def test_a_plan_that_fails_part_way_still_shows_what_it_planned_before(
    sync_env: SyncEnv,
) -> None:
    # A run that sends nothing (every upsert meets 500s) leaves its package pending; having
    # accepted nothing, it never read the account's contact count.
    sync_env.emulator.faults.add("PUT /v3/marketing/contacts", status=500, times=1000)
    sync_file = _people_sync(sync_env, 10, "max_contacts_per_request = 5\nmax_attempts = 2\n")
    assert sync_env.run(sync_file).code == 1
    sync_env.emulator.faults.clear()
    # The plan of the pending package reads the count once and passes; the plan of the new
    # rows is refused that read (a key that lost its scope in between).
    sync_env.emulator.faults.add("GET /v3/marketing/contacts/count", action="delay", delay=0)
    sync_env.emulator.faults.add("GET /v3/marketing/contacts/count", status=403, times=100)

    result = sync_env.run(sync_file, "--plan", "--json")

    assert result.code == 1, result.err
    assert "403" in result.json()["error"]
    pending, failed = result.json()["tables"]
    assert pending["plan"] is True and failed["plan"] is True
    assert (pending["rows_read"], pending["new"], pending["contacts_sent"]) == (10, 10, 10)
    assert "403" in failed["failed"]  # the failed table's own, from the plan's copy
    assert "PLAN (dry run)" in sync_env.run(sync_file, "--plan").out


def test_a_plan_whose_account_check_failed_checks_again_when_dlt_retries_the_table(
    sync_env: SyncEnv,
) -> None:
    sync_file = _people_sync(sync_env, 10, "max_attempts = 2\n")
    sync_env.emulator.faults.add("GET /v3/marketing/contacts/count", status=500, times=2)

    result = sync_env.run(sync_file, "--plan", "--json")

    assert result.code == 0, result.err
    counts = [r.status for r in sync_env.emulator.requests if r.path.endswith("/contacts/count")]
    assert counts == [500, 500, 200]


def test_rows_of_a_table_not_loaded_are_sent_by_the_next_run_though_the_cursor_moved_on(
    sync_env: SyncEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse = sync_env.workdir / "people.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.execute(
            "CREATE TABLE people AS SELECT 'p' || i || '@example.com' AS email, 'gold' AS tier, "
            "TIMESTAMP '2026-01-01' + INTERVAL (i) MINUTE AS updated_at FROM range(5) t(i)"
        )
    sync_file = sync_env.write(
        "people.toml",
        'name = "people"\n[source]\nkind = "duckdb"\npath = "people.duckdb"\n'
        'table = "people"\ncursor = "updated_at"\n'
        '[destination.sendgrid.mapping]\nemail = "email"\n'
        '[destination.sendgrid.mapping.custom_fields]\ntier = "tier"\n',
    )
    # The custom field is missing from the account: the table is not loaded, yet dlt's
    # cursor has moved past its rows.
    refused = sync_env.run(sync_file)
    assert refused.code == 2 and "not loaded" in refused.err
    monkeypatch.setenv("DESTINATION__SENDGRID__CREATE_MISSING_CUSTOM_FIELDS", "true")

    planned = sync_env.run(sync_file, "--plan", "--json")
    fixed = sync_env.run(sync_file, "--json")
    after = sync_env.run(sync_file, "--json")

    assert fixed.code == 0, fixed.err
    totals = fixed.json()["totals"]
    assert (totals["rows_read"], totals["contacts_sent"]) == (5, 5)
    assert any("extracts every row again" in n for n in fixed.json()["notes"])
    assert len(sync_env.emulator.contacts()) == 5
    # Only the one run after the failure extracts everything: the cursor works again.
    assert after.json()["totals"]["rows_read"] == 0
    # The plan before counted what that run then did: it extracted everything too.
    assert planned.json()["totals"]["rows_read"] == 5
    assert planned.json()["notes"] == fixed.json()["notes"]


def test_a_source_value_dlt_cannot_convert_is_reported_naming_its_column_not_its_value(
    sync_env: SyncEnv,
) -> None:
    # A JSON column holding a string in one row and a list in another: dlt's conversion to
    # Arrow fails. Its message names the column; the values stay hidden.
    database = sync_env.workdir / "people.db"
    with sqlite3.connect(database) as con:
        con.execute("CREATE TABLE people (email TEXT, meta JSON)")
        con.execute(
            "INSERT INTO people VALUES ('a@example.com', '\"secret words\"'), "
            "('b@example.com', '[1, 2]')"
        )
    sync_file = sync_env.write(
        "people.toml",
        f'name = "people"\n[source]\nkind = "sql"\nurl = "sqlite:///{database}"\n'
        'table = "people"\n[destination.sendgrid]\ncreate_missing_custom_fields = true\n'
        '[destination.sendgrid.mapping]\nemail = "email"\n'
        '[destination.sendgrid.mapping.custom_fields]\nmeta_data = "meta"\n',
    )

    result = sync_env.run(sync_file, "--json")

    assert result.code == 1
    error = result.json()["error"]
    assert "failed for field `meta`" in error
    assert "secret" not in error and "a@example.com" not in error


def test_a_table_replaced_by_a_query_under_the_same_resource_is_extracted_afresh_once(
    sync_env: SyncEnv,
) -> None:
    # dlt's schema keeps the table's primary key, not null; a query that leaves it out failed
    # every run in dlt's normalize, until a --full-refresh.
    database = sync_env.workdir / "people.db"
    with sqlite3.connect(database) as con:
        con.execute("CREATE TABLE people (id INTEGER PRIMARY KEY NOT NULL, email TEXT)")
        con.executemany(
            "INSERT INTO people (email) VALUES (?)", [(f"p{i}@example.com",) for i in range(4)]
        )
    head = f'name = "people"\n[source]\nkind = "sql"\nurl = "sqlite:///{database}"\n'
    tail = '[destination.sendgrid.mapping]\nemail = "email"\n'
    by_table = sync_env.write("people.toml", head + 'table = "people"\n' + tail)
    assert sync_env.run(by_table).code == 0
    by_query = sync_env.write(
        "people.toml", head + 'query = "SELECT email FROM people"\nresource = "people"\n' + tail
    )

    changed = sync_env.run(by_query, "--json")
    again = sync_env.run(by_query, "--json")

    assert changed.code == 0, changed.err
    assert any("source changed" in n for n in changed.json()["notes"])
    assert changed.json()["totals"]["unchanged"] == 4  # nothing sent again
    assert again.code == 0 and again.json()["notes"] == []
    assert len(sync_env.emulator.contacts()) == 4
