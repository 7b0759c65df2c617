"""The orchestrator examples run in their own virtual environments (``make test-airflow``,
``make test-dagster``: Airflow and Dagster are optional extras with their own pinned locks).
Elsewhere these tests skip with that reason, except when the Makefile target runs them: then
``SENDGRID_DESTINATION_REQUIRE_<NAME>=1`` turns a missing package into a failure.

Settings reach the examples as a deployment would give them: environment variables of each
account's destination section (``DESTINATION__SENDGRID_<ACCOUNT>__...``), the key included.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelines.sample_warehouse import build
from sendgrid_destination.emulator import Emulator

API_KEY = "SG.test-orchestrator-key"
CUSTOMERS = 300
ROOT = Path(__file__).resolve().parents[2]


def require(module: str, target: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as exc:
        flag = f"SENDGRID_DESTINATION_REQUIRE_{target.upper()}"
        if os.environ.get(flag) == "1":
            pytest.fail(f"{module} is not importable ({exc}), and {flag}=1 requires it")
        pytest.skip(f"{module} is not installed here: `make test-{target}` runs this test")


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    return build(tmp_path / "warehouse.duckdb", rows=CUSTOMERS)


@pytest.fixture
def accounts(
    tmp_path: Path, warehouse: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Emulator]]:
    """An emulator per example account, and the environment that points each account at it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SENDGRID_EXAMPLE_WAREHOUSE", str(warehouse))
    monkeypatch.setenv("RUNTIME__DLTHUB_TELEMETRY", "false")
    with Emulator(api_key=API_KEY) as main, Emulator(api_key=API_KEY) as eu:
        for name, emulator in {"main": main, "eu": eu}.items():
            prefix = f"DESTINATION__SENDGRID_{name.upper()}__"
            monkeypatch.setenv(prefix + "API_KEY", API_KEY)
            monkeypatch.setenv(prefix + "BASE_URL", emulator.base_url)
            monkeypatch.setenv(prefix + "STATE_PATH", str(tmp_path / f"state-{name}.duckdb"))
            monkeypatch.setenv(prefix + "JOB_POLL_INTERVAL", "0.05")
        yield {"main": main, "eu": eu}


def upserted(emulator: Emulator, since: int = 0) -> int:
    return sum(
        r.contact_count or 0
        for r in emulator.requests[since:]
        if r.route == "PUT /v3/marketing/contacts" and r.status == 202
    )


def undeclared_imports(paths: list[str], extra: str) -> list[str]:
    """Third-party modules imported by the files under ``paths`` (folders or files) that
    neither the dev extras nor ``extra`` declare: the packaging test's check, for the files it
    leaves to these venvs."""
    import ast
    import sys

    from tests.packaging.test_dependencies import FIRST_PARTY, _declared, _distributions, _imports

    declared = _declared("postgres", "dev", extra)
    missing = []
    for name in paths:
        root = ROOT / name
        for path in sorted(root.rglob("*.py")) if root.is_dir() else [root]:
            for module in _imports(ast.parse(path.read_text(), str(path))):
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in FIRST_PARTY:
                    continue
                if not _distributions(top) & declared:
                    missing.append(f"{top} (imported by {path.relative_to(ROOT)})")
    return missing
