"""Where the API lives: base URL constants, and URLs re-rooted on the base URL's host.

No dependencies beyond the standard library, so settings code can import it without loading
the transport.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urljoin, urlsplit, urlunsplit

DEFAULT_BASE_URL: Final = "https://api.sendgrid.com"
EU_BASE_URL: Final = "https://api.eu.sendgrid.com"


def on_base_host(base_url: str, url: str) -> str:
    """``url`` (absolute or relative) re-rooted on ``base_url``'s scheme and host: the key is
    never sent anywhere else, whatever host a response's link names."""
    absolute = urlsplit(urljoin(base_url + "/", url))
    base = urlsplit(base_url)
    return urlunsplit((base.scheme, base.netloc, absolute.path, absolute.query, ""))
