"""A sync file: one TOML file declares one sync (``sendgrid-destination run SYNC.toml``).

```toml
name = "customers_to_sendgrid"          # the dlt pipeline name
[source]
kind = "duckdb"                         # sql | duckdb | parquet
path = "warehouse.duckdb"               # duckdb: the file; parquet: a file, directory or glob
table = "customers"                     # or: query = "SELECT ..." (sql and duckdb)
cursor = "updated_at"                   # optional: incremental loading on this column
[destination.sendgrid]                  # exactly the keys of .dlt/config.toml
mapping = { email = "email", first_name = "given_name" }
```

``load_sync_file(path)`` parses and checks the file without touching anything: every mistake
is a ``SyncFileError`` naming the key and what is allowed. ``[destination.sendgrid]`` is not
interpreted here: ``settings_provider`` turns it into a dlt config provider, placed after the
environment variables and before ``.dlt/secrets.toml`` and ``.dlt/config.toml``, so environment
variables still override the file and secrets (``api_key``) are refused in it, as dlt refuses
them in ``config.toml``.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

from sendgrid_destination.config import SendGridConfiguration
from sendgrid_destination.errors import SyncFileError

SourceKind = Literal["sql", "duckdb", "parquet"]
KINDS: tuple[SourceKind, ...] = ("sql", "duckdb", "parquet")
TOP_KEYS = ("name", "source", "destination")
SOURCE_KEYS = ("kind", "url", "path", "table", "query", "cursor", "resource")
# Which source keys each kind takes (besides kind, cursor and resource).
KIND_KEYS: dict[SourceKind, tuple[str, ...]] = {
    "sql": ("url", "table", "query"),
    "duckdb": ("path", "table", "query"),
    "parquet": ("path",),
}
# Settings that are secrets (dlt refuses them in config files) or belong to the factory.
SECRET_KEYS = ("api_key",)
NOT_SETTINGS = ("destination_callable", "destination_name", "environment", "credentials")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_RESOURCE = "contacts"


@dataclass(frozen=True)
class SourceSpec:
    kind: SourceKind
    url: str | None = None
    path: str | None = None
    table: str | None = None
    query: str | None = None
    cursor: str | None = None
    resource: str = DEFAULT_RESOURCE  # the dlt table name: the stream in the state


@dataclass(frozen=True)
class SyncFile:
    path: Path
    name: str
    source: SourceSpec
    settings: dict[str, Any]  # [destination.sendgrid], as written

    @property
    def state_path(self) -> str | None:
        value = self.settings.get("state_path")
        return None if value is None else str(value)


def load_sync_file(path: Path) -> SyncFile:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SyncFileError(f"No sync file at {path}.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SyncFileError(f"Cannot read the sync file {path}: {exc}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise SyncFileError(f"{path} is not valid TOML: {exc}.") from None
    where = str(path)
    _only(raw, TOP_KEYS, where, "")
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise SyncFileError(
            f"{where}: `name` must be the dlt pipeline name: letters, digits and underscores, "
            'not starting with a digit (e.g. name = "customers_to_sendgrid").'
        )
    return SyncFile(path, name, _source(raw.get("source"), where), _settings(raw, where))


def _source(raw: object, where: str) -> SourceSpec:
    if not isinstance(raw, dict):
        raise SyncFileError(f"{where}: a [source] table is required, with kind = {_one_of(KINDS)}.")
    _only(raw, SOURCE_KEYS, where, "source.")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise SyncFileError(f"{where}: source.kind must be {_one_of(KINDS)}, not {kind!r}.")
    kind = cast(SourceKind, kind)
    allowed = KIND_KEYS[kind]
    for key in ("url", "path", "table", "query"):
        if key in raw and key not in allowed:
            raise SyncFileError(
                f"{where}: source.{key} does not apply to kind = {kind!r}; it takes "
                f"{', '.join(allowed)} (and cursor, resource)."
            )
    for key, value in raw.items():
        if not isinstance(value, str) or not value.strip():
            raise SyncFileError(f"{where}: source.{key} must be a non-empty string.")
    if kind in ("duckdb", "parquet") and "path" not in raw:
        raise SyncFileError(f"{where}: source.path is required for kind = {kind!r}.")
    if kind in ("sql", "duckdb") and ("table" in raw) == ("query" in raw):
        raise SyncFileError(
            f"{where}: give exactly one of source.table and source.query for kind = {kind!r}."
        )
    fields = {k: v for k, v in raw.items() if k != "kind"}
    fields.setdefault("resource", raw.get("table", DEFAULT_RESOURCE).split(".")[-1])
    if not _NAME.match(fields["resource"]):
        raise SyncFileError(
            f"{where}: source.resource (the table name in dlt and in the state) must be "
            "letters, digits and underscores."
        )
    return SourceSpec(kind=kind, **fields)


def _settings(raw: dict[str, Any], where: str) -> dict[str, Any]:
    destination = raw.get("destination", {})
    if not isinstance(destination, dict):
        raise SyncFileError(f"{where}: `destination` must be a table: [destination.sendgrid].")
    _only(destination, ("sendgrid",), where, "destination.")
    settings = destination.get("sendgrid", {})
    if not isinstance(settings, dict):
        raise SyncFileError(f"{where}: [destination.sendgrid] must be a table of settings.")
    for key in settings:
        if key in SECRET_KEYS:
            raise SyncFileError(
                f"{where}: destination.sendgrid.{key} is a secret and does not belong in a sync "
                "file: set DESTINATION__SENDGRID__API_KEY, or api_key under "
                "[destination.sendgrid] in .dlt/secrets.toml."
            )
    _only(settings, setting_names(), where, "destination.sendgrid.")
    return dict(settings)


def setting_names() -> tuple[str, ...]:
    """The keys ``[destination.sendgrid]`` takes in a sync file: the settings the spec itself
    declares (not dlt's own fields of every destination), but the secrets."""
    names = SendGridConfiguration.setting_names()
    return tuple(n for n in names if n not in NOT_SETTINGS and n not in SECRET_KEYS)


def _only(table: dict[str, Any], allowed: tuple[str, ...], where: str, prefix: str) -> None:
    unknown = [k for k in table if k not in allowed]
    if unknown:
        close = difflib.get_close_matches(unknown[0], allowed, n=1)
        hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
        raise SyncFileError(
            f"{where}: unknown key {prefix}{unknown[0]}{hint}; allowed here: "
            f"{', '.join(prefix + a for a in allowed)}."
        )


def _one_of(values: tuple[str, ...]) -> str:
    return " | ".join(f'"{v}"' for v in values)


@contextmanager
def settings_provider(sync: SyncFile) -> Iterator[None]:
    """``[destination.sendgrid]`` of the file as a dlt config provider while the block runs:
    after the environment variables (they still win), before the TOML files."""
    from dlt.common.configuration.container import Container
    from dlt.common.configuration.providers import CustomLoaderDocProvider, EnvironProvider
    from dlt.common.configuration.specs.pluggable_run_context import PluggableRunContext

    document = {"destination": {"sendgrid": sync.settings}}
    provider = CustomLoaderDocProvider(
        f"sync file {sync.path.name}", lambda: document, supports_secrets=False
    )
    providers = Container()[PluggableRunContext].providers.providers
    after_env = [i for i, p in enumerate(providers) if isinstance(p, EnvironProvider)]
    providers.insert(after_env[0] + 1 if after_env else 0, provider)
    try:
        yield
    finally:
        providers.remove(provider)
