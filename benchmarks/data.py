"""Synthetic contact tables, generated in DuckDB SQL: deterministic for a (rows, seed) pair.

Contract: ``contacts_sql(rows, seed)`` is a SELECT yielding ``rows`` rows of the 12 columns in
``MAPPING`` (email with mixed case and stray spaces; names; address fields; phone; three
custom fields of type Text, Number and Date). Exactly 1 row in 100 is bad, in one of four
ways, each refused by the destination's validation:

* ``bad_email``: an address with two ``@``;
* ``no_identifier``: the email is NULL (no identifier at all);
* ``long_name``: a first name longer than 50 characters;
* ``nan_number``: the Number custom field is NaN.

Every good row has a distinct email, so there are no duplicate contact keys. ``table`` returns
it as an Arrow table, ``write_warehouse`` as a DuckDB file with table ``customers`` (what
``pipelines.warehouse_to_sendgrid`` reads), and ``touch`` changes a fraction of the good rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from sendgrid_destination.contact_model import FieldType

TABLE = "customers"
STREAM = "customers"
BAD_EVERY = 100  # row i is bad when i % 100 == BAD_AT: exactly 1%
BAD_AT = 37
BAD_KINDS = ("bad_email", "no_identifier", "long_name", "nan_number")

# SendGrid field = source column; the three custom fields are created in the emulator with
# these types (IDs e1_T, e2_N, e3_D in that order), and the in-process paths use the same IDs.
MAPPING: dict[str, Any] = {
    "email": "email",
    "first_name": "first_name",
    "last_name": "last_name",
    "address_line_1": "address_line_1",
    "city": "city",
    "state_province_region": "state_province_region",
    "postal_code": "postal_code",
    "country": "country",
    "phone_number": "phone_number",
    "custom_fields": {
        "plan": "plan",
        "lifetime_value": "lifetime_value",
        "signed_up_at": "signed_up_at",
    },
}
CUSTOM_TYPES: dict[str, FieldType] = {
    "plan": "Text",
    "lifetime_value": "Number",
    "signed_up_at": "Date",
}
CUSTOM_IDS: dict[str, str] = {"plan": "e1_T", "lifetime_value": "e2_N", "signed_up_at": "e3_D"}

_SQL = """
WITH base AS (
    SELECT i AS id, CAST(hash(i * 7919 + {seed}) % 1000000007 AS BIGINT) AS h,
           CASE WHEN i % {every} = {at} THEN (i // {every}) % 4 ELSE -1 END AS bad
    FROM range({rows}) t(i)
)
SELECT
    CASE
        WHEN bad = 1 THEN NULL
        ELSE (CASE WHEN h % 3 = 0 THEN '  ' ELSE '' END)
             || (['Ann', 'Bob', 'Chloe', 'Dmitri', 'Eve', 'Farah', 'Gus', 'Hana'])[1 + h % 8]
             || '.' || id || (CASE WHEN bad = 0 THEN '@@' ELSE '@' END)
             || (['Example.com', 'example.ORG', 'MAIL.Example.net', 'web.de'])[1 + (h // 8) % 4]
             || (CASE WHEN h % 7 = 0 THEN ' ' ELSE '' END)
    END AS email,
    CASE WHEN bad = 2 THEN repeat('Bartholomew', 5)
         WHEN h % 13 = 0 THEN NULL
         ELSE (['Ann', 'Bob', 'Chloé', 'Dmitri', 'Eve', 'Farah', 'Gus', 'Hana'])[1 + h % 8]
    END AS first_name,
    (['Smith', 'Müller', 'García', 'Nakamura', 'O''Brien', 'Kowalski'])[1 + (h // 64) % 6]
        AS last_name,
    CAST(1 + h % 9999 AS VARCHAR) || ' '
        || (['Main St', 'Hauptstraße 2', 'Rue de la Paix', 'Elm Ave'])[1 + (h // 16) % 4]
        AS address_line_1,
    (['Berlin', 'Paris', 'Zürich', 'Lisbon', 'Austin', 'Osaka', NULL])[1 + (h // 512) % 7]
        AS city,
    (['BE', 'IDF', 'ZH', 'LI', 'TX', 'OS', NULL])[1 + (h // 512) % 7] AS state_province_region,
    lpad(CAST(h % 99999 AS VARCHAR), 5, '0') AS postal_code,
    (['DE', 'FR', 'CH', 'PT', 'US', 'JP', NULL])[1 + (h // 512) % 7] AS country,
    CASE WHEN h % 5 = 0 THEN NULL ELSE '+1415' || lpad(CAST(h % 10000000 AS VARCHAR), 7, '0')
    END AS phone_number,
    (['free', 'starter', 'pro', 'enterprise'])[1 + (h // 4096) % 4] AS plan,
    CASE WHEN bad = 3 THEN CAST('NaN' AS DOUBLE)
         WHEN h % 11 = 0 THEN NULL
         ELSE CAST((h % 1000000) / 100.0 AS DOUBLE)
    END AS lifetime_value,
    CASE WHEN h % 17 = 0 THEN NULL
         ELSE TIMESTAMP '2018-01-01 00:00:00' + to_seconds(CAST(h % 250000000 AS BIGINT))
    END AS signed_up_at
FROM base
ORDER BY id
"""


def contacts_sql(rows: int, seed: int = 42) -> str:
    """The SELECT generating ``rows`` synthetic contacts (see the module docstring)."""
    return _SQL.format(rows=int(rows), seed=int(seed), every=BAD_EVERY, at=BAD_AT)


def bad_row_count(rows: int) -> int:
    """How many of the first ``rows`` rows are bad (the validation must refuse exactly these)."""
    return max(0, (rows - BAD_AT + BAD_EVERY - 1) // BAD_EVERY)


def table(rows: int, seed: int = 42) -> pa.Table:
    """The contacts as one Arrow table (in memory)."""
    with _connect(":memory:") as con:
        return con.sql(contacts_sql(rows, seed)).to_arrow_table().combine_chunks()


def write_warehouse(path: Path, rows: int, seed: int = 42) -> Path:
    """A DuckDB file with table ``customers`` holding the contacts (replaced if present)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    with _connect(str(path)) as con:
        con.execute(f"CREATE TABLE {TABLE} AS {contacts_sql(rows, seed)}")
    return path


def touch(path: Path, fraction: float, seed: int = 7) -> int:
    """Change the plan of ``fraction`` of the good rows (spread by hash); the number changed."""
    with _connect(str(path)) as con:
        total = _count(con, f"SELECT count(*) FROM {TABLE}")
        wanted = max(1, round(total * fraction))
        con.execute(
            f"CREATE TEMP TABLE picked AS SELECT email FROM {TABLE} "
            f"WHERE email IS NOT NULL AND email NOT LIKE '%@@%' "
            f"AND first_name IS DISTINCT FROM repeat('Bartholomew', 5) "
            f"AND NOT isnan(coalesce(lifetime_value, 0)) "
            f"ORDER BY hash(email || '{int(seed)}') LIMIT {wanted}"
        )
        con.execute(f"UPDATE {TABLE} SET plan = 'vip' WHERE email IN (SELECT email FROM picked)")
        return _count(con, "SELECT count(*) FROM picked")


def _connect(database: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(database)
    con.execute("SET enable_progress_bar = false")
    return con


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0
