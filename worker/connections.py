"""Redis clients made from Settings at start-up, and the Lua scripts they run.

With a `sentinel://` REDIS_URL every client is redis-py's Sentinel-managed one: each new
connection asks the sentinels for the current master, connections to a master that was
replaced are dropped, and a demoted master's ReadOnlyError is turned into a
ConnectionError, which the client's retry (reconnect, ask again) handles. So a failover
costs callers a few failed calls while the sentinels agree, never a restart. With
`?ssl=true` both the sentinels and the master are spoken to in TLS, with the URL's options
(worker/redis_url.py tls_options), as kombu does for the worker's broker connection.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any, cast

import redis
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.commands.core import Script
from redis.connection import SSLConnection
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection

from worker.errors import NotReplicated
from worker.redis_url import is_sentinel_url, sentinel_target, tls_options
from worker.settings import Settings

# How long a write waits for REDIS_MIN_REPLICAS replicas: on a healthy link a replica acks
# in about a millisecond; a second means the replica is gone or far behind.
REPLICA_WAIT_MS = 1000


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


def redis_client(
    settings: Settings, client_class: type[redis.Redis] = redis.Redis, **options: Any
) -> redis.Redis:
    options.setdefault("socket_connect_timeout", 2)
    options.setdefault("socket_timeout", 5)
    options.setdefault("health_check_interval", 30)
    # The URL's own TLS options, as the worker's kombu transport gets them
    # (tasks/celery_app.py): the same for every client.
    tls = tls_options(settings.redis_url)
    options.update(tls or {})
    if not is_sentinel_url(settings.redis_url):
        return client_class.from_url(settings.redis_url, **options)
    target = sentinel_target(settings.redis_url)
    # redis.Redis() gives its pool this retry; master_for's pool would have none, and a
    # demoted master's ReadOnlyError (a ConnectionError here) would fail the call instead of
    # reconnecting to the master the sentinels name now.
    options.setdefault("retry", Retry(ExponentialWithJitterBackoff(base=0.01, cap=1), 10))
    sentinel = Sentinel(
        list(target.sentinels),
        sentinel_kwargs=sentinel_options(settings),
    )
    client: redis.Redis = sentinel.master_for(
        settings.redis_sentinel_master,
        redis_class=client_class,
        connection_class=MasterSSLConnection if tls else MasterConnection,
        db=target.db,
        username=target.username,
        password=target.password,
        **options,
    )
    return client


def sentinel_options(settings: Settings) -> dict[str, Any]:
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
    if settings.redis_sentinel_password:
        options["password"] = settings.redis_sentinel_password
    tls = tls_options(settings.redis_url)
    if tls:
        options.update(ssl=True, **tls)
    return options


def lua_script(client: redis.Redis, package: str, name: str) -> Script:
    """The script `name` shipped beside the package's modules, registered on `client`."""
    return client.register_script(files(package).joinpath(name).read_text("utf-8"))


def replicated(script: Script, replicas: int, fence: int, fence_ttl: int) -> Any:
    """`script` itself when `replicas` is 0; else a stand-in called the same way
    (`keys=`, `args=`) that runs it through `run_replicated`, with `keys[fence]` as the
    fence."""
    if not replicas:
        return script

    def call(keys: list[str], args: list[Any]) -> Any:
        # redis-py types it Redis | RedisCluster; lua_script registers on a Redis only.
        client = cast(redis.Redis, script.registered_client)
        return run_replicated(client, script, keys, args, keys[fence], fence_ttl, replicas)

    return call


def run_replicated(
    client: redis.Redis,
    script: Script,
    keys: list[str],
    args: list[Any],
    fence: str,
    fence_ttl: int,
    replicas: int,
) -> Any:
    """Run `script`, then wait until `replicas` replicas hold everything it wrote; its
    result, or NotReplicated when fewer acknowledged within REPLICA_WAIT_MS.

    WAIT counts the writes of its own connection, so the three commands go as one pipeline
    on one connection (and are re-sent together if that connection breaks). `fence` is a key
    the script leaves in place on every path (its done-mark): re-arming its TTL is a write
    even when the script found the work done by an earlier call, so the WAIT then covers
    that earlier call's writes too, and a retry is answered only once they are replicated.
    """
    for attempt in range(2):
        pipe = client.pipeline(transaction=False)
        pipe.evalsha(script.sha, len(keys), *keys, *args)
        add_replica_wait(pipe, fence, fence_ttl, replicas)
        try:
            result, _armed, acked = pipe.execute()
        except redis.exceptions.NoScriptError:
            # A master just promoted has an empty script cache.
            if attempt:
                raise
            client.script_load(script.script)
            continue
        check_replicas(acked, replicas)
        return result
    raise AssertionError("unreachable")


def add_replica_wait(pipe: Any, fence: str, fence_ttl: int, replicas: int) -> None:
    """Queue, after a script in `pipe`, the fence write and the WAIT (see run_replicated)."""
    pipe.expire(fence, fence_ttl)
    pipe.wait(replicas, REPLICA_WAIT_MS)


def check_replicas(acked: Any, replicas: int) -> None:
    """NotReplicated unless WAIT's answer `acked` counts `replicas` replicas."""
    if isinstance(acked, Exception):
        raise acked
    if acked < replicas:
        raise NotReplicated(
            f"the write reached {acked} of REDIS_MIN_REPLICAS={replicas} replica(s) "
            f"within {REPLICA_WAIT_MS} ms"
        )
