"""The sync the crash test kills and reruns, shared by the test and its worker process."""

from __future__ import annotations

from typing import Any

import dlt
import pyarrow as pa
from dlt.common.pipeline import LoadInfo

from sendgrid_destination import sendgrid

API_KEY = "SG.test-crash-key"
PER_REQUEST = 200
PER_FILE = 500
# The bulk variant: every new contact goes by CSV import, in files of PER_FILE contacts.
BULK = {"bulk": "always", "bulk_max_contacts_per_file": PER_FILE}
# The mirror variant: contacts whose rows left are deleted (up to half the table).
MIRROR = {"mode": "mirror", "max_delete_fraction": 0.5}


def sync(
    data: pa.Table,
    base_url: str,
    state_path: str,
    pipelines_dir: str,
    in_flight: int = 1,
    **settings: Any,
) -> LoadInfo:
    pipeline = dlt.pipeline(
        "crash",
        destination=sendgrid(
            api_key=API_KEY,
            base_url=base_url,
            mapping={"email": "email", "first_name": "first_name"},
            state_path=state_path,
            max_contacts_per_request=PER_REQUEST,
            max_in_flight=in_flight,
            read_batch_rows=500,
            job_poll_interval=0.02,
            **settings,
        ),
        pipelines_dir=pipelines_dir,
    )
    if pipeline.has_pending_data:
        pipeline.load()
    return pipeline.run(data, table_name="contacts")
