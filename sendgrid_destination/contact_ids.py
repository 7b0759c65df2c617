"""Contact keys to SendGrid contact IDs, and IDs into URLs that SendGrid accepts.

Deleting a contact or removing it from a list takes its ID, which an upsert never returns:
``find_contacts(client, keys)`` looks keys (``"<identifier>:<value>"``, as the state tracks
contacts) up with ``POST /v3/marketing/contacts/search/identifiers/{identifier}``, 100 values
a request (the spec's limit), one identifier type at a time. A key no contact holds is left
out: the contact is gone already. ``url_chunks`` cuts IDs into runs whose URL stays within
``URL_BUDGET`` characters, since the IDs of a DELETE travel in its query string.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from typing import Final
from urllib.parse import quote

from sendgrid_destination.api.client import MAX_SEARCH_VALUES, SendGridClient
from sendgrid_destination.api.models import FoundContact
from sendgrid_destination.errors import StoppedError

# SendGrid answers 414 to URLs beyond about 8 KB (a production integration caps them at
# 8,150 characters; the emulator refuses a path and query over 8,192 bytes). 8,000 leaves
# room for the request line around the URL: about 215 UUIDs a request.
URL_BUDGET: Final = 8_000


def find_contacts(
    client: SendGridClient,
    keys: Sequence[str],
    stopped: Callable[[], StoppedError | None] = lambda: None,
) -> dict[str, FoundContact]:
    """The contacts SendGrid holds for these keys, by key (absent: not found)."""
    by_type: defaultdict[str, list[str]] = defaultdict(list)
    for key in dict.fromkeys(keys):
        kind, _, value = key.partition(":")
        by_type[kind].append(value)
    found: dict[str, FoundContact] = {}
    for kind, values in sorted(by_type.items()):
        fold = str.lower if kind == "email" else str
        for start in range(0, len(values), MAX_SEARCH_VALUES):
            if (stop := stopped()) is not None:
                raise stop
            chunk = values[start : start + MAX_SEARCH_VALUES]
            matches = client.search_contacts(kind, chunk)
            found.update((f"{kind}:{v}", matches[fold(v)]) for v in chunk if fold(v) in matches)
    return found


def url_chunks(ids: Sequence[str], prefix_length: int) -> Iterator[list[str]]:
    """``ids`` in order, cut so that each run, comma-separated after a URL prefix of
    ``prefix_length`` characters, stays within ``URL_BUDGET`` (an ID alone always fits)."""
    chunk: list[str] = []
    length = prefix_length
    for contact_id in ids:
        size = len(quote(contact_id, safe="")) + (1 if chunk else 0)
        if chunk and length + size > URL_BUDGET:
            yield chunk
            chunk, length, size = [], prefix_length, size - 1
        chunk.append(contact_id)
        length += size
    if chunk:
        yield chunk
