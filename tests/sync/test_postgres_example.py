"""The PostgreSQL example sync file against the PostgreSQL on this machine (127.0.0.1:5432,
database ``test``): dlt's ``sql_table`` with the pyarrow backend, and a ``query`` source.
Skips only when PostgreSQL is unreachable, unless SENDGRID_DESTINATION_REQUIRE_POSTGRES=1."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import postgres_url  # noqa: F401  (a fixture)
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
