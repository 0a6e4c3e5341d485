"""TLS for the tests: a CA and certificates made with openssl, a redis-server speaking
only TLS, and a listener standing in for Redis that records how each connection begins.

redis-server's TLS options: https://redis.io/docs/latest/operate/oss_and_stack/management/security/encryption/
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

from worker.devtools.local import free_port

from .waiting import wait_for

# A TLS record of type handshake (0x16), version 3.x: how every TLS ClientHello begins.
CLIENT_HELLO = b"\x16\x03"


class TestCA:
    __test__ = False  # not a test class, though its name begins with Test
    """A CA of its own in a temporary directory (removed by `remove`), and a server
    certificate it signed, for 127.0.0.1 only (so `localhost` is a host name mismatch)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sw-tls-"))
        self.ca = self.dir / "ca.pem"
        self._openssl("req", "-x509", "-new", "-keyout", "ca.key", "-out", "ca.pem",
                      "-subj", "/CN=stripe-worker test CA", *self._key())  # fmt: skip
        self.server_cert, self.server_key = self.issue("server", "IP:127.0.0.1")
        self.client_cert, self.client_key = self.issue("client", "DNS:client")

    def issue(self, name: str, san: str) -> tuple[Path, Path]:
        (self.dir / f"{name}.ext").write_text(f"subjectAltName={san}\n")
        self._openssl("req", "-new", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                      "-subj", f"/CN={name}", *self._key()[:-2])  # fmt: skip
        self._openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                      "-CAcreateserial", "-days", "2", "-out", f"{name}.pem",
                      "-extfile", f"{name}.ext")  # fmt: skip
        return self.dir / f"{name}.pem", self.dir / f"{name}.key"

    @staticmethod
    def _key() -> list[str]:
        return ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-days", "2"]  # fmt: skip

    def _openssl(self, *args: str) -> None:
        subprocess.run(["openssl", *args], cwd=self.dir, check=True, capture_output=True)

    def remove(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class TlsRedis:
    """redis-server answering TLS only (`--port 0`), with a password or an ACL user."""

    def __init__(
        self, ca: TestCA, password: str | None = None, user: tuple[str, str] | None = None,
        client_certs: bool = False,
    ) -> None:  # fmt: skip
        self.ca = ca
        self.port = free_port()
        argv = ["redis-server", "--port", "0", "--tls-port", str(self.port),
                "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(ca.dir),
                "--tls-cert-file", str(ca.server_cert), "--tls-key-file", str(ca.server_key),
                "--tls-ca-cert-file", str(ca.ca),
                "--tls-auth-clients", "yes" if client_certs else "no"]  # fmt: skip
        if password:
            argv += ["--requirepass", password]
        if user:
            argv += ["--user", user[0], "on", f">{user[1]}", "~*", "&*", "+@all"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._listening, timeout=10)

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def url(self, auth: str = "", query: str = "", host: str = "127.0.0.1") -> str:
        return f"rediss://{auth}{host}:{self.port}/0" + (f"?{query}" if query else "")

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait(5)


class StandIn:
    """A TCP listener standing in for Redis on a free port: each connection is handled by
    `handle` on a thread of its own."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.sock.close()


class FirstBytes(StandIn):
    """Records the first bytes of every connection (TLS begins with a ClientHello;
    plaintext RESP with `*`), then closes it."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self._lock = threading.Lock()
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        with conn:
            try:
                first = conn.recv(2)
            except OSError:
                first = b""
        if first:
            with self._lock:
                self.seen.append(first)

    def count(self) -> int:
        with self._lock:
            return len(self.seen)

    def plaintext(self) -> list[bytes]:
        with self._lock:
            return [b for b in self.seen if not b.startswith(CLIENT_HELLO)]


class Recorder(FirstBytes):
    """Stands in front of the server on `target` (a port on 127.0.0.1): records the first
    bytes of every connection, as FirstBytes does, and forwards it both ways."""

    def __init__(self, target: int) -> None:
        self.target = target
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.target), timeout=5)
        except OSError:  # the server is down (killed for a failover): as if refused
            conn.close()
            return
        upstream.settimeout(None)
        threading.Thread(target=self._pump, args=(upstream, conn, False), daemon=True).start()
        self._pump(conn, upstream, True)

    def _pump(self, source: socket.socket, sink: socket.socket, first: bool) -> None:
        try:
            while data := source.recv(65536):
                if first:
                    with self._lock:
                        self.seen.append(data[:2])
                    first = False
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()


class OldRedis(StandIn):
    """Answers as Redis 6.0 would (no BLMOVE): INFO says so, HELLO as 6.0 answers it, PING
    PONG, the rest OK. redis-py 8.2 opens each connection with HELLO 3 (its default is
    RESP3), which Redis 6.0 has (redis.io/docs/latest/commands/hello)."""

    def handle(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        with conn, reader:
            while header := reader.readline():
                count = int(header[1:])  # *N, then $len and the value of each part
                parts = [reader.readline() and reader.readline().strip() for _ in range(count)]
                command = parts[0].upper() if parts else b""
                if command == b"INFO":
                    body = b"# Server\r\nredis_version:6.0.16\r\n"
                    conn.sendall(b"$%d\r\n%s\r\n" % (len(body), body))
                elif command == b"HELLO":
                    conn.sendall(_hello_reply(int(parts[1]) if len(parts) > 1 else 2))
                else:
                    conn.sendall(b"+PONG\r\n" if parts[:1] == [b"PING"] else b"+OK\r\n")


def _hello_reply(proto: int) -> bytes:
    """Redis 6.0.16's HELLO: a map in RESP3, the same pairs as a flat array in RESP2."""
    pairs = [("server", "redis"), ("version", "6.0.16"), ("proto", proto), ("id", 1),
             ("mode", "standalone"), ("role", "master")]  # fmt: skip
    out = [b"%%%d\r\n" % (len(pairs) + 1) if proto == 3 else b"*%d\r\n" % (2 * len(pairs) + 2)]
    for name, value in [*pairs, ("modules", None)]:
        out.append(b"$%d\r\n%s\r\n" % (len(name), name.encode()))
        if value is None:
            out.append(b"*0\r\n")
        elif isinstance(value, int):
            out.append(b":%d\r\n" % value)
        else:
            out.append(b"$%d\r\n%s\r\n" % (len(value), value.encode()))
    return b"".join(out)
