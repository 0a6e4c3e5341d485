"""Why a Redis connection failed, in words that say the fix: TLS problems named as TLS
problems (an untrusted CA, a host name the certificate does not cover, TLS spoken to a
plaintext port or the reverse), and a Redis too old for the commands the project needs.

Never the password: the URL is shown through redact_url, and an error's own text (which
redis-py builds from host and port only) through redact.
"""

from __future__ import annotations

import redis

from stripe_worker_agent.redis_url import is_tls_url
from worker.errors import SettingsError
from worker.redact import redact_url

# BLMOVE (tasks/transport.py) and LMOVE came in Redis 6.2; Valkey 7.2+ has them too.
MIN_REDIS_VERSION = (6, 2)


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
