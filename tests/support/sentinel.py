"""A Redis master, one replica and three sentinels on 127.0.0.1, for the failover run and its
test. Each server is `redis-server` (in sentinel mode for the sentinels: what Debian's
`redis-sentinel` runs), with its own port and directory, nothing persisted."""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from worker.devtools.local import free_port

MASTER_NAME = "mymaster"
# Sentinel's default is 30 s; a deployment that wants fast failovers sets a few seconds.
DOWN_AFTER_MS = 1000


def sentinel_unavailable() -> str | None:
    """Why a Sentinel cluster cannot run here, or None when it can."""
    if not shutil.which("redis-server"):
        return "redis-server is not installed (apt-get install redis-server redis-sentinel)"
    # Without a config file, sentinel mode refuses to start and says so; a build without
    # it complains about the option instead.
    probe = subprocess.run(
        ["redis-server", "--sentinel"], capture_output=True, text=True, timeout=10
    )
    if "Sentinel needs config file" not in probe.stdout + probe.stderr:
        return "this redis-server has no sentinel mode (apt-get install redis-sentinel)"
    return None


def online_replicas(port: int) -> int:
    """How many replicas of the server on `port` are connected and in sync."""
    info = redis.Redis(port=port).info("replication")
    return sum(
        1
        for name, value in info.items()
        if name.startswith("slave") and isinstance(value, dict) and value["state"] == "online"
    )


class SentinelCluster:
    """Start, kill and restart the servers; ask the sentinels which one is the master."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sentinel-cluster-"))
        self.procs: dict[int, subprocess.Popen] = {}
        self.master_port = free_port()
        self.replica_port = free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]

    @property
    def url(self) -> str:
        """REDIS_URL in Celery's Sentinel form."""
        return ";".join(f"sentinel://127.0.0.1:{p}" for p in self.sentinel_ports) + "/0"

    def start(self) -> SentinelCluster:
        self.start_redis(self.master_port)
        self.start_redis(self.replica_port, replica_of=self.master_port)
        for port in self.sentinel_ports:
            conf = self.dir / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.dir}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
            )
            self._spawn(port, ["redis-server", str(conf), "--sentinel"])
        self.wait(
            self._sentinels_agree, 30, "the sentinels did not find each other and the replica"
        )
        return self

    def start_redis(self, port: int, replica_of: int | None = None) -> None:
        args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        # A returning replica resyncs at once (the default waits 5 s for more replicas).
        args += ["--appendonly", "no", "--dir", str(self.dir), "--repl-diskless-sync-delay", "0"]
        if replica_of:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        self._spawn(port, args)
        self.wait(lambda: redis.Redis(port=port).ping(), 10, f"redis on {port} did not start")

    def _spawn(self, port: int, args: list[str]) -> None:
        log = open(self.dir / f"{port}.log", "wb")  # noqa: SIM115
        self.procs[port] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    def _sentinels_agree(self) -> bool:
        for port in self.sentinel_ports:
            state = redis.Redis(port=port, decode_responses=True).sentinel_master(MASTER_NAME)
            if state["num-other-sentinels"] < 2 or state["num-slaves"] < 1:
                return False
        return True

    def masters(self) -> set[int]:
        """The master's port as each sentinel that answers names it (one port when agreed)."""
        ports = set()
        for port in self.sentinel_ports:
            try:
                client = redis.Redis(port=port, socket_timeout=1)
                ports.add(int(client.sentinel_get_master_addr_by_name(MASTER_NAME)[1]))
            except (redis.RedisError, TypeError):
                continue
        return ports

    def current_master(self) -> int:
        """The port of the server that the sentinels name and that says it is the master."""
        for port in sorted(self.masters()):
            try:
                if redis.Redis(port=port).info("replication")["role"] == "master":
                    return port
            except redis.RedisError:
                continue
        raise RuntimeError("no master")

    def master(self, **options: object) -> redis.Redis:
        return redis.Redis(port=self.current_master(), **options)  # type: ignore[arg-type]

    def kill(self, port: int) -> None:
        proc = self.procs.pop(port)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def wait_promoted(self, old: int, timeout: float = 60) -> int:
        """Wait until a server other than `old` says it is the master (the sentinels have
        promoted it; they may name it a moment later); its port."""
        others = [p for p in (self.master_port, self.replica_port) if p != old]

        def promoted() -> int | None:
            for port in others:
                if redis.Redis(port=port).info("replication")["role"] == "master":
                    return port
            return None

        self.wait(promoted, timeout, "no failover")
        return promoted()  # type: ignore[return-value]

    def replicas_in_sync(self) -> int:
        return online_replicas(self.current_master())

    @staticmethod
    def wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except (redis.RedisError, RuntimeError):
                pass
            time.sleep(0.05)
        raise RuntimeError(what)

    def stop(self) -> None:
        for port in list(self.procs):
            self.kill(port)
        shutil.rmtree(self.dir, ignore_errors=True)
