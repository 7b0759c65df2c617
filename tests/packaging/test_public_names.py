"""The package's public names: each importable from the top, each loaded only when used, so
the emulator (standard library only) starts without dlt, DuckDB and pyarrow."""

from __future__ import annotations

import subprocess
import sys

import pytest

import sendgrid_destination


@pytest.mark.parametrize("name", sendgrid_destination.__all__)
def test_every_public_name_is_importable_from_the_package(name: str) -> None:
    assert getattr(sendgrid_destination, name) is not None
    assert name in dir(sendgrid_destination)


def test_an_unknown_name_is_an_attribute_error_naming_it() -> None:
    with pytest.raises(AttributeError, match="'no_such_name'"):
        sendgrid_destination.no_such_name  # noqa: B018


def test_importing_the_emulator_loads_neither_dlt_nor_duckdb_nor_pyarrow() -> None:
    probe = (
        "import sys, sendgrid_destination.emulator\n"
        "print(sorted(m for m in ('dlt', 'duckdb', 'pyarrow') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_the_commands_emulator_starts_without_dlt_and_names_itself_in_its_usage() -> None:
    probe = (
        "import sys\n"
        "from sendgrid_destination.entry import main\n"
        "try:\n"
        "    main(['emulator', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in ('dlt', 'duckdb', 'pyarrow') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.startswith("usage: sendgrid-destination emulator")
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_every_other_command_goes_to_the_full_cli() -> None:
    from sendgrid_destination.entry import main

    with pytest.raises(SystemExit) as stopped:
        main(["--help"])
    assert stopped.value.code == 0
