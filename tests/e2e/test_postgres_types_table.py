"""The README's table of what each PostgreSQL type sends, generated here so it cannot drift.

One PostgreSQL table with a column of every common type is loaded three times in one
``sql_database``-style run (three resources over the same table, one per SendGrid field type,
each with its own mapping under ``tables``), with ``on_invalid_value = "omit_field"`` so that a
value refused for one column does not hide the others. Columns the mapping refuses outright
(a type the field cannot take) are taken from the refusal itself, which lists every refused
column at once, and the table is loaded again without them. What is sent is read from the
request bodies the emulator received, as JSON text (so the digits are those on the wire).

The table is written between ``<!-- pg-types:begin -->`` and ``<!-- pg-types:end -->`` in the
README; this test fails when they differ. ``SENDGRID_DESTINATION_WRITE_README=1`` rewrites it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dlt
import pyarrow.parquet as pq
import pytest
from dlt.pipeline.exceptions import PipelineStepFailed
from dlt.sources.sql_database import sql_table

from sendgrid_destination.emulator import Emulator
from sendgrid_destination.errors import TablesNotLoadedError
from tests.e2e.conftest import PostgresSchema, cause_of, rejects_of

README = Path(__file__).resolve().parents[2] / "README.md"
BLOCK = re.compile(r"(<!-- pg-types:begin -->\n)(.*?)(<!-- pg-types:end -->)", re.S)
WRITE_ENV = "SENDGRID_DESTINATION_WRITE_README"
TARGETS = ("Text", "Number", "Date")
REFUSED = re.compile(r"Column '(\w+)' \((.*?)\) cannot feed custom field '(\w+)'")

# (column, PostgreSQL type, the value as a SQL literal); one row holds them all.
TYPES: list[tuple[str, str, str]] = [
    ("c_text", "text", "'Hello '"),
    ("c_varchar", "varchar(20)", "'Hello'"),
    ("c_char", "char(10)", "'Gre'"),
    ("c_smallint", "smallint", "7"),
    ("c_integer", "integer", "42"),
    ("c_bigint", "bigint", "9007199254740993"),
    ("c_numeric_38_10", "numeric(38,10)", "12345678901234567890.0123456789"),
    ("c_numeric_12_2", "numeric(12,2)", "1234.50"),
    ("c_numeric", "numeric", "1.5"),
    ("c_real", "real", "0.5"),
    ("c_double", "double precision", "0.1"),
    ("c_boolean", "boolean", "true"),
    ("c_date", "date", "'2024-02-29'"),
    ("c_timestamp", "timestamp", "'2024-03-05 10:11:12'"),
    ("c_timestamptz", "timestamptz", "'2024-03-05 10:11:12+02'"),
    ("c_time", "time", "'10:11:12'"),
    ("c_timetz", "timetz", "'10:11:12+02'"),
    ("c_uuid", "uuid", "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'"),
    ("c_json", "json", """'{"a": 1}'"""),
    ("c_jsonb", "jsonb", """'{"a": 1}'"""),
    ("c_text_array", "text[]", "ARRAY['a@x.com', 'b@x.com']"),
    ("c_integer_array", "integer[]", "ARRAY[1, 2]"),
    ("c_money", "money", "1234.56"),
    ("c_inet", "inet", "'10.0.0.1'"),
    ("c_bytea", "bytea", "'\\xdeadbeef'"),
]


def _field(column: str, target: str) -> str:
    return f"{column[2:]}_{target[0].lower()}"


class _Bodies:
    """Custom field values of every upsert body the emulator receives, as JSON text."""

    def __init__(self, emulator: Emulator) -> None:
        self.values: dict[str, str] = {}  # field ID -> JSON text of the value sent
        api = emulator._api  # a tap on the API's handler: the emulator keeps no bodies
        handle: Callable[[Any], Any] = api.handle

        def tap(request: Any) -> Any:
            if request.method == "PUT" and request.path == "/v3/marketing/contacts":
                self._read(request.body)
            return handle(request)

        api.handle = tap  # type: ignore[method-assign]

    def _read(self, body: bytes) -> None:
        keep = lambda text: ("raw", text)  # noqa: E731  (numbers keep their digits)
        for contact in json.loads(body, parse_float=keep, parse_int=keep)["contacts"]:
            for field_id, value in contact.get("custom_fields", {}).items():
                self.values[field_id] = _json_text(value)


def _json_text(value: Any) -> str:
    if isinstance(value, tuple):
        return str(value[1])
    return json.dumps(value, ensure_ascii=False)


def _load_all(
    pg: PostgresSchema, emulator: Emulator, destination: Any, tmp_path: Path
) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Per target, column -> cell; and column -> the Arrow type dlt handed over."""
    ids = {
        (column, target): emulator.add_custom_field(_field(column, target), target)  # type: ignore[arg-type]
        for column, _, _ in TYPES
        for target in TARGETS
    }
    bodies = _Bodies(emulator)
    cells: dict[str, dict[str, str]] = {t: {} for t in TARGETS}
    arrow: dict[str, str] = {}
    mapped = {t: [c for c, _, _ in TYPES] for t in TARGETS}
    for attempt in range(3):  # refusals come in two rounds at most (docs: "at once")
        tables = {
            f"as_{t.lower()}": {
                "mapping": {
                    "email": "email",
                    "custom_fields": {_field(c, t): c for c in mapped[t]},
                },
                "on_invalid_value": "omit_field",
            }
            for t in TARGETS
            if mapped[t]
        }
        pipeline = dlt.pipeline(
            f"types_{attempt}",
            destination=destination(
                mapping=None, tables=tables, state_path=str(tmp_path / f"state{attempt}.duckdb")
            ),
            pipelines_dir=str(tmp_path / "dlt"),
        )
        resources = [
            sql_table(
                credentials=pg.url, schema=pg.name, table="types", backend="pyarrow"
            ).with_name(name)
            for name in tables
        ]
        try:
            pipeline.run(resources)
            refused = []
        except PipelineStepFailed as failed:
            refused = REFUSED.findall(str(cause_of(failed, TablesNotLoadedError)))
            assert refused, f"the load failed for another reason: {failed.value}"
        arrow |= _arrow_types(pipeline)
        for column, data_type, field in refused:
            target = next(t for t in TARGETS if field == _field(column, t))
            cells[target][column] = f"column refused ({data_type})"
            mapped[target].remove(column)
        if not refused:
            break
    for r in rejects_of(tmp_path / f"state{attempt}.duckdb", "omitted"):
        target = r["stream"][len("as_") :].capitalize()
        cells[target][r["column"]] = "refused: " + r["reason"].split(": ", 1)[1]
    for (column, target), field_id in ids.items():
        if column not in cells[target]:
            cells[target][column] = (
                f"`{bodies.values[field_id]}`" if field_id in bodies.values else "nothing (empty)"
            )
    return cells, arrow


def _arrow_types(pipeline: dlt.Pipeline) -> dict[str, str]:
    files = Path(pipeline.pipelines_dir, pipeline.pipeline_name).glob(
        "load/loaded/*/completed_jobs/as_text.*.parquet"
    )
    return {f.name: str(f.type) for path in files for f in pq.read_schema(path)}


def _markdown(cells: dict[str, dict[str, str]], arrow: dict[str, str]) -> str:
    header = ["PostgreSQL type", "value", "Arrow type from dlt", *(f"{t} field" for t in TARGETS)]
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for column, pg_type, literal in TYPES:
        row = [f"`{pg_type}`", f"`{literal}`".replace("|", "\\|"), f"`{arrow.get(column, '?')}`"]
        row += [cells[t][column].replace("|", "\\|") for t in TARGETS]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def test_the_readme_says_what_every_common_postgresql_type_sends(
    postgres_schema, emulator, destination, tmp_path
) -> None:
    columns = ", ".join(f"{c} {t}" for c, t, _ in TYPES)
    values = ", ".join(v for _, _, v in TYPES)
    postgres_schema.execute(
        f"CREATE TABLE {{schema}}.types (email text, {columns})",
        f"INSERT INTO {{schema}}.types VALUES ('ann@example.com', {values})",
    )

    cells, arrow = _load_all(postgres_schema, emulator, destination, tmp_path)
    table = _markdown(cells, arrow)

    readme = README.read_text()
    match = BLOCK.search(readme)
    assert match, "README.md has no <!-- pg-types:begin --> ... <!-- pg-types:end --> block"
    if os.environ.get(WRITE_ENV) == "1":
        README.write_text(readme[: match.start(2)] + table + readme[match.end(2) :])
        pytest.skip(f"README.md rewritten ({WRITE_ENV}=1)")
    assert match.group(2) == table, f"README's type table is stale: run with {WRITE_ENV}=1"
