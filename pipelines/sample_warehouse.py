"""A synthetic customer warehouse in DuckDB, deterministic for a given seed.

``build(path, rows)`` writes table ``customers`` (customer_id, email, first_name, last_name,
city, country, postal_code, phone, plan, lifetime_value, signed_up_at, updated_at) with a
few realistic bad rows spread through it: malformed emails, rows with no email, names longer
than SendGrid's 50 characters, addresses without a domain, and one duplicated customer.
``touch(path, n)`` changes ``n`` customers, as an upstream update between two syncs would.
All in SQL, so a million rows take seconds. The quick start's warehouse comes from here:

    .venv/bin/python -m pipelines.sample_warehouse --output warehouse.duckdb   (make warehouse)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import duckdb

BAD_ROW_EVERY = 500  # about 0.2% of rows are broken, in four different ways

_CUSTOMERS_SQL = """
CREATE OR REPLACE TABLE customers AS
WITH base AS (
    SELECT i AS customer_id,
           CAST(hash(i * 7919 + {seed}) % 1000000007 AS BIGINT) AS h
    FROM range({rows}) t(i)
)
SELECT
    customer_id,
    CASE
        WHEN customer_id % {bad} = 1 THEN 'customer' || customer_id || '@@example.com'
        WHEN customer_id % {bad} = 2 THEN NULL
        WHEN customer_id % {bad} = 4 THEN 'customer' || customer_id || '@localhost'
        ELSE (CASE WHEN h % 3 = 0 THEN ' ' ELSE '' END)
             || (['Ann', 'Bob', 'Chloe', 'Dmitri', 'Eve', 'Farah', 'Gus', 'Hana'])[1 + h % 8]
             || '.' || customer_id || '@'
             || (['Example.com', 'example.org', 'MAIL.example.net'])[1 + (h // 8) % 3]
    END AS email,
    CASE WHEN customer_id % {bad} = 3 THEN repeat('Bartholomew', 6)
         ELSE (['Ann', 'Bob', 'Chloé', 'Dmitri', 'Eve', 'Farah', 'Gus', 'Hana'])[1 + h % 8]
    END AS first_name,
    (['Smith', 'Müller', 'García', 'Nakamura', 'O''Brien', 'Kowalski'])[1 + (h // 64) % 6]
        AS last_name,
    (['Berlin', 'Paris', 'Zürich', 'Lisbon', 'Austin', 'Osaka', NULL])[1 + (h // 512) % 7]
        AS city,
    (['DE', 'FR', 'CH', 'PT', 'US', 'JP', NULL])[1 + (h // 512) % 7] AS country,
    lpad(CAST(h % 99999 AS VARCHAR), 5, '0') AS postal_code,
    CASE WHEN h % 5 = 0 THEN NULL
         ELSE '+1415' || lpad(CAST(h % 10000000 AS VARCHAR), 7, '0')
    END AS phone,
    (['free', 'starter', 'pro', 'enterprise'])[1 + (h // 4096) % 4] AS plan,
    CAST((h % 1000000) / 100.0 AS DECIMAL(12, 2)) AS lifetime_value,
    TIMESTAMPTZ '2020-01-01 00:00:00+00' + to_seconds(CAST(h % 150000000 AS BIGINT))
        AS signed_up_at,
    TIMESTAMPTZ '2026-01-01 00:00:00+00' AS updated_at
FROM base
"""


def build(path: Path, rows: int = 50_000, seed: int = 42) -> Path:
    """Create (or replace) the warehouse file with ``rows`` customers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(path)) as con:
        con.execute(_CUSTOMERS_SQL.format(rows=rows, seed=seed, bad=BAD_ROW_EVERY))
        # A customer exported twice with different plans: the later row must win.
        con.execute(
            "INSERT INTO customers SELECT customer_id, email, first_name, last_name, city, "
            "country, postal_code, phone, 'enterprise', lifetime_value, signed_up_at, "
            "updated_at + INTERVAL 1 DAY FROM customers WHERE customer_id = 10"
        )
    return path


def touch(path: Path, count: int, seed: int = 7) -> int:
    """Change the plan and value of ``count`` valid customers; return how many changed."""
    with duckdb.connect(str(path)) as con:
        con.execute(
            "UPDATE customers SET plan = 'vip', lifetime_value = lifetime_value + 1, "
            "updated_at = updated_at + INTERVAL 1 HOUR WHERE customer_id IN ("
            f"SELECT customer_id FROM customers WHERE customer_id % {BAD_ROW_EVERY} > 4 "
            f"AND customer_id <> 10 ORDER BY hash(customer_id + {seed}) LIMIT {count})"
        )
        row = con.execute("SELECT count(*) FROM customers WHERE plan = 'vip'").fetchone()
    return int(row[0]) if row else 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Build the sample customer warehouse (DuckDB).")
    parser.add_argument("--output", type=Path, default=Path("warehouse.duckdb"), help="file")
    parser.add_argument("--rows", type=int, default=1_000, help="customers (default 1,000)")
    parser.add_argument("--seed", type=int, default=42, help="same seed, same customers")
    args = parser.parse_args(argv)
    build(args.output, rows=args.rows, seed=args.seed)
    print(f"Built {args.output}: table customers, {args.rows:,} customers (a few broken rows).")


if __name__ == "__main__":
    main()
