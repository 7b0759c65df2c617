"""docs/architecture.md's module table gives every module of the package its one job: a module
added without a row (four had none) is found here, as is a row left for a module removed."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "sendgrid_destination"
ROW = re.compile(r"^\| `([a-z_/]+(?:\.py|/))` \|", re.M)


def _documented() -> set[str]:
    return set(ROW.findall((ROOT / "docs" / "architecture.md").read_text()))


def _modules() -> set[str]:
    """Every module of the package and its sub-packages, relative to it; the emulator is one
    entry (it has its own document), and ``__init__`` and the version file hold no job."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith("emulator/"):
            found.add("emulator/")
        elif path.name not in ("__init__.py", "_version.py"):
            found.add(relative)
    return found


def test_every_module_of_the_package_has_a_row_in_the_architecture_table() -> None:
    assert sorted(_modules() - _documented()) == []


def test_every_row_of_the_architecture_table_names_a_module_that_exists() -> None:
    assert sorted(_documented() - _modules()) == []
