"""A Redis master, one replica and three sentinels on 127.0.0.1, for the failover run and its
test. Each server is `redis-server` (in sentinel mode for the sentinels: what Debian's
`redis-sentinel` runs), with its own port and directory, nothing persisted.

The TLS variant (`SentinelCluster(ca=TestCA(), ...)`) speaks TLS only, everywhere: every
server and sentinel has `port 0` and a `tls-port`, and `tls-replication yes`, which makes a
replica reach its master in TLS and a sentinel reach the servers and the other sentinels in
TLS (Redis's TLS docs, "Sentinel": https://redis.io/docs/latest/operate/oss_and_stack/management/security/encryption/).
With passwords, Redis has `requirepass` (and `masterauth`, for its replica; `sentinel
auth-pass` for the sentinels), and the sentinels `requirepass` (and `sentinel sentinel-pass`
for one another). With `record=True` every server is reached only through a Recorder (its
announced address), so the first bytes of every connection any process opens are seen.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from worker.devtools.local import free_port

from .tls_redis import Recorder, TestCA

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


def online_replicas(port: int, client: redis.Redis | None = None) -> int:
    """How many replicas of the server on `port` are connected and in sync."""
    info = (client or redis.Redis(port=port)).info("replication")
    return sum(
        1
        for name, value in info.items()
        if name.startswith("slave") and isinstance(value, dict) and value["state"] == "online"
    )


class SentinelCluster:
    """Start, kill and restart the servers; ask the sentinels which one is the master."""

    def __init__(
        self,
        ca: TestCA | None = None,
        password: str | None = None,
        sentinel_password: str | None = None,
        record: bool = False,
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sentinel-cluster-"))
        self.procs: dict[int, subprocess.Popen] = {}
        self.ca = ca
        self.password = password
        self.sentinel_password = sentinel_password
        self.master_port = free_port()
        self.replica_port = free_port()
        self.sentinel_ports = [free_port() for _ in range(3)]
        # The address each server is known by: its Recorder's when recording, else its own.
        self.recorders: dict[int, Recorder] = {}
        if record:
            for port in (self.master_port, self.replica_port, *self.sentinel_ports):
                self.recorders[port] = Recorder(port)
        self._real = {self.front(port): port for port in self.recorders}

    def front(self, port: int) -> int:
        recorder = self.recorders.get(port)
        return recorder.port if recorder else port

    @property
    def url(self) -> str:
        """REDIS_URL in Celery's Sentinel form (with ?ssl=true and the CA for TLS)."""
        auth = f":{self.password}@" if self.password else ""
        url = ";".join(f"sentinel://{auth}127.0.0.1:{self.front(p)}" for p in self.sentinel_ports)
        return url + "/0" + (f"?ssl=true&ssl_ca_certs={self.ca.ca}" if self.ca else "")

    def client(self, port: int, **options: Any) -> redis.Redis:
        """A direct client of the server (or sentinel) on `port`, as the cluster needs."""
        sentinel = port in self.sentinel_ports
        password = self.sentinel_password if sentinel else self.password
        if self.ca:
            options.update(ssl=True, ssl_ca_certs=str(self.ca.ca))
        return redis.Redis("127.0.0.1", port, password=password, **options)

    def _tls_args(self) -> list[str]:
        if not self.ca:
            return []
        return ["--tls-cert-file", str(self.ca.server_cert), "--tls-key-file",
                str(self.ca.server_key), "--tls-ca-cert-file", str(self.ca.ca),
                "--tls-auth-clients", "no", "--tls-replication", "yes"]  # fmt: skip

    def _listen_args(self, port: int) -> list[str]:
        if not self.ca:
            return ["--port", str(port)]
        return ["--port", "0", "--tls-port", str(port)]

    def start(self) -> SentinelCluster:
        self.start_redis(self.master_port)
        self.start_redis(self.replica_port, replica_of=self.master_port)
        for port in self.sentinel_ports:
            conf = self.dir / f"sentinel-{port}.conf"
            lines = [
                f"bind 127.0.0.1\ndir {self.dir}",
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.front(self.master_port)} 2",
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
                f"sentinel failover-timeout {MASTER_NAME} 10000",
            ]
            if self.recorders:  # the other sentinels reach this one through its Recorder
                lines.append("sentinel announce-ip 127.0.0.1")
                lines.append(f"sentinel announce-port {self.front(port)}")
            if self.password:
                lines.append(f"sentinel auth-pass {MASTER_NAME} {self.password}")
            if self.sentinel_password:
                lines.append(f"requirepass {self.sentinel_password}")
                lines.append(f"sentinel sentinel-pass {self.sentinel_password}")
            conf.write_text("\n".join(lines) + "\n")
            argv = ["redis-server", str(conf), "--sentinel", *self._listen_args(port)]
            self._spawn(port, argv + self._tls_args())
        self.wait(
            self._sentinels_agree, 30, "the sentinels did not find each other and the replica"
        )
        return self

    def start_redis(self, port: int, replica_of: int | None = None) -> None:
        args = ["redis-server", *self._listen_args(port), "--bind", "127.0.0.1", "--save", ""]
        # A returning replica resyncs at once (the default waits 5 s for more replicas).
        args += ["--appendonly", "no", "--dir", str(self.dir), "--repl-diskless-sync-delay", "0"]
        if replica_of:
            args += ["--replicaof", "127.0.0.1", str(self.front(replica_of))]
        if self.recorders:  # its master names it to the sentinels by its Recorder's port
            args += ["--replica-announce-ip", "127.0.0.1"]
            args += ["--replica-announce-port", str(self.front(port))]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        self._spawn(port, args + self._tls_args())
        self.wait(lambda: self.client(port).ping(), 10, f"redis on {port} did not start")

    def _spawn(self, port: int, args: list[str]) -> None:
        log = open(self.dir / f"{port}.log", "wb")  # noqa: SIM115
        self.procs[port] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    def _sentinels_agree(self) -> bool:
        for port in self.sentinel_ports:
            state = self.client(port, decode_responses=True).sentinel_master(MASTER_NAME)
            if state["num-other-sentinels"] < 2 or state["num-slaves"] < 1:
                return False
        return True

    def masters(self) -> set[int]:
        """The master's port as each sentinel that answers names it (one port when agreed)."""
        ports = set()
        for port in self.sentinel_ports:
            try:
                client = self.client(port, socket_timeout=1)
                named = int(client.sentinel_get_master_addr_by_name(MASTER_NAME)[1])
                ports.add(self._real.get(named, named))
            except (redis.RedisError, TypeError):
                continue
        return ports

    def current_master(self) -> int:
        """The port of the server that the sentinels name and that says it is the master."""
        for port in sorted(self.masters()):
            try:
                if self.client(port).info("replication")["role"] == "master":
                    return port
            except redis.RedisError:
                continue
        raise RuntimeError("no master")

    def master(self, **options: Any) -> redis.Redis:
        return self.client(self.current_master(), **options)

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
                if self.client(port).info("replication")["role"] == "master":
                    return port
            return None

        self.wait(promoted, timeout, "no failover")
        return promoted()  # type: ignore[return-value]

    def replicas_in_sync(self) -> int:
        return online_replicas(self.current_master(), self.master())

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
        for recorder in self.recorders.values():
            recorder.close()
        shutil.rmtree(self.dir, ignore_errors=True)
