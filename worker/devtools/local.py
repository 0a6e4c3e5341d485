"""Local services for trying and testing: free ports, a Redis that answers, an embedded one."""

from __future__ import annotations

import random
import socket
import threading
from typing import Any

import redis

# Under the ports services usually take (Redis's 6379, 8000, 8080) and the ephemeral range.
PORTS_FROM = 10000


def free_port() -> int:
    """A loopback port nobody listens on now, for a server that binds it a moment later.

    Taken under the kernel's ephemeral range (ip_local_port_range, 32768-60999 by default),
    where outgoing connections get their local ports: a port bind(0) gives out is one of
    those, and any connection made before the server binds (the test suite makes thousands)
    may take it first ("port 57643 is taken", once in a suite's run)."""
    low = _ephemeral_low()
    if low > PORTS_FROM:
        for port in random.sample(range(PORTS_FROM, low), 50):
            if port_free("127.0.0.1", port):
                return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ephemeral_low() -> int:
    """The lowest local port the kernel gives an outgoing connection (0: unknown)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except (redis.RedisError, ValueError):
        return False


def embedded_redis(port: int, host: str = "127.0.0.1") -> Any:
    """fakeredis's TCP server (with Lua) on `port`, serving from a daemon thread.

    Its stock handler hangs up after any error reply, and kombu and redis-py meet one in
    normal use (EVALSHA before SCRIPT LOAD answers NOSCRIPT): here an error is answered
    and the connection kept, as a real Redis does.
    """
    from fakeredis import TcpFakeServer

    server = TcpFakeServer((host, port), server_type="redis")

    # fakeredis's handler class, reached through the server made above: Any to mypy.
    class KeepConnectionOnErrors(server.RequestHandlerClass):  # type: ignore[name-defined,misc]
        def setup(self) -> None:
            super().setup()
            read = self.current_client.read_response

            def read_response() -> Any:
                try:
                    return read()
                except redis.ResponseError as exc:
                    return exc  # encoded as an error reply by the server's writer

            self.current_client.read_response = read_response

    server.RequestHandlerClass = KeepConnectionOnErrors
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="embedded-redis", daemon=True).start()
    return server
