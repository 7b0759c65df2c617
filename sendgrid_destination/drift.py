"""Schema drift: a mapped column that stopped arriving, or changed type, is noticed.

dlt keeps a column in its schema when the source drops it and fills it with nulls: every row
then looks as if its value were emptied, and every contact would be sent again without the
field (SendGrid keeps the old value, so the requests change nothing). ``check_columns``
compares this load's mapped columns with the table's last load (kept in the state):

* a column (mapped, or the ``list_column``, whose emptying would take every contact out of
  its lists) that had values in at least half of the last load's rows and has none in this
  load (of at least ``MIN_ROWS`` rows: by chance that is a 1-in-a-million event) stops the
  table with an error naming it, unless ``allow_missing_columns`` (then it is a note);
* a column whose type family changed (integer to text, say), which can change what is sent,
  is a note in the run summary.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sendgrid_destination.errors import ConfigurationError

MIN_ROWS = 20


@dataclass(frozen=True)
class ColumnStats:
    rows: int
    values: Mapping[str, int]  # column -> non-null values in the load
    kinds: Mapping[str, str]  # column -> its type family (mapping.arrow_kind)

    def as_dict(self) -> dict[str, object]:
        return {"rows": self.rows, "values": dict(self.values), "kinds": dict(self.kinds)}

    @classmethod
    def from_dict(cls, doc: Mapping[str, object]) -> ColumnStats:
        values = doc.get("values")
        kinds = doc.get("kinds")
        rows = doc.get("rows")
        return cls(
            int(rows) if isinstance(rows, int) else 0,
            dict(values) if isinstance(values, dict) else {},
            dict(kinds) if isinstance(kinds, dict) else {},
        )


@dataclass
class DriftReport:
    notes: list[str] = field(default_factory=list)


def check_columns(
    stream: str,
    now: ColumnStats,
    last: ColumnStats | None,
    *,
    allow_missing: bool,
    list_column: str | None = None,
) -> DriftReport:
    report = DriftReport()
    if last is None:
        return report
    for column, kind in now.kinds.items():
        before = last.kinds.get(column)
        if before is not None and before != kind:
            report.notes.append(
                f"column {column!r} of table {stream!r} changed type ({before} -> {kind}): "
                "its values may be sent differently"
            )
        if _vanished(column, now, last):
            listing = column == list_column
            what, setting = ("List", "list_column") if listing else ("Mapped", "the mapping")
            harm = (
                "Every contact would be taken out of the lists it names."
                if listing
                else "Every contact would be sent again without it."
            )
            message = (
                f"{what} column {column!r} of table {stream!r} has no value in any of the "
                f"{now.rows} rows of this load, while {last.values[column]} of the "
                f"{last.rows} rows of the last load had one: it was probably dropped or "
                f"renamed upstream (dlt keeps it, empty). {harm} Restore the column, remove it "
                f"from {setting}, or set allow_missing_columns = true if loads without it "
                "are expected."
            )
            if not allow_missing:
                raise ConfigurationError(message)
            report.notes.append(f"column {column!r} of table {stream!r} is empty in this load")
    return report


def _vanished(column: str, now: ColumnStats, last: ColumnStats) -> bool:
    had = last.values.get(column, 0)
    return (
        now.rows >= MIN_ROWS
        and now.values.get(column, 0) == 0
        and last.rows >= MIN_ROWS
        and had * 2 >= last.rows
    )
