"""Redis for the tests: the shared one at REDIS_URL, or one of a test's own."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile

from worker.devtools.local import embedded_redis, free_port, redis_answers

from .waiting import wait_for


class RedisServer:
    """A Redis of its own on a free port, that can be stopped, paused and started again on
    the same port: `redis-server` when installed, else fakeredis's TCP server (which
    cannot be paused: `pausable` says which)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.pausable = shutil.which("redis-server") is not None
        self._handle: object = None
        self._dir: str | None = None

    @property
    def how(self) -> str:
        kind = "redis-server" if self.pausable else "fakeredis TCP server"
        return f"{kind} on port {self.port}"

    def start(self) -> RedisServer:
        if self.pausable:
            self._handle = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    self._folder(),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        else:
            self._handle = embedded_redis(self.port)
        wait_for(lambda: redis_answers(self.url), timeout=10)
        return self

    def _folder(self) -> str:
        """Where redis-server may write (nothing, with --save "" and no AOF); kept across
        a stop and start on the same port, removed by `stop`."""
        if self._dir is None:
            self._dir = tempfile.mkdtemp(prefix="sw-redis-")
        return self._dir

    def pause(self) -> None:
        """SIGSTOP: connections hang as in a network partition (redis-server only)."""
        assert isinstance(self._handle, subprocess.Popen), "only a redis-server can pause"
        self._handle.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if isinstance(self._handle, subprocess.Popen):
            self._handle.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if isinstance(self._handle, subprocess.Popen):
            self._handle.send_signal(signal.SIGCONT)  # a paused one cannot die otherwise
            self._handle.kill()
            self._handle.wait(5)
            shutil.rmtree(self._dir or "", ignore_errors=True)
            self._dir = None
        elif self._handle is not None:
            self._handle.shutdown()  # type: ignore[attr-defined]
            self._handle.server_close()  # type: ignore[attr-defined]
        self._handle = None


def shared_redis() -> tuple[str, str, RedisServer | None]:
    """The Redis a test run uses: (url, how, the server started for it or None).

    The one at REDIS_URL (default 127.0.0.1:6379) when it answers; else one started for
    the run.
    """
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if redis_answers(url):
        return url, f"the Redis at {url}", None
    server = RedisServer().start()
    return server.url, f"{server.how}, started for this run", server
