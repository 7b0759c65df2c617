"""The lists every synced contact is added to: ``list_ids`` checked against the account.

SendGrid answers an upsert naming an unknown list with a 400 for the whole request, which no
split of the body can fix: the IDs are checked once, before the first upsert.
"""

from __future__ import annotations

from collections.abc import Sequence

from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.errors import ConfigurationError


def check_list_ids(client: SendGridClient, list_ids: Sequence[str]) -> None:
    if not list_ids:
        return
    known = {lst.id for lst in client.lists()}
    missing = [list_id for list_id in list_ids if list_id not in known]
    if missing:
        raise ConfigurationError(
            f"list_ids not found in this SendGrid account: {', '.join(missing)}. Copy the "
            "IDs from Marketing > Contacts > Lists (the ID is in the list's URL)."
        )
