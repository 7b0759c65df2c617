"""Where the API lives: base URL constants, the one check of a configured ``base_url``, and
URLs re-rooted on its host.

Contract: ``normalize_base_url(url)`` returns ``scheme://host[:port]`` (what every route path,
``/v3/...``, is appended to) or raises ``ValueError`` with a message that names the fix and
never the URL's credentials or query:

* a trailing ``/v3`` is dropped (routes carry it already: ``…/v3`` gave ``/v3/v3/…`` and a 404);
* any other path, a query, a fragment, credentials (``user:pw@``), a scheme other than
  http(s) or a missing host are refused;
* plain ``http`` is refused unless the host is loopback (the emulator): to any other host the
  API key would travel unencrypted.

``usable_api_key(key)`` is the one rule for a key (not empty, printable, no blank inside),
checked by the settings before a load opens anything and by the client before any request.

Standard library only, so settings code can import it without loading the transport.
"""

from __future__ import annotations

import ipaddress
from typing import Final
from urllib.parse import urljoin, urlsplit, urlunsplit

DEFAULT_BASE_URL: Final = "https://api.sendgrid.com"
EU_BASE_URL: Final = "https://api.eu.sendgrid.com"
_EXAMPLES: Final = f"{DEFAULT_BASE_URL} or {EU_BASE_URL}"


def usable_api_key(api_key: object) -> bool:
    # requests echoes an invalid header value in its exception text: such keys never get there.
    key = api_key.strip() if isinstance(api_key, str) else ""
    return bool(key) and key.isprintable() and not any(c.isspace() for c in key)


def normalize_base_url(base_url: str) -> str:
    """``base_url`` as ``scheme://host[:port]``; see the module doc for what is refused."""
    parts = urlsplit(base_url.strip())
    scheme = parts.scheme.lower()
    try:
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number, a bracket left open
        host, port = None, None
    if scheme not in ("http", "https") or not host:
        raise ValueError(f"base_url must be an http(s) URL of the API host, such as {_EXAMPLES}.")
    shown = _origin(scheme, host, port)
    if parts.username is not None or parts.password is not None:
        raise ValueError(
            f"base_url must not contain a user name or password (the API key authenticates "
            f"every request): use {shown}."
        )
    if parts.query or parts.fragment or base_url.strip().endswith(("?", "#")):
        raise ValueError(f"base_url must not contain a query or fragment: use {shown}.")
    if parts.path.rstrip("/") not in ("", "/v3"):
        raise ValueError(
            f"base_url must be the API host without a path, such as {_EXAMPLES} (every route "
            f"already starts with /v3/); got {shown} with path {parts.path!r}."
        )
    if not encrypted_or_local(scheme, host):
        raise ValueError(
            f"base_url {shown} uses plain http to a host that is not loopback: the API key "
            "would travel unencrypted. Use https://; plain http is accepted only for "
            "127.0.0.1, ::1 and localhost (the emulator)."
        )
    return shown


def encrypted_or_local(scheme: str, host: str) -> bool:
    """Whether what is sent to ``scheme://host`` stays private: https, or http to loopback
    (the emulator). The API key and contacts' data go nowhere else."""
    return scheme == "https" or (scheme == "http" and is_loopback(host))


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address, without brackets) is this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def on_base_host(base_url: str, url: str) -> str:
    """``url`` (absolute or relative) re-rooted on ``base_url``'s scheme and host: the key is
    never sent anywhere else, whatever host a response's link names."""
    absolute = urlsplit(urljoin(base_url + "/", url))
    base = urlsplit(base_url)
    return urlunsplit((base.scheme, base.netloc, absolute.path, absolute.query, ""))


def _origin(scheme: str, host: str, port: int | None) -> str:
    netloc = f"[{host}]" if ":" in host else host
    return f"{scheme}://{netloc}" + (f":{port}" if port is not None else "")
