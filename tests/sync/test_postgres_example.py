"""The PostgreSQL example sync file against the PostgreSQL on this machine (127.0.0.1:5432,
database ``test``): dlt's ``sql_table`` with the pyarrow backend, and a ``query`` source.
Skips only when PostgreSQL is unreachable, unless SENDGRID_DESTINATION_REQUIRE_POSTGRES=1."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import dlt
import pytest

from sendgrid_destination import refresh_due, sources
from tests.e2e.conftest import PostgresSchema, postgres_schema, postgres_url  # noqa: F401
from tests.sync.conftest import SyncEnv, example


@pytest.fixture
def customers(postgres_url: str) -> Iterator[str]:  # noqa: F811
    import psycopg2

    name = f"sg_sync_customers_{uuid.uuid4().hex[:10]}"
    con = psycopg2.connect(postgres_url.replace("+psycopg2", ""))
    con.autocommit = True
    try:
        with con.cursor() as cur:
            cur.execute(
                f"CREATE TABLE {name} (email text, first_name text, last_name text, city text, "
                "country text, plan text, lifetime_value numeric(10, 2), updated_at timestamptz)"
            )
            cur.execute(
                f"INSERT INTO {name} SELECT 'pg' || i || '@example.com', 'First' || i, "
                "'Last' || i, 'Utrecht', 'NL', 'pro', i * 1.5, "
                "timestamptz '2026-01-01 00:00:00+00' + i * interval '1 minute' "
                "FROM generate_series(1, 40) i"
            )
        yield name
    finally:
        with con.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {name}")
        con.close()


def _sync_file(env: SyncEnv, url: str, source_lines: str) -> str:
    text = example("postgres_customers.toml").read_text()
    text = text.replace("postgresql+psycopg2://postgres@127.0.0.1:5432/test", url)
    return text.replace('table = "customers"', source_lines)


def test_the_postgres_example_syncs_its_table_and_then_only_updated_rows(
    sync_env: SyncEnv,
    postgres_url: str,  # noqa: F811
    customers: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import psycopg2

    # The URL carries no password: it would come from here (trust auth ignores it).
    monkeypatch.setenv("SOURCES__SQL_DATABASE__CREDENTIALS__PASSWORD", "not-needed-here")
    sync_file = sync_env.write(
        "pg.toml", _sync_file(sync_env, postgres_url, f'table = "{customers}"')
    )

    first = sync_env.run(sync_file, "--json")
    con = psycopg2.connect(postgres_url.replace("+psycopg2", ""))
    con.autocommit = True
    with con.cursor() as cur:
        cur.execute(
            f"UPDATE {customers} SET plan = 'vip', updated_at = now() "
            "WHERE email = 'pg7@example.com'"
        )
    con.close()
    second = sync_env.run(sync_file, "--json")

    assert first.code == 0, first.err
    assert first.json()["totals"]["new"] == 40
    assert len(sync_env.emulator.contacts()) == 40
    assert second.json()["totals"]["rows_read"] == 1  # the cursor: only the updated row
    assert second.json()["totals"]["changed"] == 1


def test_a_sql_query_source_streams_its_rows(
    sync_env: SyncEnv,
    postgres_url: str,  # noqa: F811
    customers: str,
) -> None:
    query = f'query = "SELECT * FROM {customers} WHERE lifetime_value > 30"'
    sync_file = sync_env.write("pg.toml", _sync_file(sync_env, postgres_url, query))

    result = sync_env.run(sync_file, "--json")

    assert result.code == 0, result.err
    assert result.json()["totals"]["new"] == 20  # i * 1.5 > 30 for i in 21..40
    assert result.json()["tables"][0]["stream"] == "contacts"


def test_a_query_source_keeps_all_null_columns_json_of_any_shape_and_exact_numerics(
    sync_env: SyncEnv,
    postgres_schema: PostgresSchema,  # noqa: F811
) -> None:
    postgres_schema.execute(
        "CREATE TABLE {schema}.people (email text, phone varchar(20), extra jsonb, "
        "amount numeric, segments text[])",
        "INSERT INTO {schema}.people VALUES "
        "('a@example.com', NULL, '{\"k\": 1}', 0.5, ARRAY['VIP']), "
        "('b@example.com', NULL, '\"plain\"', 123456789012345678901234567890.25, NULL)",
    )
    amount = sync_env.emulator.add_custom_field("amount", "Number")
    vip = sync_env.emulator.add_list("VIP")
    sync_file = sync_env.write(
        "pg.toml",
        f'name = "pgq"\n[source]\nkind = "sql"\nurl = "{postgres_schema.url}"\n'
        f'query = "SELECT * FROM {postgres_schema.name}.people"\n'
        '[destination.sendgrid]\nlist_column = "segments"\n'
        '[destination.sendgrid.mapping]\nemail = "email"\nphone_number = "phone"\n'
        'custom_fields = { amount = "amount" }\n',
    )

    result = sync_env.run(sync_file, "--json")

    assert result.code == 0, result.err
    sync_env.emulator.process_jobs()
    contacts = {c["email"]: c for c in sync_env.emulator.contacts()}
    assert contacts["a@example.com"]["custom_fields"] == {amount: 0.5}
    assert contacts["a@example.com"]["list_ids"] == [vip]
    # Beyond a 128-bit decimal's reach, yet a number SendGrid takes (sent as its digits).
    big = contacts["b@example.com"]["custom_fields"][amount]
    assert big == float("123456789012345678901234567890.25")
    assert result.json()["totals"]["rejected"] == 0


def test_an_empty_query_source_loads_zero_rows_and_a_full_refresh_of_a_mirror_deletes(
    sync_env: SyncEnv,
    postgres_schema: PostgresSchema,  # noqa: F811
) -> None:
    postgres_schema.execute("CREATE TABLE {schema}.people (email text, first_name text)")
    sync_file = sync_env.write(
        "pg.toml",
        f'name = "pgq"\n[source]\nkind = "sql"\nurl = "{postgres_schema.url}"\n'
        f'query = "SELECT * FROM {postgres_schema.name}.people"\n'
        '[destination.sendgrid]\nmode = "mirror"\nmax_delete_fraction = 1.0\n'
        '[destination.sendgrid.mapping]\nemail = "email"\nfirst_name = "first_name"\n',
    )

    empty_first = sync_env.run(sync_file, "--json")  # a new pipeline: no type known yet
    postgres_schema.execute(
        "INSERT INTO {schema}.people VALUES ('a@example.com', 'Ann'), ('b@example.com', 'Bob')"
    )
    filled = sync_env.run(sync_file, "--json")
    postgres_schema.execute("DELETE FROM {schema}.people")
    emptied = sync_env.run(sync_file, "--json", "--full-refresh")

    assert (empty_first.code, filled.code, emptied.code) == (0, 0, 0), emptied.err
    assert empty_first.json()["totals"]["rows_read"] == 0
    assert filled.json()["totals"]["new"] == 2
    assert emptied.json()["tables"][0]["deleted"] == 2
    sync_env.emulator.process_jobs()
    assert sync_env.emulator.contacts() == []


def test_a_query_column_null_in_its_first_chunk_renders_as_when_typed_so_a_rerun_sends_nothing(
    sync_env: SyncEnv,
    postgres_schema: PostgresSchema,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    postgres_schema.execute(
        "CREATE TABLE {schema}.people (email text, flag boolean, born date, seen timestamptz, "
        "at time)",
        "INSERT INTO {schema}.people VALUES ('a0@example.com', NULL, NULL, NULL, NULL), "
        "('a1@example.com', true, '0900-05-06', '2024-05-01 10:00:00+02', '10:11:12.5')",
    )
    fields = {name: sync_env.emulator.add_custom_field(name, "Text") for name in ("flag", "born")}
    fields |= {name: sync_env.emulator.add_custom_field(name, "Text") for name in ("seen", "at")}
    sync_file = sync_env.write(
        "pg.toml",
        f'name = "pgq"\n[source]\nkind = "sql"\nurl = "{postgres_schema.url}"\n'
        f'query = "SELECT * FROM {postgres_schema.name}.people ORDER BY email"\n'
        '[destination.sendgrid.mapping]\nemail = "email"\n'
        'custom_fields = { flag = "flag", born = "born", seen = "seen", at = "at" }\n',
    )
    typed = sync_env.run(sync_file, "--json")  # one chunk: every column typed by a value
    monkeypatch.setattr(sources, "BATCH_ROWS", 1)  # the first chunk: a0's nulls alone

    again = sync_env.run(sync_file, "--json")

    assert (typed.code, again.code) == (0, 0), again.err
    assert again.json()["totals"]["contacts_sent"] == 0
    assert again.json()["totals"]["unchanged"] == 2


def test_a_query_source_whose_cursor_is_numeric_compares_it_as_a_number_and_loads_new_rows(
    sync_env: SyncEnv,
    postgres_schema: PostgresSchema,  # noqa: F811
) -> None:
    # numeric arrives as Decimal; as text, dlt's incremental would find "10" < "9" and drop
    # every new row past the ninth, for good.
    _add_numbered(postgres_schema, 1, 9)
    sync_file = _numbered_sync(sync_env, postgres_schema, "seq")
    first = sync_env.run(sync_file, "--json")
    _add_numbered(postgres_schema, 10, 12)

    second = sync_env.run(sync_file, "--json")

    assert first.code == 0 and second.code == 0, second.err
    assert second.json()["totals"]["new"] == 3
    assert len(sync_env.emulator.contacts()) == 12


def test_a_numeric_cursor_dlt_holds_as_text_is_refused_until_one_full_refresh(
    sync_env: SyncEnv,
    postgres_schema: PostgresSchema,  # noqa: F811
) -> None:
    # As an earlier version left it: the cursor's last value stored as text ("9").
    _add_numbered(postgres_schema, 1, 9)
    as_text = _numbered_sync(sync_env, postgres_schema, "CAST(seq AS TEXT) AS seq")
    assert sync_env.run(as_text).code == 0
    # ... and with no record of its source (this version extracts afresh a source that
    # changed, which would mend it at once: refresh_due).
    pipeline = dlt.attach("pgq", pipelines_dir=str(sync_env.pipelines_dir))
    pipeline.set_local_state_val(refresh_due.SOURCE, None)
    _add_numbered(postgres_schema, 10, 12)

    numeric = _numbered_sync(sync_env, postgres_schema, "seq")
    refused = sync_env.run(numeric)
    mended = sync_env.run(numeric, "--json", "--full-refresh")

    assert refused.code != 0 and "--full-refresh" in refused.err
    assert mended.code == 0, mended.err
    assert (mended.json()["totals"]["new"], mended.json()["totals"]["unchanged"]) == (3, 9)
    assert len(sync_env.emulator.contacts()) == 12


def _add_numbered(schema: PostgresSchema, first: int, last: int) -> None:
    """People ``first`` to ``last``: their ``seq`` (numeric) and email (the table made by
    the first call)."""
    schema.execute("CREATE TABLE IF NOT EXISTS {schema}.people (seq numeric(12, 0), email text)")
    schema.execute(
        "INSERT INTO {schema}.people SELECT i, 'n' || i || '@example.com' "
        f"FROM generate_series({first}, {last}) i"
    )


def _numbered_sync(sync_env: SyncEnv, schema: PostgresSchema, seq: str) -> Path:
    """A sync file of the numbered people, selecting ``seq`` as the cursor ``seq``."""
    return sync_env.write(
        "pg.toml",
        f'name = "pgq"\n[source]\nkind = "sql"\nurl = "{schema.url}"\n'
        f'query = "SELECT {seq}, email FROM {schema.name}.people"\ncursor = "seq"\n'
        '[destination.sendgrid.mapping]\nemail = "email"\n',
    )
