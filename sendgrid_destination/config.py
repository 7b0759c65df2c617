"""Settings of the SendGrid destination, resolved the dlt way.

Every field comes from an argument of ``sendgrid(...)``, ``[destination.sendgrid]`` in
``.dlt/config.toml`` (``api_key`` only from ``.dlt/secrets.toml``), or an environment variable
such as ``DESTINATION__SENDGRID__API_KEY``. The defaults here must equal those of the factory's
``__init__``: dlt drops arguments equal to the factory defaults as "not explicit", and falls back
to the spec's value (docs/dlt-behaviour.md, "Configuration"). The mapping, a dict that dlt
resolves as one value, also takes single entries from nested environment variables
(``DESTINATION__SENDGRID__MAPPING__EMAIL``; see ``env_mapping``).

Several tables: ``tables`` gives each table its own mapping and options
(``[destination.sendgrid.tables.<table>]``, ``sendgrid(tables={...})`` or the JSON variable
``DESTINATION__SENDGRID__TABLES``); ``for_table(name)`` is the configuration one table loads
with: the top-level settings, overridden by the table's entry (``TABLE_OPTIONS``). With
``tables`` set, a table it does not name has no mapping and is skipped (``for_table`` returns
None); without it, every table loads with the top-level ``mapping``. Per-entry variables apply
to a named table's mapping too (``DESTINATION__SENDGRID__TABLES__<TABLE>__MAPPING__EMAIL``).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, Literal, get_args

import duckdb
from dlt.common.configuration import configspec
from dlt.common.configuration.container import Container
from dlt.common.configuration.specs.config_section_context import ConfigSectionContext
from dlt.common.destination import TLoaderFileFormat
from dlt.common.typing import TSecretStrValue
from dlt.destinations.impl.destination.configuration import CustomDestinationClientConfiguration

from sendgrid_destination.account import Account, default_state_path, legacy_state_path
from sendgrid_destination.api.endpoint import (
    DEFAULT_BASE_URL,
    normalize_base_url,
    usable_api_key,
)
from sendgrid_destination.contact_model import (
    MAX_CONTACTS_PER_REQUEST,
    MAX_IMPORT_CONTACTS,
    MAX_REQUEST_BYTES,
)
from sendgrid_destination.dispositions import MODES
from sendgrid_destination.env_mapping import mapping_prefixes, overlay_mapping
from sendgrid_destination.errors import ConfigurationError
from sendgrid_destination.mapping import parse_mapping
from sendgrid_destination.redaction import redact
from sendgrid_destination.source_rows import DEFAULT_BATCH_ROWS

BATCHES_REFUSED = (
    "batch_size must be 0 (the default): the destination plans a whole job file at once, "
    "which is what makes 'last row wins', 'only changes are sent' and 'never an older value' "
    "hold across a load; dlt's RecordBatches (batch_size > 0) would be planned one by one. "
    "Remove batch_size from the settings (read_batch_rows bounds memory instead)."
)

OnInvalidValue = Literal["reject_row", "omit_field"]
# What a table's entry under ``tables`` may set; everything else (the key, the host, limits,
# timeouts, the state file) belongs to the account and the load, not to one table.
TABLE_OPTIONS: Final = (
    "mapping",
    "list_ids",
    "on_invalid_value",
    "date_format",
    "create_missing_custom_fields",
    "fail_on_rejects",
)

BULK_MODES = ("auto", "never", "always")


# The number settings validate() bounds: name -> (bound, exclusive, unit). A zero timeout or
# poll interval made requests fail or loops spin, a zero batch size failed inside pyarrow, and
# each was retried by dlt as if transient: refused here, terminally, naming the setting.
_RANGES: Final[dict[str, tuple[float, bool, str]]] = {
    "max_in_flight": (1, False, ""),
    "max_attempts": (1, False, ""),
    "keep_runs": (1, False, " (the run just made)"),
    "read_batch_rows": (1, False, " (rows per Arrow batch read from a job file)"),
    "connect_timeout": (0, True, " (seconds)"),
    "read_timeout": (0, True, " (seconds)"),
    "job_poll_interval": (0, True, " (seconds)"),
    "max_backoff_seconds": (0, False, " (seconds)"),
    "custom_field_ready_timeout": (0, False, " (seconds)"),
    "job_wait_timeout": (0, False, " (seconds)"),
    "state_upload_every": (1, False, " (requests)"),
    "state_lock_ttl": (0, True, " (seconds)"),
    "state_lock_wait": (0, False, " (seconds)"),
}


def _check_date_format(date_format: str, *, name: str = "date_format", bulk: bool = False) -> None:
    """A format DuckDB's strftime takes (it renders Date fields), tried once on a date; with
    ``bulk``, one that strptime reads back to the same day too, on dates where a two-digit
    year would not (a CSV import's Date cells are that day in ``csv_date_format``)."""
    con, same_day = duckdb.connect(), True
    try:
        sample = "TIMESTAMP '2001-02-03 04:05:06'"
        con.execute(f"SELECT strftime({sample}, ?)", [date_format]).fetchall()
        if bulk:  # dates on both sides of 1969-2068, where a two-digit year reads back wrong
            days = ["TIMESTAMP '1950-01-05 04:05:06'", sample, "TIMESTAMP '2070-06-07 08:09:10'"]
            back = " AND ".join(
                f"try_strptime(strftime({d}, $1), $1)::DATE = {d}::DATE" for d in days
            )
            found = con.execute(f"SELECT coalesce({back}, false)", [date_format]).fetchone()
            same_day = bool(found and found[0])
    except duckdb.Error as exc:
        raise ConfigurationError(
            f"{name} {date_format!r} is not a strftime format DuckDB can use "
            f'({str(exc).splitlines()[0]}): e.g. "%Y-%m-%d" or "%Y-%m-%dT%H:%M:%SZ".'
        ) from None
    finally:
        con.close()
    if bulk and not same_day:
        raise ConfigurationError(
            f"{name} {date_format!r} does not name the day (year, month and day) in a way that "
            "can be read back, which CSV imports need (their Date cells are written in "
            'csv_date_format): use a format such as "%Y-%m-%d", or set bulk = "never".'
        )


def is_remote(state_path: str | None) -> bool:
    """A URL with a scheme (``s3://``, ``gs://``, ``file://``…), not a local path."""
    return bool(state_path) and "://" in str(state_path)


@configspec
class SendGridConfiguration(CustomDestinationClientConfiguration):
    """All settings; see the README's configuration reference for each one."""

    api_key: TSecretStrValue | None = None
    base_url: str = DEFAULT_BASE_URL
    on_behalf_of: str | None = None
    mapping: dict[str, Any] | None = None
    # Per table: its own mapping and options (TABLE_OPTIONS); tables not named are skipped.
    tables: dict[str, Any] | None = None
    # A value that fails its field's check: "reject_row" refuses the whole contact,
    # "omit_field" leaves that field out and sends the rest (identifiers always reject).
    on_invalid_value: str = "reject_row"
    list_ids: list[str] | None = None
    max_request_bytes: int = MAX_REQUEST_BYTES
    max_contacts_per_request: int = MAX_CONTACTS_PER_REQUEST
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    max_attempts: int = 8
    max_backoff_seconds: float = 60.0
    max_in_flight: int = 2
    create_missing_custom_fields: bool = False
    custom_field_ready_timeout: float = 120.0
    date_format: str = "%Y-%m-%dT%H:%M:%SZ"
    state_path: str | None = None  # a local path, or an fsspec URL (remote_state)
    # Remote state only: upload after every N accepted requests; the lock's time to live
    # (renewed while the run lives); how long to wait for another worker's lock.
    state_upload_every: int = 20
    state_lock_ttl: float = 300.0
    state_lock_wait: float = 0.0
    job_wait_timeout: float = 600.0
    job_poll_interval: float = 3.0
    read_batch_rows: int = DEFAULT_BATCH_ROWS
    # Fail the run (after the good rows are sent) when more rows than this were refused:
    # a count (0: any), or a fraction of the rows read when below 1. None: never.
    fail_on_rejects: float | None = None
    # A mapped column that stopped arriving (empty in a whole load that used to fill it)
    # stops its table, unless this is true (then it is a note in the summary).
    allow_missing_columns: bool = False
    # A row leaving out an identifier its contact has in SendGrid is completed from the state
    # (SendGrid refuses such an update); false: the row is refused, naming the identifier.
    fill_missing_identifiers: bool = True
    # Copy the state file to <state>.bak after each run that completed (restore-state).
    state_backup: bool = True
    # Rejects (and per-file counters) are kept for each table's latest runs only.
    keep_runs: int = 30
    # Lists, removal and deletion (README "Lists, removal and mirror mode"; ``deletions``).
    lists: list[str] | None = None  # list names every synced contact is added to
    create_missing_lists: bool = False
    list_column: str | None = None  # a column of list names per row
    mode: str = "upsert"  # upsert, membership or mirror (``dispositions``)
    max_delete_fraction: float = 0.1
    max_deletes: int | None = None
    force_deletes: bool = False
    # A dry run: read calls only; the state file is left as it was (``dry_run``).
    plan: bool = False
    # 0, always: dlt hands over whole job files, planned at once (see validate()).
    batch_size: int = 0
    loader_file_format: TLoaderFileFormat = "parquet"
    # New contacts go by CSV import (bulk_import.py) when a load has more than bulk_threshold
    # of them ("auto"), always ("always") or never ("never"); one file per
    # bulk_max_contacts_per_file contacts (SendGrid takes up to 1,000,000).
    bulk: str = "auto"
    bulk_threshold: int = 200_000
    bulk_max_contacts_per_file: int = MAX_IMPORT_CONTACTS
    # Date cells of CSV imports: SendGrid documents only M/D/YYYY forms for CSV files, and says
    # a Date column in another format fails silently (the upserts' JSON takes ISO-8601).
    csv_date_format: str = "%m/%d/%Y"

    def on_resolved(self) -> None:
        """dlt's hook after resolution: nested mapping variables take effect here."""
        name, pipeline = self.destination_name or "sendgrid", _pipeline_name()
        self.mapping = overlay_mapping(self.mapping, mapping_prefixes(name, pipeline))
        if isinstance(self.tables, Mapping):
            self.tables = {
                table: _overlay_table(entry, mapping_prefixes(f"{name}__TABLES__{table}", pipeline))
                for table, entry in self.tables.items()
            }

    def validate(self) -> None:
        """Checks that need no data and no network; raise ConfigurationError naming the fix."""
        if not self.api_key:
            raise ConfigurationError(
                "No SendGrid API key: set DESTINATION__SENDGRID__API_KEY or api_key under "
                "[destination.sendgrid] in .dlt/secrets.toml."
            )
        if not usable_api_key(self.api_key):  # before the load opens (or creates) the state
            raise ConfigurationError(
                "The SendGrid API key is empty or malformed (blanks or control characters in "
                "it): set DESTINATION__SENDGRID__API_KEY or api_key under "
                "[destination.sendgrid] in .dlt/secrets.toml."
            )
        if not 0 < self.max_contacts_per_request <= MAX_CONTACTS_PER_REQUEST:
            raise ConfigurationError(
                f"max_contacts_per_request must be between 1 and {MAX_CONTACTS_PER_REQUEST}."
            )
        if not 0 < self.max_request_bytes <= MAX_REQUEST_BYTES:
            raise ConfigurationError(
                f"max_request_bytes must be between 1 and {MAX_REQUEST_BYTES} (SendGrid's cap)."
            )
        self._validate_ranges()
        if self.batch_size != 0:
            raise ConfigurationError(BATCHES_REFUSED)
        try:
            normalize_base_url(self.base_url)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        if self.tables is not None and not isinstance(self.tables, Mapping):
            raise ConfigurationError(
                "tables must be a table of table name = its settings, such as "
                '[destination.sendgrid.tables.customers] with a mapping, or {"customers": '
                '{"mapping": {"email": "email"}}} in DESTINATION__SENDGRID__TABLES.'
            )
        if not self.mapping and not self.tables:
            raise ConfigurationError(
                "No mapping configured: set [destination.sendgrid.mapping] in .dlt/config.toml or "
                'the sync file (for example email = "email"), or pass mapping={...} to sendgrid(); '
                "or give each table its own under [destination.sendgrid.tables.<table>.mapping]."
            )
        # Its field names and identifiers need no data: before any extract. With ``tables``
        # it is only a default, and a table's own mistakes are settled per table.
        if self.mapping and not self.tables:
            parse_mapping(self.mapping)
        check_removal_settings(self)
        self._validate_bulk()
        self.validate_table_options()

    @classmethod
    def setting_names(cls) -> tuple[str, ...]:
        """The settings this spec declares itself, in order (not the fields dlt gives every
        destination's spec, nor ``loader_file_format``, which is fixed)."""
        own = inspect.get_annotations(cls)
        return tuple(n for n in own if not n.startswith("_") and n != "loader_file_format")

    def _validate_ranges(self) -> None:
        """Every number setting within its range (``_RANGES``), a number and not a boolean."""
        for name, (least, above, unit) in _RANGES.items():
            value = getattr(self, name)
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            if ok and (value > least if above else value >= least):
                continue
            bound = f"above {least:g}" if above else f"at least {least:g}"
            raise ConfigurationError(f"{name} must be a number {bound}{unit}, not {value!r}.")

    def validate_table_options(self) -> None:
        """The options a table may override (``TABLE_OPTIONS``) have usable values."""
        if self.fail_on_rejects is not None and (
            isinstance(self.fail_on_rejects, bool)
            or not isinstance(self.fail_on_rejects, int | float)
            or self.fail_on_rejects < 0
        ):
            raise ConfigurationError(
                "fail_on_rejects must be a count of rows (0 fails on any reject) or a fraction "
                "of the rows read between 0 and 1, e.g. 0.05."
            )
        if self.on_invalid_value not in get_args(OnInvalidValue):
            raise ConfigurationError(
                f"on_invalid_value must be one of {', '.join(get_args(OnInvalidValue))}, got "
                f"{self.on_invalid_value!r}: reject_row refuses a contact with any invalid "
                "value, omit_field leaves an invalid non-identifier field out and sends the rest."
            )
        if self.list_ids is not None and not (
            isinstance(self.list_ids, list) and all(isinstance(i, str) for i in self.list_ids)
        ):
            raise ConfigurationError('list_ids must be a list of list IDs, e.g. ["<uuid>"].')
        if not isinstance(self.date_format, str) or not self.date_format:
            raise ConfigurationError('date_format must be a strftime format, e.g. "%Y-%m-%d".')
        _check_date_format(self.date_format, bulk=self.bulk != "never")
        if not isinstance(self.create_missing_custom_fields, bool):
            raise ConfigurationError("create_missing_custom_fields must be true or false.")

    def for_table(self, table: str) -> SendGridConfiguration | None:
        """The configuration ``table`` loads with, or None when it has no mapping (``tables``
        is set and does not name it): the top-level settings with the table's entry on top.
        Raises ConfigurationError (naming no table: the caller does) for a malformed entry."""
        if not self.tables:
            return copy.copy(self)
        entry = self.tables.get(table)
        if entry is None:
            return None
        if not isinstance(entry, Mapping):
            raise ConfigurationError(
                f"tables.{table} must be a table of settings ({', '.join(TABLE_OPTIONS)}), "
                f"got {type(entry).__name__}."
            )
        unknown = sorted(str(k) for k in entry if k not in TABLE_OPTIONS)
        if unknown:
            raise ConfigurationError(
                f"tables.{table} has unknown setting(s) {', '.join(unknown)}: a table may set "
                f"{', '.join(TABLE_OPTIONS)}; the others apply to every table, at the top level "
                "of [destination.sendgrid]."
            )
        settings = copy.copy(self)
        for option, value in entry.items():
            setattr(settings, option, value)
        settings.tables = None
        settings.validate_table_options()
        return settings

    def maps(self, table: str) -> bool:
        """Whether ``table`` is to be loaded: ``tables`` is not set, or names it."""
        return not self.tables or not isinstance(self.tables, Mapping) or table in self.tables

    def _validate_bulk(self) -> None:
        if self.bulk not in BULK_MODES:
            raise ConfigurationError(
                f"bulk must be one of {', '.join(repr(m) for m in BULK_MODES)}, not {self.bulk!r}."
            )
        if self.bulk_threshold < 0:
            raise ConfigurationError("bulk_threshold must be a number of new contacts (0 or more).")
        if not isinstance(self.csv_date_format, str) or not self.csv_date_format:
            raise ConfigurationError('csv_date_format must be a strftime format, e.g. "%m/%d/%Y".')
        _check_date_format(self.csv_date_format, name="csv_date_format")
        if not 0 < self.bulk_max_contacts_per_file <= MAX_IMPORT_CONTACTS:
            raise ConfigurationError(
                f"bulk_max_contacts_per_file must be between 1 and {MAX_IMPORT_CONTACTS:,} "
                "(SendGrid's limit per import file)."
            )

    @property
    def account(self) -> Account:
        """The account (host and subuser) this configuration points at; not the key."""
        return Account.of(self.base_url, self.on_behalf_of)

    def resolved_state_path(self) -> Path:
        """The state file: ``state_path`` if set, else one file per account (host and
        subuser, not the key: rotating it must not start an empty state) under
        ``$XDG_STATE_HOME/sendgrid-destination`` or ``~/.local/state/sendgrid-destination``."""
        if self.state_path:
            return Path(os.path.expanduser(self.state_path))
        return default_state_path(self.account)

    def state_location(self) -> str:
        """The state as ``--state`` names it: a remote state's URL, else its local file."""
        if is_remote(self.state_path):
            return str(self.state_path)
        return str(self.resolved_state_path())

    def legacy_state_path(self) -> Path | None:
        """Where earlier builds of this package kept the default state file (its name had a
        digest of the key), when no ``state_path`` is set."""
        if self.state_path or not self.api_key:
            return None
        return legacy_state_path(self.base_url, self.on_behalf_of, str(self.api_key))

    def __repr__(self) -> str:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["api_key"] = "***" if self.api_key else None
        fields["base_url"] = redact(str(self.base_url))  # a password in it stays out
        fields.pop("destination_callable", None)
        return f"SendGridConfiguration({fields})"


def _overlay_table(entry: Any, prefixes: list[str]) -> Any:
    """A table's entry with the per-entry variables of its mapping applied (see env_mapping)."""
    if not isinstance(entry, Mapping):
        return entry  # refused, naming the table, when the table is loaded
    mapping = overlay_mapping(entry.get("mapping"), prefixes)
    return {**entry, "mapping": mapping} if mapping is not None else dict(entry)


def check_removal_settings(config: SendGridConfiguration) -> None:
    """The list, mode and deletion settings make sense together."""
    if config.mode not in MODES:
        raise ConfigurationError(f"mode must be one of {', '.join(MODES)} (got {config.mode!r}).")
    if not 0 <= config.max_delete_fraction <= 1:
        raise ConfigurationError(
            "max_delete_fraction must be a fraction between 0 and 1 of the contacts a table "
            "holds, e.g. 0.1."
        )
    if config.max_deletes is not None and config.max_deletes < 0:
        raise ConfigurationError("max_deletes must be a count of contacts (0 or more).")
    if config.list_column is not None and not config.list_column:
        raise ConfigurationError("list_column must name a source column.")
    if any(not isinstance(name, str) or not name.strip() for name in config.lists or []):
        raise ConfigurationError("lists must hold list names (non-empty text).")


def _pipeline_name() -> str | None:
    """The pipeline whose configuration dlt is resolving, if any (its scoped variables win)."""
    try:
        return Container()[ConfigSectionContext].pipeline_name
    except Exception:  # no section context outside a pipeline (the CLI, direct calls)
        return None


ENV_PREFIX: Final = "DESTINATION__SENDGRID__"


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """The ``DESTINATION__SENDGRID__*`` variables that name no setting (dlt ignores them, so a
    typo would go unnoticed), each with the closest setting when one is close. Names only."""
    known = [f.name.upper() for f in dataclasses.fields(SendGridConfiguration)]
    found = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].split("__")
        if parts[0] == "TABLES" and len(parts) > 1:
            # Of a table's entry only its mapping is read from variables (``env_mapping``).
            if len(parts) < 4 or parts[2] != "MAPPING":
                found.append(
                    f"{name} (a table's settings other than its MAPPING__<field> entries "
                    f"are read from {ENV_PREFIX}TABLES as JSON)"
                )
            continue
        if parts[0] in known:
            continue
        close = difflib.get_close_matches(parts[0], known, n=1)
        found.append(name + (f" (did you mean {ENV_PREFIX}{close[0]}?)" if close else ""))
    return found
