"""A sync file is checked before anything runs: every mistake names the key and what is
allowed, secrets are refused, and its ``[destination.sendgrid]`` resolves through dlt's config
providers below the environment variables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sendgrid_destination.errors import SyncFileError
from sendgrid_destination.sources import sql_credentials
from sendgrid_destination.sync_file import load_sync_file
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


def test_settings_resolve_from_the_file_below_environment_variables_above_config_toml(
    tmp_path: Path,
) -> None:
    # A fresh process, as the CLI is: dlt reads .dlt/config.toml of the directory it starts in.
    (tmp_path / ".dlt").mkdir()
    (tmp_path / ".dlt" / "config.toml").write_text(
        "[destination.sendgrid]\nmax_in_flight = 5\nmax_attempts = 4\nread_batch_rows = 7\n"
    )
    (tmp_path / "sync.toml").write_text(
        'name = "s"\n' + GOOD_SOURCE + "[destination.sendgrid]\nmax_in_flight = 3\n"
        'read_batch_rows = 10\n[destination.sendgrid.mapping]\nemail = "mail"\n'
    )
    script = (
        "from pathlib import Path\n"
        "from dlt.common.configuration import resolve_configuration\n"
        "from sendgrid_destination.config import SendGridConfiguration\n"
        "from sendgrid_destination.sync_file import load_sync_file, settings_provider\n"
        "def resolve():\n"
        "    return resolve_configuration(SendGridConfiguration(),"
        " sections=('destination', 'sendgrid'), accept_partial=True)\n"
        "with settings_provider(load_sync_file(Path('sync.toml'))):\n"
        "    c = resolve()\n"
        "after = resolve()\n"
        "print(c.max_in_flight, c.read_batch_rows, c.max_attempts, c.mapping,"
        " after.max_in_flight)\n"
    )
    env = os.environ | {"DESTINATION__SENDGRID__READ_BATCH_ROWS": "20"}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    # the file over config.toml; the environment over the file; config.toml for the rest;
    # and once the run is over the file is no provider any more
    assert result.stdout.split() == ["3", "20", "4", "{'email':", "'mail'}", "5"]


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
