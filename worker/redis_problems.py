"""Why a Redis connection failed, in words that say the fix: TLS problems named as TLS
problems (an untrusted CA, a host name the certificate does not cover, TLS spoken to a
plaintext port or the reverse), and a Redis too old for the commands the project needs.

Never the password: the URL is shown through redact_url, and an error's own text (which
redis-py builds from host and port only) through redact.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError

from stripe_worker_agent.redis_url import is_sentinel_url, is_tls_url, sentinel_target, tls_options
from worker.errors import SettingsError
from worker.redact import redact, redact_url

# BLMOVE (tasks/transport.py) and LMOVE came in Redis 6.2; Valkey 7.2+ has them too.
MIN_REDIS_VERSION = (6, 2)
# While Redis is away, how often a worker says so again (seconds).
OUTAGE_REPEAT = 60.0


def tls_problem(exc: BaseException, url: str) -> str | None:
    """One line naming what went wrong with TLS, and its fix; None when it was not TLS."""
    exc = _sentinel_cause(exc, url)
    # redis-py keeps the ssl module's own words in the exception it wraps.
    text = f"{exc} {exc.__context__ or ''}"
    where = redact_url(url)
    if "CERTIFICATE_VERIFY_FAILED" in text:
        if "mismatch" in text:
            return (
                f"Redis at {where}: its TLS certificate is not issued for this host name "
                "(hostname mismatch); connect by the name on the certificate, as the "
                "provider's URL gives it"
            )
        option = "&ssl_ca_certs" if is_sentinel_url(url) else "?ssl_ca_certs"
        return (
            f"Redis at {where}: its TLS certificate is not signed by a CA this machine trusts; "
            f"add {option}=/path/ca.pem (the provider's CA) to REDIS_URL"
        )
    if is_tls_url(url) and (
        any(
            mark in text
            for mark in ("WRONG_VERSION_NUMBER", "record layer", "SSL", "EOF occurred", "handshake")
        )
        # A plaintext Redis waits for the end of a line that a ClientHello may not have: the
        # handshake times out. Asked in plaintext, the port answers as Redis does.
        or (isinstance(exc, redis.TimeoutError) and _plaintext_answer(_first_address(url)))
    ):
        plaintext = "drop ssl=true" if is_sentinel_url(url) else "use redis://"
        return (
            f"Redis at {where} does not speak TLS on this port; {plaintext} for a plaintext "
            "port, or the port the provider gives for TLS"
        )
    if (
        not is_tls_url(url)
        and any(
            mark in text for mark in ("reset by peer", "Connection closed by server", "Broken pipe")
        )
        # A Redis that stopped closes connections too: then the port takes no new one.
        and _plaintext_answer(_first_address(url)) is False
    ):
        tls = "add ?ssl=true at the end of" if is_sentinel_url(url) else "use rediss:// in"
        return (
            f"Redis at {where} closed the connection: if it requires TLS (managed Redis "
            f"does), {tls} REDIS_URL"
        )
    return None


def _sentinel_cause(exc: BaseException, url: str) -> BaseException:
    """What the first sentinel meets when asked alone, in place of redis-py's
    MasterNotFoundError, which names no cause ("network:ConnectionError" for each sentinel,
    redis/sentinel.py discover_master); `exc` itself when that sentinel answers."""
    if not (is_sentinel_url(url) and isinstance(exc, MasterNotFoundError)):
        return exc
    host, port = _first_address(url)
    tls = tls_options(url)
    probe = redis.Redis(
        host, port, socket_connect_timeout=1, socket_timeout=1, retry=Retry(NoBackoff(), 0),
        **({"ssl": True, **tls} if tls else {}),
    )  # fmt: skip
    try:
        probe.ping()
    except (redis.ConnectionError, redis.TimeoutError) as found:
        return found
    except redis.RedisError:  # it answered (NOAUTH without the sentinels' password)
        return exc
    finally:
        probe.close()
    return exc


def _first_address(url: str) -> tuple[str, int]:
    if is_sentinel_url(url):
        return sentinel_target(url).sentinels[0]
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def _plaintext_answer(address: tuple[str, int]) -> bool | None:
    """Whether the port answers a plaintext PING (+PONG, or -NOAUTH with a password); False
    when it takes the connection but answers no such thing (a TLS port closes it, or waits
    for a handshake); None when it takes no connection (nothing listens)."""
    try:
        sock = socket.create_connection(address, timeout=1)
    except OSError:
        return None
    with sock:
        try:
            sock.sendall(b"PING\r\n")
            return sock.recv(1)[:1] in (b"+", b"-")
        except OSError:
            return False


def parse_version(info: Mapping[str, Any]) -> tuple[int, ...]:
    """The server's version from INFO server (Valkey reports redis_version as 7.2.4 too)."""
    raw = str(info.get("redis_version", "0"))
    return tuple(int(part) for part in raw.split(".")[:3] if part.isdigit())


def require_version(client: redis.Redis, url: str) -> None:
    """SettingsError, in one line naming the version found, unless Redis has BLMOVE."""
    try:
        info = client.info("server")
    except redis.ResponseError:
        # A stand-in that does not answer INFO (fakeredis, which `dev` embeds, has BLMOVE):
        # nothing to judge by, and the commands themselves will say if one is missing.
        return
    version = parse_version(info)
    if version < MIN_REDIS_VERSION:
        found = info.get("redis_version", "unknown")
        raise SettingsError(
            f"Redis at {redact_url(url)} is version {found}; stripe-worker needs 6.2 or "
            "later (BLMOVE), or Valkey 7.2+"
        )


class Outage:
    """A Redis that stopped answering, said once with its (redacted) URL, then again every
    `every` seconds while it lasts, and once when it answers again: a worker waiting out
    an outage writes a line a minute, not one a beat."""

    def __init__(self, log: logging.Logger, url: str, every: float = OUTAGE_REPEAT) -> None:
        self.log = log
        self.where = redact_url(url)
        self.every = every
        self.since: float | None = None
        self.next_report = 0.0

    def failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        away = isinstance(exc, redis.ConnectionError | redis.TimeoutError)
        why = (
            f"does not answer ({exc.__class__.__name__})"
            if away
            else f"refuses: {redact(str(exc)).split('.')[0][:120]}"
        )
        if self.since is None:
            self.since, self.next_report = now, now + self.every
            self.log.warning(
                "Redis at %s %s: waiting for it, retrying each beat; said again every %g s "
                "while it lasts",
                self.where,
                why,
                self.every,
            )
        elif now >= self.next_report:
            self.next_report = now + self.every
            self.log.warning(
                "Redis at %s still %s, for %.0f s now", self.where, why, now - self.since
            )

    def answered(self) -> None:
        if self.since is not None:
            self.log.warning(
                "Redis at %s answers again, after %.0f s", self.where, time.monotonic() - self.since
            )
            self.since = None
