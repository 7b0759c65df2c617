"""What SendGrid holds now for the contacts whose rows were refused for an identifier change.

The state keeps every identifier SendGrid accepted for a contact (``identities``), and a row
that gives one of them another value is refused before sending (``identifiers``): an upsert
cannot change an identifier. The remedy is to change it in SendGrid (``DELETE
/v3/marketing/contacts/{id}/identifiers``), which the state cannot see: so the row was refused
on every later run.

``refresh_refused_identities(client, store, stream, run_id)``, before a table's load is
planned: the contacts whose rows the table's last run refused that way are looked up by every
identifier the state holds for them (one search per identifier type and 100 values), and
their ``identities`` become what SendGrid holds now:

* found, as one contact, by any of them: its identifiers as SendGrid answers them (an email
  removed there is no longer the contact's; the row then adds its own);
* found by none, on two runs in a row (its search may lag behind SendGrid's writes, as
  removals assume too): SendGrid no longer holds the contact (deleted there), so the state
  forgets its identifiers and the row is sent as a new contact; after one miss the row is
  refused again;
* found as several contacts: left as the state knows it (the row is refused again).

Only runs after such refusals, so a load without them makes no request. Counts, never values,
are logged.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sendgrid_destination.api.client import SendGridClient
from sendgrid_destination.contact_ids import find_contacts
from sendgrid_destination.errors import StoppedError
from sendgrid_destination.state import StateStore

logger = logging.getLogger(__name__)


def refresh_refused_identities(
    client: SendGridClient,
    store: StateStore,
    stream: str,
    run_id: str,
    stopped: Callable[[], StoppedError | None] = lambda: None,
) -> int:
    """Refresh (module doc); returns how many contacts' identifiers changed."""
    held = store.identities_refused_for_change(stream, run_id)
    if not held:
        if store.identity_misses(stream):  # a miss counts only on consecutive runs
            store.set_identity_misses(stream, set())
        return 0
    searched = [f"{kind}:{value}" for ids in held.values() for kind, value in ids.items()]
    found = find_contacts(client, searched, stopped)
    missed_before, missed = store.identity_misses(stream), set()
    now: dict[str, dict[str, str] | None] = {}
    for key, ids in held.items():
        matched = [found[f"{k}:{v}"] for k, v in ids.items() if f"{k}:{v}" in found]
        if len({contact.id for contact in matched}) > 1:
            continue  # several contacts: the state's view stands
        if not matched:  # a search may lag: gone only when missed on two runs in a row
            if key in missed_before:
                now[key] = None
            else:
                missed.add(key)
            continue
        current = dict(matched[0].identifiers)
        if current != ids:
            now[key] = current
    store.set_identity_misses(stream, missed)
    store.set_identities(now)
    if now:
        logger.info(
            "SendGrid: %d contact(s) refused for an identifier change last run hold other "
            "identifiers in SendGrid now; their rows are checked against those",
            len(now),
        )
    return len(now)
