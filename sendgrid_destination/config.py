"""Settings of the SendGrid destination, resolved the dlt way.

Every field comes from an argument of ``sendgrid(...)``, ``[destination.sendgrid]`` in
``.dlt/config.toml`` (``api_key`` only from ``.dlt/secrets.toml``), or an environment variable
such as ``DESTINATION__SENDGRID__API_KEY``. The defaults here must equal those of the factory's
``__init__``: dlt drops arguments equal to the factory defaults as "not explicit", and falls back
to the spec's value (docs/dlt-behaviour.md, "Configuration"). The mapping, a dict that dlt
resolves as one value, also takes single entries from nested environment variables
(``DESTINATION__SENDGRID__MAPPING__EMAIL``; see ``env_mapping``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from dlt.common.configuration import configspec
from dlt.common.configuration.container import Container
from dlt.common.configuration.specs.config_section_context import ConfigSectionContext
from dlt.common.destination import TLoaderFileFormat
from dlt.common.typing import TSecretStrValue
from dlt.destinations.impl.destination.configuration import CustomDestinationClientConfiguration

from sendgrid_destination.client import DEFAULT_BASE_URL
from sendgrid_destination.env_mapping import mapping_prefixes, overlay_mapping
from sendgrid_destination.errors import ConfigurationError
from sendgrid_destination.fields import MAX_CONTACTS_PER_REQUEST, MAX_REQUEST_BYTES

DEFAULT_STATE_DIR = "~/.local/state/sendgrid-destination"


@configspec
class SendGridConfiguration(CustomDestinationClientConfiguration):
    """All settings; see the README's configuration reference for each one."""

    api_key: TSecretStrValue | None = None
    base_url: str = DEFAULT_BASE_URL
    on_behalf_of: str | None = None
    mapping: dict[str, Any] | None = None
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
    state_path: str | None = None
    job_wait_timeout: float = 600.0
    job_poll_interval: float = 3.0
    read_batch_rows: int = 100_000
    # 0: dlt hands over the whole job file and the destination streams it itself, so bodies
    # are packed across the whole file (fewest requests); N > 0: N-row RecordBatches.
    batch_size: int = 0
    loader_file_format: TLoaderFileFormat = "parquet"

    def on_resolved(self) -> None:
        """dlt's hook after resolution: nested mapping variables take effect here."""
        prefixes = mapping_prefixes(self.destination_name or "sendgrid", _pipeline_name())
        self.mapping = overlay_mapping(self.mapping, prefixes)

    def validate(self) -> None:
        """Checks that need no data and no network; raise ConfigurationError naming the fix."""
        if not self.api_key:
            raise ConfigurationError(
                "No SendGrid API key: set DESTINATION__SENDGRID__API_KEY or api_key under "
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
        if self.max_in_flight < 1:
            raise ConfigurationError("max_in_flight must be at least 1.")

    def account_fingerprint(self) -> str:
        """Identifies the account (host, subuser, key) without revealing the key."""
        key_digest = hashlib.sha256(str(self.api_key).encode()).hexdigest()[:12]
        material = json.dumps([self.base_url.rstrip("/"), self.on_behalf_of, key_digest])
        return hashlib.sha256(material.encode()).hexdigest()[:16]

    def resolved_state_path(self) -> Path:
        """The state file: ``state_path`` if set, else one file per account under the
        default directory, which is outside dlt's pipeline directory on purpose: the Airflow
        and Dagster helpers wipe that directory before every run."""
        if self.state_path:
            return Path(os.path.expanduser(self.state_path))
        base = os.environ.get("XDG_STATE_HOME")
        root = Path(base) / "sendgrid-destination" if base else Path(DEFAULT_STATE_DIR).expanduser()
        return root / f"state-{self.account_fingerprint()}.duckdb"

    def __repr__(self) -> str:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fields["api_key"] = "***" if self.api_key else None
        fields.pop("destination_callable", None)
        return f"SendGridConfiguration({fields})"


def _pipeline_name() -> str | None:
    """The pipeline whose configuration dlt is resolving, if any (its scoped variables win)."""
    try:
        return Container()[ConfigSectionContext].pipeline_name
    except Exception:  # no section context outside a pipeline (the CLI, direct calls)
        return None
