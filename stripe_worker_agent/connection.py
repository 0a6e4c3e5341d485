"""A Redis client for a REDIS_URL, made as every process of the project makes it.

With a `sentinel://` REDIS_URL the client is redis-py's Sentinel-managed one: each new
connection asks the sentinels for the current master, connections to a master that was
replaced are dropped, and a demoted master's ReadOnlyError is turned into a
ConnectionError, which the client's retry (reconnect, ask again) handles. So a failover
costs callers a few failed calls while the sentinels agree, never a restart. With
`?ssl=true` both the sentinels and the master are spoken to in TLS, with the URL's options
(stripe_worker_agent/redis_url.py tls_options), as kombu does for the worker's broker
connection.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.connection import SSLConnection
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

from stripe_worker_agent.redis_url import is_sentinel_url, sentinel_target, tls_options

DEFAULT_URL = "redis://127.0.0.1:6379/0"
DEFAULT_PREFIX = "stripe"


class MasterConnection(SentinelManagedConnection):
    """A connection to whichever server the sentinels name master when it (re)connects.

    redis-py 8.1 asks the sentinels only when the pool hands a connection out; a connection
    dropped during a call (a demoted master's ReadOnlyError) reconnects, on the client's
    retry, to the address it had: the demoted master again, until the retries run out."""

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        # The sentinel-aware connect, not the base class's reconnect. (redis-py leaves both
        # calls unannotated.)
        if not self._sock:
            self.connect()  # type: ignore[no-untyped-call]
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


class MasterSSLConnection(MasterConnection, SSLConnection):
    """MasterConnection in TLS: composed as redis-py composes SentinelManagedSSLConnection
    (redis/sentinel.py), so connect_to's connect() is SSLConnection's."""


def client_for(
    url: str,
    sentinel_master: str = "",
    sentinel_password: str = "",
    client_class: type[redis.Redis] = redis.Redis,
    **options: Any,
) -> redis.Redis:
    """A client of the Redis `url` names (with a sentinel URL, of the master the sentinels
    name for `sentinel_master`)."""
    options.setdefault("socket_connect_timeout", 2)
    options.setdefault("socket_timeout", 5)
    options.setdefault("health_check_interval", 30)
    # The URL's own TLS options, as the worker's kombu transport gets them
    # (tasks/celery_app.py): the same for every client.
    tls = tls_options(url)
    options.update(tls or {})
    if not is_sentinel_url(url):
        return client_class.from_url(url, **options)
    if not sentinel_master:
        raise ValueError(
            "REDIS_URL is a sentinel:// URL: set REDIS_SENTINEL_MASTER to the name of the "
            "master set (sentinel monitor <name> ...)"
        )
    target = sentinel_target(url)
    # redis.Redis() gives its pool this retry; master_for's pool would have none, and a
    # demoted master's ReadOnlyError (a ConnectionError here) would fail the call instead of
    # reconnecting to the master the sentinels name now.
    options.setdefault("retry", Retry(ExponentialWithJitterBackoff(base=0.01, cap=1), 10))
    sentinel = Sentinel(
        list(target.sentinels), sentinel_kwargs=sentinel_options(url, sentinel_password)
    )
    client: redis.Redis = sentinel.master_for(
        sentinel_master,
        redis_class=client_class,
        connection_class=MasterSSLConnection if tls else MasterConnection,
        db=target.db,
        username=target.username,
        password=target.password,
        **options,
    )
    return client


def sentinel_options(url: str, password: str) -> dict[str, Any]:
    """How to talk to the sentinels themselves (not to the master they name): redis-py's
    Sentinel makes a Redis(host, port, **these) per sentinel (redis/sentinel.py), and kombu
    passes its `sentinel_kwargs` transport option there (kombu/transport/redis.py,
    SentinelChannel._sentinel_managed_pool). With ?ssl=true, TLS with the URL's options."""
    options: dict[str, Any] = {
        "socket_connect_timeout": 1,
        "socket_timeout": 1,
        # Sentinel asks the next sentinel itself, and the master client's retry asks them
        # all again; redis-py's default retry (10, per sentinel) would make a sentinel that
        # does not answer (down, or TLS spoken to a plaintext port) cost some 15 s a question.
        "retry": Retry(NoBackoff(), 0),
    }
    if password:
        options["password"] = password
    tls = tls_options(url)
    if tls:
        options.update(ssl=True, **tls)
    return options


def redis_from_env(environ: Mapping[str, str] | None = None, **options: Any) -> redis.Redis:
    """The Redis the project's processes use, from the same variables: REDIS_URL (default
    redis://127.0.0.1:6379/0), REDIS_SENTINEL_MASTER and REDIS_SENTINEL_PASSWORD."""
    env = os.environ if environ is None else environ
    return client_for(
        env.get("REDIS_URL") or DEFAULT_URL,
        env.get("REDIS_SENTINEL_MASTER", ""),
        env.get("REDIS_SENTINEL_PASSWORD", ""),
        **options,
    )


def stream_key(name: str, environ: Mapping[str, str] | None = None) -> str:
    """`customers` -> `stripe:customers`, under STREAM_PREFIX as the worker writes it."""
    env = os.environ if environ is None else environ
    return f"{env.get('STREAM_PREFIX') or DEFAULT_PREFIX}:{name}"
