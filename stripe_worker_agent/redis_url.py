"""REDIS_URL, read once: one Redis (`redis://`, `rediss://`, `unix://`) or Celery's Sentinel form.

    sentinel://[[USER]:PASSWORD@]HOST[:PORT];sentinel://HOST[:PORT]/DB[?ssl=true&ssl_...]

Each `sentinel://` part names one sentinel (port 26379 when left out); the master set's name
is REDIS_SENTINEL_MASTER. A password in the URL is the Redis password (of the master and
replicas), as Celery reads it; the sentinels' own password is REDIS_SENTINEL_PASSWORD.
`?ssl=true`, once at the end, is TLS to the sentinels and to the master they name, with the
same `ssl_*` options as a `rediss://` URL.

A TLS URL is TLS for every client of every process: `tls_options` is the one place its
query options become connection options, given to redis-py and to kombu alike (kombu adds a
TLS default only for a transport named `rediss`, and ours is not); `kombu_url` is the URL
as kombu must be given it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from redis.connection import parse_url

SENTINEL_SCHEME = "sentinel://"
SENTINEL_PORT = 26379
TLS_SCHEME = "rediss://"
# The query options of a rediss:// URL, as redis-py names them (redis.connection.parse_url,
# SSLConnection): how the server is verified, and the client's own certificate.
TLS_QUERY_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
CERT_REQS = ("required", "optional", "none")
# What a sentinel:// URL's query may say: TLS on (to the sentinels and to the master), and how.
SENTINEL_QUERY_OPTIONS = ("ssl", *TLS_QUERY_OPTIONS)


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
    credentials: set[tuple[str | None, str]] = set()
    username = password = None
    every = url.split(";")
    for n, part in enumerate(every, 1):
        if not is_sentinel_url(part):
            raise ValueError("every ';'-separated part must start with sentinel://")
        parts = urlsplit(part)
        if parts.query and n < len(every):
            raise ValueError("options (?ssl=true...) go once, at the end of the URL")
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
            credentials.add((username, password))
    if len(dbs) > 1:
        raise ValueError("the sentinel:// parts name different databases")
    if len(credentials) > 1:
        raise ValueError("the sentinel:// parts give different passwords for Redis")
    return SentinelTarget(tuple(sentinels), dbs.pop() if dbs else 0, username, password)


def check_redis_url(url: str) -> None:
    """ValueError, saying what is wrong (never the password), unless `url` can be used."""
    if is_sentinel_url(url):
        sentinel_target(url)
        query = url_query(url)
        unknown = sorted(set(query) - set(SENTINEL_QUERY_OPTIONS))
        if unknown:
            raise ValueError(
                f"a sentinel:// URL takes only {', '.join(SENTINEL_QUERY_OPTIONS)} as options, "
                f"not {unknown[0]}"
            )
        if query.get("ssl", "false").lower() not in ("true", "false"):
            raise ValueError("ssl must be true or false (TLS to the sentinels and the master)")
        if not is_tls_url(url) and query:
            raise ValueError(
                f"{sorted(query)[0]} is a TLS option: add ssl=true (TLS to the sentinels and "
                "to the master they name)"
            )
        tls_options(url)
        return
    parts = urlsplit(url)
    if parts.scheme in ("redis", "rediss"):
        # redis-py's parse_url says the port "could not be cast" without which part of the
        # URL that is, and ignores a path that is not a number (db 0 with no word).
        port = parts.netloc.rpartition("@")[2].rpartition("]")[2].partition(":")[2]
        try:
            parts.port  # noqa: B018 - urllib checks the number and its range on access
        except ValueError:
            raise ValueError(f"the port {port!r} is not a number from 1 to 65535") from None
        db = parts.path.strip("/")
        if db and not db.isdigit():
            raise ValueError(f"the database must be a number, such as /0; got /{db}")
    try:
        parse_url(url)
    except ValueError as exc:
        why = f" ({exc})" if "db" in str(exc) else ""
        raise ValueError(f"is not a Redis URL such as redis://127.0.0.1:6379/0{why}") from None
    tls_options(url)


def url_query(url: str) -> dict[str, str]:
    """The options of `url` (of a sentinel:// URL: of its last part), the last of each."""
    return {k: v[-1] for k, v in parse_qs(urlsplit(url.split(";")[-1]).query).items()}


def is_tls_url(url: str) -> bool:
    """TLS for every connection: rediss://, or sentinel://...?ssl=true (sentinels and master)."""
    if is_sentinel_url(url):
        return url_query(url).get("ssl", "").lower() == "true"
    return url.startswith(TLS_SCHEME)


def kombu_url(url: str) -> str:
    """REDIS_URL as kombu must be given it.

    kombu reads a sentinel:// list by its first part alone and, when a connection fails,
    switches to the next part and reads that one alone (kombu.connection.Connection.switch):
    the master's password and the database must be in every part, or the broker would use
    db 0 and lose the password after a switch. The options go as broker_use_ssl
    (tls_options), not in the URL: kombu would read them from the query in place of ours.
    """
    if not is_sentinel_url(url):
        return url
    target = sentinel_target(url)
    auth = ""
    if target.password:
        auth = f"{quote(target.username or '', safe='')}:{quote(target.password, safe='')}@"
    return ";".join(
        f"sentinel://{auth}{f'[{host}]' if ':' in host else host}:{port}/{target.db}"
        for host, port in target.sentinels
    )


def tls_options(url: str) -> dict[str, Any] | None:
    """The TLS options of every connection to `url`'s Redis, or None when it is not TLS.

    Verification is on by default, against the system's CA store (ssl.create_default_context,
    so SSL_CERT_FILE counts): a managed Redis's bare rediss:// URL just works.
    `?ssl_cert_reqs=none` turns it off, and with it the host name check. For a sentinel://
    URL they are the options of every connection, to the sentinels and to the master."""
    if not is_tls_url(url):
        return None
    query = url_query(url)
    reqs = query.get("ssl_cert_reqs", "required").lower()
    if reqs not in CERT_REQS:
        raise ValueError(f"ssl_cert_reqs must be one of {', '.join(CERT_REQS)}, got {reqs!r}")
    options: dict[str, Any] = {"ssl_cert_reqs": reqs, "ssl_check_hostname": reqs != "none"}
    for name in TLS_QUERY_OPTIONS[1:]:
        if query.get(name):
            options[name] = query[name]
    return options
