"""Redis clients made from Settings at start-up, and the Lua scripts they run.

The client itself is made as an agent makes its own (stripe_worker_agent/connection.py:
TLS options from the URL, Sentinel-managed connections with a `sentinel://` URL, TLS to the
sentinels and the master with `?ssl=true`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
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


def composed_script(
    client: redis.Redis, package: str, name: str, *parts: tuple[str, str, str]
) -> Script:
    """The script `name` after `parts` (function name, package, file), each wrapped as a
    Lua function of its own KEYS and ARGV (its `return` then ends the function), so that
    one step runs several scripts' logic in one call while each file stays the one place
    its logic lives."""
    source = "".join(
        f"local function {function}(KEYS, ARGV)\n"
        f"{files(part_package).joinpath(part).read_text('utf-8')}\nend\n"
        for function, part_package, part in parts
    )
    return client.register_script(source + files(package).joinpath(name).read_text("utf-8"))


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


def replica_wait_commands(fence: str, fence_ttl: int, replicas: int) -> list[tuple[Any, ...]]:
    """The fence write and the WAIT that follow a script (see run_replicated)."""
    return [("EXPIRE", fence, fence_ttl), ("WAIT", replicas, REPLICA_WAIT_MS)]


def add_replica_wait(pipe: Any, fence: str, fence_ttl: int, replicas: int) -> None:
    """Queue, after a script in `pipe`, the fence write and the WAIT (see run_replicated)."""
    for command in replica_wait_commands(fence, fence_ttl, replicas):
        pipe.execute_command(*command)


class RoundTrip:
    """A few commands in one write and their replies read in order: a pipeline without
    redis-py's Pipeline, for the receiver's one round trip per delivery.

    redis-py's Pipeline.execute costs more CPU than the write and the reads it wraps
    (profiled in the receiver under wrk, bench/receiver_profile.py: a fifth of a webhook's
    CPU): the command stack, the pool's hand-out (whose readiness check is a recv syscall
    per call), its observability hooks, the reset. Here each connection is taken from the
    client's pool once and kept in a free list of its own, and the same Connection
    methods a Pipeline uses send and read (redis/client.py `Pipeline._execute_pipeline`):
    `pack_commands`, `send_packed_command` (which reconnects a dropped connection, through
    the sentinels with MasterConnection, and sends the health check PING when it is due)
    and `read_response`. The connection's own `retry` re-sends the whole write after a
    ConnectionError or TimeoutError, disconnecting first, as Pipeline.execute does; a
    connection whose replies were not all read (any exception on the way) is disconnected,
    so a kept one never holds a stale reply.

    Thread- and greenlet-safe: list.pop and append are atomic, and a connection is used by
    one caller at a time. After a fork the parent's connections are dropped, not shared.
    """

    def __init__(self, client: redis.Redis) -> None:
        self.pool = client.connection_pool
        self._idle: list[Any] = []
        self._pid = os.getpid()

    def execute(self, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Each command's reply; a Redis error reply (ResponseError) is returned in its
        place, not raised. ConnectionError or TimeoutError when Redis does not answer
        within the client's retries."""
        if self._pid != os.getpid():
            self._idle, self._pid = [], os.getpid()
        try:
            conn = self._idle.pop()
        except IndexError:
            conn = self.pool.get_connection()  # kept: never given back to the pool
        try:
            replies: list[Any] = conn.retry.call_with_retry(
                lambda: self._send(conn, commands), lambda _error: conn.disconnect()
            )
        except BaseException:
            conn.disconnect()  # reconnects on its next use
            raise
        finally:
            self._idle.append(conn)
        return replies

    @staticmethod
    def _send(conn: Any, commands: Sequence[Sequence[Any]]) -> list[Any]:
        conn.send_packed_command(conn.pack_commands(commands))
        replies: list[Any] = []
        for _command in commands:
            try:
                replies.append(conn.read_response())
            except redis.ResponseError as exc:
                replies.append(exc)
        return replies


def check_replicas(acked: Any, replicas: int) -> None:
    """NotReplicated unless WAIT's answer `acked` counts `replicas` replicas."""
    if isinstance(acked, Exception):
        raise acked
    if acked < replicas:
        raise NotReplicated(
            f"the write reached {acked} of REDIS_MIN_REPLICAS={replicas} replica(s) "
            f"within {REPLICA_WAIT_MS} ms"
        )
