"""The one redaction: text from outside (SendGrid, a proxy, a URL) made safe to log or raise.

Contract: ``redact(text)`` replaces what can be recognised by its shape as a secret or as
personal data with ``<redacted>``: email-like tokens, API-key-like tokens (``SG.…``), the
credentials and the query string of URLs (pre-signed URLs carry their signature there), and
values in quotes (SendGrid quotes the values it echoes: ``email 'x@y' is not valid``), but
for names the caller says are not values (``keep``: a source's column names).
``redact_url_secrets(text)`` only replaces URL credentials, query strings and key-like
tokens, for text that is about requests (a library's DEBUG line) and must keep its paths.
``safe_url(url)`` is a URL reduced to what may be shown: scheme, host, port and path.

Used on every text that does not come from this package before it reaches a log line, an
exception message or a summary. The raw text stays only where rows are recorded for the user
(the rejects table). Our own reasons (``email: not a valid email address``,
``phone_number_id: not an E.164 number like +14155550100``) pass unchanged, which is why digit
runs are not redacted here: ``api.messages.reason`` does that, and more, for SendGrid's text.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Final
from urllib.parse import urlsplit, urlunsplit

REDACTED: Final = "<redacted>"

_EMAIL_LIKE: Final = re.compile(r"[^\s'\"<>()\[\]{},;:]+@[^\s'\"<>()\[\]{},;:]+")
_KEY_LIKE: Final = re.compile(r"SG\.[\w.\-]+")
# scheme://user:password@host: the part between "//" and "@".
_URL_CREDENTIALS: Final = re.compile(r"(?<=://)[^/\s@]+@")
# A query string, in a URL or in a request line ("GET /path?sig=... HTTP/1.1").
_QUERY: Final = re.compile(r"\?[^\s\"'<>]*")
# A value in quotes: the quote opens after a non-word character and closes before one, so
# the apostrophes of "contact's" and "isn't" open nothing.
_QUOTED: Final = re.compile(
    r"(?<!\w)(?:'[^'\n]*'|\"[^\"\n]*\"|`[^`\n]*`|‘[^’\n]*’|“[^”\n]*”)(?!\w)"
)


def redact(text: str, keep: Collection[str] = ()) -> str:
    """``text`` with secrets and personal data recognisable by their shape replaced. A quoted
    name in ``keep`` (the source's column names: schema, not values) stays as it is."""
    text = _URL_CREDENTIALS.sub(REDACTED + "@", text)

    def quoted(m: re.Match[str]) -> str:
        whole = m.group(0)
        return whole if whole[1:-1] in keep else whole[0] + REDACTED + whole[-1]

    text = _QUOTED.sub(quoted, text)
    text = _EMAIL_LIKE.sub(REDACTED, text)
    text = _KEY_LIKE.sub(REDACTED, text)
    return _QUERY.sub("?" + REDACTED, text)


def redact_url_secrets(text: str) -> str:
    """``text`` with URL credentials, query strings and API-key-like tokens replaced."""
    text = _URL_CREDENTIALS.sub(REDACTED + "@", text)
    return _QUERY.sub("?" + REDACTED, _KEY_LIKE.sub(REDACTED, text))


def safe_url(url: str) -> str:
    """``url`` without credentials, query or fragment: what a message may name of it."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # an unparsable port or host: name nothing of it
        return REDACTED
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
