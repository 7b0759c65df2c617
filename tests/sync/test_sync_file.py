"""A sync file is checked before anything runs: every mistake names the key and what is
allowed, secrets are refused, and its ``[destination.sendgrid]`` resolves through dlt's config
providers below the environment variables."""

from __future__ import annotations

from pathlib import Path

import pytest
from dlt.common.configuration import resolve_configuration

from sendgrid_destination.config import SendGridConfiguration
from sendgrid_destination.errors import SyncFileError
from sendgrid_destination.sources import sql_credentials
from sendgrid_destination.sync_file import load_sync_file, settings_provider
from tests.sync.conftest import EXAMPLES

GOOD_SOURCE = '[source]\nkind = "duckdb"\npath = "w.duckdb"\ntable = "customers"\n'


def _load(tmp_path: Path, text: str) -> None:
    path = tmp_path / "sync.toml"
    path.write_text(text)
    load_sync_file(path)


@pytest.mark.parametrize(
    ("text", "named", "allowed"),
    [
        ('name = "s"\ncolour = 1\n' + GOOD_SOURCE, "colour", "name, source, destination"),
        ('name = "9lives"\n' + GOOD_SOURCE, "`name`", "letters, digits and underscores"),
        ('name = "s"\n', "[source]", '"sql" | "duckdb" | "parquet"'),
        ('name = "s"\n[source]\nkind = "csv"\n', "source.kind", '"sql" | "duckdb" | "parquet"'),
        ('name = "s"\n[source]\nkind = "duckdb"\ntable = "t"\n', "source.path", "required"),
        (
            'name = "s"\n[source]\nkind = "duckdb"\npath = "w"\n',
            "source.table and source.query",
            "exactly one",
        ),
        (
            'name = "s"\n[source]\nkind = "parquet"\npath = "p"\ntable = "t"\n',
            "source.table",
            "it takes path",
        ),
        (
            'name = "s"\n[source]\nkind = "sql"\nurl = "x"\ntable = "t"\npath = "p"\n',
            "source.path",
            "it takes url, table, query",
        ),
        ('name = "s"\n' + GOOD_SOURCE + "cursor = 3\n", "source.cursor", "non-empty string"),
        (
            'name = "s"\n' + GOOD_SOURCE + "[destination.hubspot]\nx = 1\n",
            "destination.hubspot",
            "destination.sendgrid",
        ),
        (
            'name = "s"\n' + GOOD_SOURCE + "[destination.sendgrid]\nbatchsize = 1\n",
            "destination.sendgrid.batchsize",
            "destination.sendgrid.batch_size",
        ),
        ('name = "s"\n[source\n', "not valid TOML", "line"),
    ],
)
def test_a_mistake_names_the_key_and_what_is_allowed(
    tmp_path: Path, text: str, named: str, allowed: str
) -> None:
    with pytest.raises(SyncFileError) as caught:
        _load(tmp_path, text)
    assert named in str(caught.value)
    assert allowed in str(caught.value)


def test_an_api_key_in_a_sync_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    text = 'name = "s"\n' + GOOD_SOURCE + '[destination.sendgrid]\napi_key = "SG.test-secret"\n'
    with pytest.raises(SyncFileError) as caught:
        _load(tmp_path, text)
    assert "DESTINATION__SENDGRID__API_KEY" in str(caught.value)
    assert "SG.test-secret" not in str(caught.value)


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.toml")))
def test_every_example_sync_file_is_valid(name: str) -> None:
    sync = load_sync_file(EXAMPLES / name)
    assert sync.settings["mapping"]["email"] == "email"


def test_settings_resolve_from_the_file_below_environment_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "sync.toml"
    path.write_text(
        'name = "s"\n' + GOOD_SOURCE + "[destination.sendgrid]\nmax_in_flight = 3\n"
        'read_batch_rows = 10\n[destination.sendgrid.mapping]\nemail = "mail"\n'
    )
    monkeypatch.setenv("DESTINATION__SENDGRID__READ_BATCH_ROWS", "20")
    sync = load_sync_file(path)

    with settings_provider(sync):
        config = resolve_configuration(
            SendGridConfiguration(), sections=("destination", "sendgrid"), accept_partial=True
        )
    after = resolve_configuration(
        SendGridConfiguration(), sections=("destination", "sendgrid"), accept_partial=True
    )

    assert (config.max_in_flight, config.read_batch_rows) == (3, 20)
    assert config.mapping == {"email": "mail"}
    assert after.max_in_flight == 2  # the provider is gone once the run is over


def test_a_sql_url_without_a_password_takes_it_from_dlt_secrets(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SOURCES__SQL_DATABASE__CREDENTIALS__PASSWORD", "s3cret")
    with_password = sql_credentials("postgresql+psycopg2://app@db.internal:5432/warehouse")
    kept = sql_credentials("postgresql+psycopg2://app:own@db.internal:5432/warehouse")

    assert with_password.password == "s3cret"
    assert with_password.username == "app" and with_password.host == "db.internal"
    assert kept.password == "own"
    assert "s3cret" not in str(with_password)  # dlt masks it when shown
