"""Redaction: every log line, error message and answer passes through `redact` on its way out."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

# Anything shaped like a Stripe key or a webhook secret, wherever it appears in text. `*`
# is in the class because Stripe masks keys itself in its messages (`sk_live_*****hort`),
# and a short key masked that way still shows most of its characters.
_SECRET_SHAPES = re.compile(r"\b((?:sk|rk|pk)_(?:test|live)_|whsec_)[A-Za-z0-9+/=_\-*]+")
# Values resolved by any vault in this process, masked even when they have no known shape.
_known_values: set[str] = set()
_longest_first: list[tuple[str, ...]] = [()]  # the same, sorted once per new value


def remember_secret(value: str) -> None:
    """Mask `value` (and each comma-separated part of it) in everything redacted from now on."""
    if value in _known_values:  # the vault resolves its secrets on every delivery
        return
    _known_values.add(value)
    for part in value.split(","):
        if len(part.strip()) >= 8:
            _known_values.add(part.strip())
    # A longer value first, so one that holds a shorter is masked whole. Sorted here, not
    # on every line: redact runs on each log line and trail fact.
    _longest_first[0] = tuple(sorted(_known_values, key=len, reverse=True))


def redact(text: str) -> str:
    """Mask every secret in `text`: known values, and anything shaped like a key or whsec_."""
    for value in _longest_first[0]:
        if value in text:
            text = text.replace(value, "[redacted]")
    return _SECRET_SHAPES.sub(lambda m: m.group(1) + "[redacted]", text)


def redact_url(url: str) -> str:
    """A URL (REDIS_URL, each part of a sentinel:// list) without its password."""
    if ";" in url:
        return ";".join(redact_url(part) for part in url.split(";"))
    parts = urlsplit(url)
    if parts.password:
        port = f":{parts.port}" if parts.port else ""
        netloc = f"{parts.username or ''}:***@{parts.hostname}{port}"
        return urlunsplit(parts._replace(netloc=netloc))
    return url
