"""Fixtures for end-to-end tests: real dlt pipelines into a real emulator over loopback HTTP.

Each test gets its own emulator, state file and dlt working directory, runs from an empty
temporary directory (so the repository's ``.dlt/config.toml`` is not read), and shares one
``FakeClock`` between the emulator and the destination (``sendgrid(clock=...)``), so every
wait (rate limits, backoff, job polling) is recorded instead of slept.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dlt
import pyarrow as pa
import pytest
from dlt.common.configuration.container import Container
from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext
from dlt.common.pipeline import LoadInfo

from sendgrid_destination import sendgrid
from sendgrid_destination.clock import FakeClock
from sendgrid_destination.emulator import Emulator
from sendgrid_destination.state import StateStore, reports

API_KEY = "SG.test-e2e-key"
DEFAULT_MAPPING: dict[str, Any] = {"email": "email", "first_name": "first_name"}


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeClock]:
    fake = FakeClock()
    monkeypatch.chdir(tmp_path)
    for name in ("DESTINATION__SENDGRID__API_KEY", "DESTINATION__SENDGRID__BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    yield fake


@pytest.fixture
def emulator(clock: FakeClock) -> Iterator[Emulator]:
    with Emulator(api_key=API_KEY, clock=clock, job_polls_until_done=1) as emu:
        yield emu


@pytest.fixture
def state_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "sendgrid.duckdb"


@pytest.fixture
def destination(emulator: Emulator, state_path: Path) -> Callable[..., sendgrid]:
    """``destination(**overrides)``: a sendgrid() bound to this test's emulator and state."""

    def make(**overrides: Any) -> sendgrid:
        return destination_for(emulator, overrides.pop("state_path", state_path), **overrides)

    return make


@pytest.fixture
def run(tmp_path: Path) -> Callable[..., LoadInfo]:
    """``run(data, destination, name="contacts", pipeline="e2e")``: one real dlt run."""

    def go(
        data: Any, destination: sendgrid, *, name: str = "contacts", pipeline: str = "e2e"
    ) -> LoadInfo:
        p = dlt.pipeline(pipeline, destination=destination, pipelines_dir=str(tmp_path / "dlt"))
        return p.run(data, table_name=name)

    return go


def contacts_table(n: int, *, start: int = 0, **columns: list[Any]) -> pa.Table:
    """``n`` valid contacts ``user<i>@example.com`` with first names, plus extra columns."""
    data: dict[str, list[Any]] = {
        "email": [f"user{i}@example.com" for i in range(start, start + n)],
        "first_name": [f"First{i}" for i in range(start, start + n)],
    }
    data.update(columns)
    return pa.table(data)


def flagged_contacts(primary_key: str) -> Any:
    """A dlt resource ``contacts`` (merge on ``primary_key``) of the Arrow table it is given,
    whose ``deleted`` column carries dlt's ``hard_delete`` hint."""

    @dlt.resource(
        name="contacts",
        write_disposition="merge",
        primary_key=primary_key,
        columns={"deleted": {"data_type": "bool", "hard_delete": True}},
    )
    def contacts(data: pa.Table) -> Any:
        yield data

    return contacts


def upserts(emulator: Emulator) -> list[Any]:
    return [r for r in emulator.requests if r.route == "PUT /v3/marketing/contacts"]


def run_summary(state_path: Path, info: LoadInfo, stream: str = "contacts") -> dict[str, Any]:
    with StateStore.open(state_path, read_only=True) as store:
        summary = store.run_summary(f"{info.loads_ids[-1]}:{stream}")
    assert summary is not None
    return summary


# --- helpers added for the test_destination_* files ---------------------------------------


def rejects_of(state_path: Path, stage: str | None = None) -> list[dict[str, Any]]:
    """Every row of the state file's rejects table (optionally of one stage)."""
    with StateStore.open(state_path, read_only=True) as store:
        rows = reports.rejects(store).read_all().to_pylist()
    return [r for r in rows if stage is None or r["stage"] == stage]


def exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception it was raised from or while handling, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def cause_of(exc: BaseException, kind: type[BaseException]) -> BaseException:
    """The first exception of type ``kind`` in ``exc``'s chain (fails the test if none)."""
    found = [e for e in exception_chain(exc) if isinstance(e, kind)]
    assert found, f"no {kind.__name__} in {[type(e).__name__ for e in exception_chain(exc)]}"
    return found[0]


def destination_for(emu: Emulator, state_path: Path | None, **overrides: Any) -> sendgrid:
    """Like the ``destination`` fixture, for an emulator a test built itself."""
    settings: dict[str, Any] = {
        "api_key": API_KEY,
        "base_url": emu.base_url,
        "mapping": DEFAULT_MAPPING,
        "state_path": None if state_path is None else str(state_path),
        "job_poll_interval": 1.0,
        "max_attempts": 8,
        "clock": emu.clock,
    }
    settings.update(overrides)
    return sendgrid(**settings)


# --- helpers added for the test_state_* files ---------------------------------------------


def state_rows(
    state_path: Path, sql: str, params: list[Any] | None = None
) -> list[tuple[Any, ...]]:
    """Rows of a read-only query on the state file (opened the way the CLI opens it)."""
    with StateStore.open(state_path, read_only=True) as store:
        return store.con.execute(sql, params or []).fetchall()


def contact_states(state_path: Path) -> dict[str, tuple[str, str | None]]:
    """``{contact_key: (status, reason)}`` for every contact in the state file."""
    rows = state_rows(state_path, "SELECT contact_key, status, reason FROM contact_status")
    return {key: (status, reason) for key, status, reason in rows}


def upserted_contacts(emulator: Emulator) -> int:
    """Contacts carried by the accepted (202) upserts the emulator has recorded."""
    return sum(r.contact_count or 0 for r in upserts(emulator) if r.status == 202)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """``sendgrid-destination <argv>`` in-process; its stdout (the exit code must be 0)."""
    from sendgrid_destination.cli import main

    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr().out
    assert code == 0, out
    return out


# --- PostgreSQL (127.0.0.1:5432, database test, trust auth) -------------------------------

POSTGRES_HOST, POSTGRES_PORT, POSTGRES_DB = "127.0.0.1", 5432, "test"
POSTGRES_USERS = ("postgres", "root")
REQUIRE_ENV = "SENDGRID_DESTINATION_REQUIRE_POSTGRES"


@pytest.fixture
def postgres_url() -> str:
    """A connection URL for the local test database.

    Skips (with the reason) only when nothing listens on the port, and fails instead when
    SENDGRID_DESTINATION_REQUIRE_POSTGRES=1. A server that answers but lets neither user in
    is a broken setup, not an absent one: that fails too.
    """
    import psycopg2

    try:
        socket.create_connection((POSTGRES_HOST, POSTGRES_PORT), timeout=3).close()
    except OSError as exc:
        reason = f"PostgreSQL unreachable at {POSTGRES_HOST}:{POSTGRES_PORT} ({exc})"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason}, and {REQUIRE_ENV}=1 requires it")
        pytest.skip(reason)
    problems = []
    for user in POSTGRES_USERS:
        try:
            psycopg2.connect(
                host=POSTGRES_HOST,
                port=POSTGRES_PORT,
                dbname=POSTGRES_DB,
                user=user,
                connect_timeout=3,
            ).close()
        except psycopg2.OperationalError as exc:
            problems.append(f"{user}: {str(exc).strip()}")
            continue
        # SQLAlchemy 2.1 maps postgresql:// to psycopg 3; the dev extras ship psycopg2.
        return f"postgresql+psycopg2://{user}@{POSTGRES_HOST}:{POSTGRES_PORT}/{POSTGRES_DB}"
    pytest.fail(
        f"PostgreSQL answers at {POSTGRES_HOST}:{POSTGRES_PORT} but database {POSTGRES_DB!r} "
        f"refused every user: {'; '.join(problems)}"
    )


@dataclass(frozen=True)
class PostgresSchema:
    """A schema of its own in the test database: ``url`` (SQLAlchemy), ``name``."""

    url: str
    name: str

    def execute(self, *statements: str) -> None:
        """Run SQL in autocommit (``{schema}`` in a statement is this schema's name)."""
        import psycopg2

        con = psycopg2.connect(self.url.replace("+psycopg2", ""))
        con.autocommit = True
        try:
            with con.cursor() as cur:
                for statement in statements:
                    cur.execute(statement.replace("{schema}", self.name))
        finally:
            con.close()


@pytest.fixture
def postgres_schema(postgres_url: str) -> Iterator[PostgresSchema]:
    """A uniquely named, empty schema; dropped with everything in it after the test."""
    schema = PostgresSchema(postgres_url, f"sg_e2e_{uuid.uuid4().hex[:10]}")
    schema.execute("CREATE SCHEMA {schema}")
    try:
        yield schema
    finally:
        schema.execute("DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def config_files_of_this_test(clock: FakeClock, tmp_path: Path) -> Iterator[None]:
    """dlt's TOML providers read ``<tmp_path>/.dlt/`` during the test, then the previous ones
    (``pytestmark = pytest.mark.usefixtures("config_files_of_this_test")`` in a module)."""
    run_context = Container()[PluggableRunContext]
    previous = run_context.context.run_dir
    run_context.reload(str(tmp_path))
    yield
    run_context.reload(previous)
