"""What the package imports is what it declares, and the lock pins what it declares.

The imports are read from the source with ``ast`` (every ``import`` anywhere in a module,
function bodies included, except under ``if TYPE_CHECKING:``), mapped to the distributions
that provide them in this environment, and compared with ``pyproject.toml``: the package's
own modules against ``[project] dependencies``; the tests, benchmarks and example pipelines
against those plus the ``postgres`` and ``dev`` extras. A module that a dependency happens to
pull in (numpy through pyarrow, once) does not count: it must be declared.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "sendgrid_destination"
FIRST_PARTY = {PACKAGE, "pipelines", "benchmarks", "tests"}
# The orchestrator examples import their extra (airflow, dagster), installed only in its own
# venv: tests/orchestrators checks them there, against that extra.
ORCHESTRATED = ("pipelines/airflow", "pipelines/dagster", "tests/orchestrators")
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _requirements(*extras: str) -> list[Requirement]:
    found = [Requirement(r) for r in PROJECT["dependencies"]]
    for extra in extras:
        found += [Requirement(r) for r in PROJECT["optional-dependencies"][extra]]
    # "sendgrid-destination[postgres]" inside an extra stands for that extra's requirements
    own = canonicalize_name(PROJECT["name"])
    return [r for r in found if canonicalize_name(r.name) != own]


def _declared(*extras: str) -> set[str]:
    return {canonicalize_name(r.name) for r in _requirements(*extras)}


def _imported_modules(folder: Path, skip: tuple[str, ...] = ORCHESTRATED) -> dict[str, set[str]]:
    """Top-level third-party module -> files under ``folder`` that import it."""
    found: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        if str(path.relative_to(ROOT)).startswith(skip):
            continue
        for module in _imports(ast.parse(path.read_text(), str(path))):
            top = module.split(".")[0]
            if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def _imports(tree: ast.AST) -> Iterator[str]:
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []  # typing-only imports are not runtime dependencies
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def _distributions(module: str) -> set[str]:
    dists = metadata.packages_distributions().get(module)
    assert dists, f"no installed distribution provides the module {module!r}"
    return {canonicalize_name(d) for d in dists}


def _undeclared(folders: list[str], declared: set[str]) -> list[str]:
    missing = []
    for folder in folders:
        for module, files in sorted(_imported_modules(ROOT / folder).items()):
            if not _distributions(module) & declared:
                missing.append(f"{module} (imported by {', '.join(sorted(files))})")
    return missing


def test_every_module_the_package_imports_is_a_declared_runtime_dependency() -> None:
    imported = _imported_modules(ROOT / PACKAGE)
    assert {"dlt", "pyarrow", "numpy", "duckdb", "requests"} <= set(imported)
    assert _undeclared([PACKAGE], _declared()) == []


def test_tests_benchmarks_and_pipelines_import_only_declared_dependencies_and_extras() -> None:
    assert _undeclared(["tests", "benchmarks", "pipelines"], _declared("postgres", "dev")) == []


def test_every_declared_dependency_has_a_lower_bound() -> None:
    unbounded = [
        str(r)
        for r in _requirements("postgres", "dev")
        if not any(s.operator in (">=", "==", "~=") for s in r.specifier)
    ]
    assert unbounded == []


def test_every_extra_asked_of_a_dependency_is_one_it_provides_under_that_exact_spelling() -> None:
    # pip 23 (bundled with Python 3.11) compares extras literally: "dlt[sql_database]" matched
    # nothing in dlt 1.31 ("sql-database") and installed no SQLAlchemy, without a warning.
    asked = [(r.name, extra) for r in _requirements("postgres", "dev") for extra in r.extras]
    assert ("dlt", "sql-database") in asked
    unknown = [
        f"{name}[{extra}]"
        for name, extra in asked
        if extra not in (metadata.metadata(name).get_all("Provides-Extra") or [])
    ]
    assert unknown == []


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, version = line.partition("==")
            assert sep and version, f"requirements.lock: {line!r} is not a name==version pin"
            pins[canonicalize_name(name)] = version
    return pins


def test_the_lock_pins_every_declared_dependency_at_a_version_its_bounds_allow() -> None:
    pins = _lock()
    wrong = [
        f"{r} (lock: {pins.get(canonicalize_name(r.name), 'missing')})"
        for r in _requirements("postgres", "dev")
        if canonicalize_name(r.name) not in pins
        or not r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True)
    ]
    assert wrong == []


def test_the_postgres_extra_brings_sqlalchemy_2_and_psycopg2() -> None:
    # README: sql_table(credentials="postgresql+psycopg2://...") needs both.
    extra = {canonicalize_name(r.name): r for r in _requirements("postgres")}
    assert {"sqlalchemy", "psycopg2-binary"} <= set(extra)
    assert not extra["sqlalchemy"].specifier.contains("1.4.54")


def test_make_test_lowest_installs_exactly_the_lower_bounds_of_the_runtime_dependencies() -> None:
    lowest = {}
    for line in (ROOT / "requirements-lowest.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            pinned = Requirement(line)
            (version,) = [Version(s.version) for s in pinned.specifier if s.operator == "=="]
            lowest[canonicalize_name(pinned.name)] = (pinned.extras, version)
    for requirement in _requirements():
        (bound,) = [Version(s.version) for s in requirement.specifier if s.operator == ">="]
        assert lowest.get(canonicalize_name(requirement.name)) == (requirement.extras, bound)
