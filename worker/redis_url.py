"""REDIS_URL, read once: one Redis (`redis://`, `rediss://`, `unix://`) or Celery's Sentinel form.

    sentinel://[:PASSWORD@]HOST[:PORT];sentinel://[:PASSWORD@]HOST[:PORT]/DB

Each `sentinel://` part names one sentinel (port 26379 when left out); the master set's name
is REDIS_SENTINEL_MASTER. A password in the URL is the Redis password (of the master and
replicas), as Celery reads it; the sentinels' own password is REDIS_SENTINEL_PASSWORD.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from redis.connection import parse_url

SENTINEL_SCHEME = "sentinel://"
SENTINEL_PORT = 26379


@dataclass(frozen=True)
class SentinelTarget:
    """The sentinels to ask for the current master, and how to talk to that master."""

    sentinels: tuple[tuple[str, int], ...]
    db: int
    username: str | None
    password: str | None


def is_sentinel_url(url: str) -> bool:
    return url.startswith(SENTINEL_SCHEME)


def sentinel_target(url: str) -> SentinelTarget:
    """The sentinels of a `sentinel://` URL; ValueError (without the password) when malformed."""
    sentinels: list[tuple[str, int]] = []
    dbs: set[int] = set()
    username = password = None
    for part in url.split(";"):
        if not is_sentinel_url(part):
            raise ValueError("every ';'-separated part must start with sentinel://")
        parts = urlsplit(part)
        try:
            port = parts.port or SENTINEL_PORT
        except ValueError:
            raise ValueError("a sentinel's port is not a number") from None
        if not parts.hostname:
            raise ValueError("a sentinel:// part has no host")
        sentinels.append((parts.hostname, port))
        path = parts.path.strip("/")
        if path:
            if not path.isdigit():
                raise ValueError(f"the database must be a number, got /{path}")
            dbs.add(int(path))
        if parts.password:
            username = unquote(parts.username) if parts.username else None
            password = unquote(parts.password)
    if len(dbs) > 1:
        raise ValueError("the sentinel:// parts name different databases")
    return SentinelTarget(tuple(sentinels), dbs.pop() if dbs else 0, username, password)


def check_redis_url(url: str) -> None:
    """ValueError, saying what is wrong (never the password), unless `url` can be used."""
    if is_sentinel_url(url):
        sentinel_target(url)
        return
    try:
        parse_url(url)
    except ValueError:
        raise ValueError("is not a Redis URL such as redis://127.0.0.1:6379/0") from None
