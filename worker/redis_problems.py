"""Why a Redis connection failed, in words that say the fix: TLS problems named as TLS
problems (an untrusted CA, a host name the certificate does not cover, TLS spoken to a
plaintext port or the reverse), and a Redis too old for the commands the project needs.

Never the password: the URL is shown through redact_url, and an error's own text (which
redis-py builds from host and port only) through redact.
"""

from __future__ import annotations

import logging
import time

import redis

from worker.errors import SettingsError
from worker.redact import redact, redact_url
from worker.redis_url import is_tls_url

# BLMOVE (tasks/transport.py) and LMOVE came in Redis 6.2; Valkey 7.2+ has them too.
MIN_REDIS_VERSION = (6, 2)
# While Redis is away, how often a worker says so again (seconds).
OUTAGE_REPEAT = 60.0


def tls_problem(exc: BaseException, url: str) -> str | None:
    """One line naming what went wrong with TLS, and its fix; None when it was not TLS."""
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
        return (
            f"Redis at {where}: its TLS certificate is not signed by a CA this machine trusts; "
            "add ?ssl_ca_certs=/path/ca.pem (the provider's CA) to REDIS_URL"
        )
    if is_tls_url(url) and any(
        mark in text
        for mark in ("WRONG_VERSION_NUMBER", "record layer", "SSL", "EOF occurred", "handshake")
    ):
        return (
            f"Redis at {where} does not speak TLS on this port; use redis:// for a plaintext "
            "port, or the port the provider gives for TLS"
        )
    if not is_tls_url(url) and any(
        mark in text for mark in ("reset by peer", "Connection closed by server", "Broken pipe")
    ):
        return (
            f"Redis at {where} closed the connection: if it requires TLS (managed Redis "
            "does), use rediss:// in REDIS_URL"
        )
    return None


def parse_version(info: dict) -> tuple[int, ...]:
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
