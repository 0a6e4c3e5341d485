"""Redis clients made from Settings at start-up, and the Lua scripts they run.

The client itself is made as an agent makes its own (stripe_worker_agent/connection.py:
TLS options from the URL, Sentinel-managed connections with a `sentinel://` URL, TLS to the
sentinels and the master with `?ssl=true`).
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any, cast

import redis
from redis.commands.core import Script

from stripe_worker_agent.connection import client_for
from stripe_worker_agent.connection import sentinel_options as _sentinel_options
from worker.errors import NotReplicated
from worker.settings import Settings

# How long a write waits for REDIS_MIN_REPLICAS replicas: on a healthy link a replica acks
# in about a millisecond; a second means the replica is gone or far behind.
REPLICA_WAIT_MS = 1000


def redis_client(
    settings: Settings, client_class: type[redis.Redis] = redis.Redis, **options: Any
) -> redis.Redis:
    return client_for(
        settings.redis_url,
        settings.redis_sentinel_master,
        settings.redis_sentinel_password,
        client_class,
        **options,
    )


def sentinel_options(settings: Settings) -> dict[str, Any]:
    """How to talk to the sentinels themselves (not to the master they name)."""
    return _sentinel_options(settings.redis_url, settings.redis_sentinel_password)


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
