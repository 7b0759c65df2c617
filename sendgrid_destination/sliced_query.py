"""A DuckDB query over an Arrow table, in row slices that fit DuckDB's memory cap.

``SlicedQuery().run(table, query)`` returns ``query(table)``, row for row in order, where
``query`` runs one DuckDB query over the rows it is given and returns its Arrow result. When
DuckDB runs out of memory (``duckdb.OutOfMemoryException``), the rows are run again in
halves, and the slice size that worked is kept for the next ``run`` of the same instance (a
load's batches are alike); a single row that does not fit raises.

Why: DuckDB gathers the result of a query it runs on several threads in its own memory, in
order, before handing any of it over, and does not spill it. A query whose result grows with
its rows' text (the render's JSON, an import file's cells) stopped the load when a read
batch held long values: 100,000 rows of a 1,000-character text field in four-byte
characters are 400 MB of JSON, against the state's cap of 160 MB. Slicing only on a failure
costs the usual batch nothing: each slice is a query of its own (~20 ms to bind and start,
measured), and slicing every batch by an estimate of its JSON (which escapes make a guess)
slowed the usual render by a fifth.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb
import pyarrow as pa


class SlicedQuery:
    """See the module docstring."""

    def __init__(self) -> None:
        self.slice_rows: int | None = None  # set once a query ran out of memory

    def run(self, table: pa.Table, query: Callable[[pa.Table], pa.Table]) -> pa.Table:
        parts: list[pa.Table] = []
        start = 0
        while start < table.num_rows or not parts:
            size = self.slice_rows or table.num_rows
            part = table.slice(start, size)
            try:
                parts.append(query(part))
            except duckdb.OutOfMemoryException:
                if part.num_rows <= 1:
                    raise
                self.slice_rows = max(1, part.num_rows // 2)  # halves: at most log2(rows) times
                continue
            start += part.num_rows
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts)
