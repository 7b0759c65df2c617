"""The HTTP layer's boundaries, read from the source: what may import what."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "sendgrid_destination"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found - {"__future__"}


def test_the_endpoint_module_needs_only_the_standard_library() -> None:
    modules = imported_modules(PACKAGE / "api" / "endpoint.py")
    assert modules and all(m.split(".")[0] in sys.stdlib_module_names for m in modules)


def test_the_api_package_imports_nothing_on_its_own() -> None:
    assert imported_modules(PACKAGE / "api" / "__init__.py") == set()


def test_settings_reach_the_api_only_through_the_endpoint_module() -> None:
    api_imports = {m for m in imported_modules(PACKAGE / "config.py") if ".api" in m}
    assert api_imports == {"sendgrid_destination.api.endpoint"}


def test_only_the_transport_sends_requests() -> None:
    # The emulator is a server with its own rules (and owner): it is not the client side.
    talking = {
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if "emulator" not in path.parts
        and {m.split(".")[0] for m in imported_modules(path)} & {"requests", "urllib3"}
    }
    assert talking == {"api/transport.py"}
