"""Which SendGrid account a state file belongs to, known without the API key.

A state file says what was sent to one account; used against another it would call that
account's contacts unchanged and send nothing. The account is its API host and subuser
(``Account``): the default state file is named after them, and the file records them (with a
short digest of the key, never the key). Opening a state file for another host or subuser is
refused before any request, naming both. The key is deliberately not part of the identity,
since rotating it is routine and must not resend every contact; when it changed, the state's
most recently accepted contacts are looked up in the account (one search request): if none of
them is there, the file belongs to another account on the same host and the run is refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sendgrid_destination.api.endpoint import normalize_base_url
from sendgrid_destination.errors import ConfigurationError

logger = logging.getLogger("sendgrid_destination.account")


@dataclass(frozen=True)
class Account:
    base_url: str  # scheme://host[:port], lower-case, no path, no credentials
    on_behalf_of: str | None = None

    @classmethod
    def of(cls, base_url: str, on_behalf_of: str | None) -> Account:
        try:
            origin = normalize_base_url(base_url)
        except ValueError:  # refused by the settings check before any run; name it anyway
            parts = urlsplit(base_url.strip())
            origin = f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}"
        return cls(origin, on_behalf_of or None)

    def fingerprint(self) -> str:
        """A short stable name for the default state file."""
        material = json.dumps([self.base_url, self.on_behalf_of])
        return hashlib.sha256(material.encode()).hexdigest()[:16]

    def describe(self) -> str:
        subuser = f", subuser {self.on_behalf_of!r}" if self.on_behalf_of else ""
        return f"{self.base_url}{subuser}"


def key_digest(api_key: str) -> str:
    """A short digest that tells keys apart without revealing one (64 bits of SHA-256)."""
    return hashlib.sha256(api_key.strip().encode()).hexdigest()[:16]


def default_state_path(account: Account) -> Path:
    """``$XDG_STATE_HOME/sendgrid-destination/state-<account>.duckdb`` (or under
    ``~/.local/state``): outside dlt's pipeline directory on purpose, since the Airflow and
    Dagster helpers wipe that directory before every run."""
    base = os.environ.get("XDG_STATE_HOME")
    root = Path(base) if base else Path("~/.local/state").expanduser()
    return root / "sendgrid-destination" / f"state-{account.fingerprint()}.duckdb"


def legacy_state_path(base_url: str, on_behalf_of: str | None, api_key: str) -> Path:
    """The default state file of earlier builds of this package, whose name depended on the key."""
    digest = hashlib.sha256(api_key.encode()).hexdigest()[:12]
    material = json.dumps([base_url.rstrip("/"), on_behalf_of, digest])
    name = f"state-{hashlib.sha256(material.encode()).hexdigest()[:16]}.duckdb"
    return default_state_path(Account("", None)).with_name(name)


def adopt_legacy_state(path: Path, legacy: Path) -> None:
    """Give a state file of an earlier version its new default name (with its write-ahead
    log), so upgrading resends nothing."""
    if path.exists() or not legacy.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    for suffix in ("", ".wal"):
        old = legacy.with_name(legacy.name + suffix)
        if old.exists():
            old.rename(path.with_name(path.name + suffix))
    logger.info("state file renamed to %s (its name no longer depends on the API key)", path)


def check_same_account(recorded: dict[str, str], account: Account, state_path: Path) -> None:
    """Refuse a state file recorded for another host or subuser."""
    if not recorded.get("base_url"):
        return  # a file from before schema 7, or a new one: it is adopted
    theirs = Account(recorded["base_url"], recorded.get("on_behalf_of") or None)
    if theirs != account:
        raise ConfigurationError(
            f"The state file {state_path} belongs to the SendGrid account at "
            f"{theirs.describe()}, but this run is configured for {account.describe()}. "
            "Using it would skip contacts that this account has never received. Point "
            "state_path at another file for this account (or leave it unset: each account "
            "gets its own default file)."
        )


def recorded_for(account: Account, api_key: str) -> dict[str, str]:
    return {
        "base_url": account.base_url,
        "on_behalf_of": account.on_behalf_of or "",
        "key_digest": key_digest(api_key),
    }
