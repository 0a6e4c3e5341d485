"""Redis as managed services hand it out: TLS from a rediss:// URL alone, for every process
(receiver, the worker's kombu transport, its heartbeat, the CLI), on a real TLS redis-server;
TLS problems named as such; a worker that beats but cannot consume reported as a problem."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess

import pytest
import redis
import requests

from worker.devtools.doctor import broker_check
from worker.devtools.local import free_port
from worker.redis_problems import parse_version, tls_problem
from worker.status import snapshot

from .support import WebProcess, WorkerProcess, cli, signup_over_http, wait_for, worker_env
from .support.tls_redis import FirstBytes, OldRedis, TestCA, TlsRedis

PASSWORD = "s3cret-Pa55word"
needs_tls_redis = pytest.mark.skipif(
    not (shutil.which("redis-server") and shutil.which("openssl")),
    reason="needs redis-server (with TLS) and openssl",
)


@pytest.fixture
def ca():
    made = TestCA()
    yield made
    made.remove()


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_no_process_opens_a_plaintext_connection_for_a_rediss_url(settings, webhook_env, tmp_path):
    listener = FirstBytes()
    tls = settings.with_(redis_url=f"rediss://:{PASSWORD}@127.0.0.1:{listener.port}/0")
    env = worker_env(tls, webhook_env)
    try:
        seen = {}
        commands = {"status": ["status"], "check": ["check"], "tail": ["tail", "customers"]}
        for name, args in commands.items():
            before = listener.count()
            done = run_cli(env, *args)
            assert done.returncode != 0 and PASSWORD not in done.stdout + done.stderr
            seen[name] = listener.count() - before
        before = listener.count()
        worker = WorkerProcess(env, tmp_path / "worker.log").start()
        worker.proc.wait(60)  # it cannot start on a Redis that never answers: one line
        assert PASSWORD not in worker.log()
        seen["worker process"] = listener.count() - before
        before = listener.count()
        assert broker_check(tls)[0] is False  # the worker's kombu transport, as Celery makes it
        seen["kombu transport"] = listener.count() - before
        before = listener.count()
        web = WebProcess(env, tmp_path / "web.log")
        try:
            requests.get(web.url + "/readyz", timeout=30)
        finally:
            web.stop()
        seen["web"] = listener.count() - before
        assert all(seen.values()), seen  # every one of them tried
        assert listener.plaintext() == [], listener.plaintext()
        print(f"connections seen (all TLS ClientHello): {seen}")
    finally:
        listener.close()


@needs_tls_redis
@pytest.mark.slow
@pytest.mark.parametrize("how", ["password, CA by URL", "ACL user, CA in the system store"])
def test_signups_are_processed_on_a_tls_only_redis(ca, how, settings, webhook_env, tmp_path):
    if how.startswith("password"):
        server = TlsRedis(ca, password=PASSWORD)
        url = server.url(f":{PASSWORD}@", f"ssl_ca_certs={ca.ca}")
        extra = {}
    else:
        server = TlsRedis(ca, user=("sw-app", PASSWORD))
        url = server.url(f"sw-app:{PASSWORD}@")  # a bare rediss:// URL, as providers hand out
        extra = {"SSL_CERT_FILE": str(ca.ca)}
    tls = settings.with_(redis_url=url)
    env = worker_env(tls, webhook_env, **extra)
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    web = WebProcess(env, tmp_path / "web.log")
    try:
        client = redis.Redis.from_url(url, ssl_ca_certs=str(ca.ca))
        for n in range(3):
            signup_over_http(web.url, f"u_tls{n}")
        wait_for(lambda: client.xlen(tls.keys.stream("customers")) == 3, timeout=60)
        # The heartbeat says the consumer is connected from its next beat on (asked here,
        # in this process: one `status` process, below, is the test).
        wait_for(lambda: snapshot(client, tls).live_workers == 1, timeout=30)
        status = run_cli(env, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert status.stdout.splitlines()[-1] == "OK"
        check = run_cli(env, "check")
        lines = [
            line for line in check.stdout.splitlines() if " redis " in line or "broker" in line
        ]
        assert lines and all(line.startswith("OK") for line in lines), check.stdout
        assert "(TLS)" in check.stdout
        assert PASSWORD not in worker.log() + web.log() + status.stdout + check.stdout
    finally:
        web.stop()
        worker.stop()
        server.stop()


@needs_tls_redis
@pytest.mark.slow
def test_tls_problems_are_named_with_their_fix(ca, settings, webhook_env, redis_url):
    server = TlsRedis(ca, password=PASSWORD)
    try:
        cases = {
            "untrusted": (server.url(f":{PASSWORD}@"), "?ssl_ca_certs=/path/ca.pem"),
            "mismatch": (
                server.url(f":{PASSWORD}@", f"ssl_ca_certs={ca.ca}", host="localhost"),
                "hostname mismatch",
            ),
            "plaintext to TLS": (f"redis://:{PASSWORD}@127.0.0.1:{server.port}/0", "rediss://"),
            "TLS to plaintext": (redis_url.replace("redis://", "rediss://"), "redis:// for a"),
        }
        for name, (url, fix) in cases.items():
            done = run_cli(worker_env(settings.with_(redis_url=url), webhook_env), "status")
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 1 and len(lines) == 1, (name, done.stderr)
            assert fix in lines[0] and PASSWORD not in lines[0], (name, lines[0])
            print(f"{name}: {lines[0]}")
    finally:
        server.stop()


@needs_tls_redis
@pytest.mark.slow
def test_a_client_certificate_from_the_url(ca, settings):
    server = TlsRedis(ca, client_certs=True)
    try:
        bare = settings.with_(redis_url=server.url(query=f"ssl_ca_certs={ca.ca}"))
        assert broker_check(bare)[0] is False  # the server wants a client certificate
        query = f"ssl_ca_certs={ca.ca}&ssl_certfile={ca.client_cert}&ssl_keyfile={ca.client_key}"
        ok, _what, detail = broker_check(settings.with_(redis_url=server.url(query=query)))
        assert ok and "(TLS)" in detail
    finally:
        server.stop()


def test_a_closed_connection_hints_at_tls_only_where_the_port_wants_more_than_plaintext(
    redis_url,
):
    """A plaintext client cut off by a TLS port is told to use rediss://; cut off by a
    Redis that stopped (the port takes no connection) or restarted (it answers plaintext
    again), it is not told about TLS at all."""
    closed = redis.ConnectionError("Connection closed by server.")
    listener = socket.create_server(("127.0.0.1", 0))  # takes a connection, says nothing
    try:
        port = listener.getsockname()[1]
        assert "rediss://" in (tls_problem(closed, f"redis://127.0.0.1:{port}/0") or "")
    finally:
        listener.close()
    assert tls_problem(closed, f"redis://127.0.0.1:{free_port()}/0") is None
    assert tls_problem(closed, redis_url) is None


def test_the_version_is_read_from_info(redis_client):
    assert parse_version(redis_client.info("server")) >= (6, 2)
    assert parse_version({"redis_version": "6.0.16"}) < (6, 2)
    assert parse_version({"redis_version": "7.2.4"}) >= (6, 2)  # as Valkey 7.2+ reports


@needs_tls_redis
@pytest.mark.slow
def test_status_exits_1_while_a_worker_beats_but_cannot_consume(settings, webhook_env, tmp_path):
    """The worker's heartbeat keeps its connection; its consumer loses its own and cannot
    connect again (its ACL password changed: Redis keeps connections already
    authenticated). `status` names the worker and exits 1, the gauges say so."""
    ca = TestCA()
    server = TlsRedis(ca, user=("sw-app", PASSWORD))
    admin = redis.Redis.from_url(server.url(), ssl_ca_certs=str(ca.ca))  # the default user
    url = server.url(f"sw-app:{PASSWORD}@", f"ssl_ca_certs={ca.ca}")
    tls = settings.with_(redis_url=url)
    worker = WorkerProcess(worker_env(tls, webhook_env), tmp_path / "worker.log").start()
    probe = worker_env(settings.with_(redis_url=server.url(query=f"ssl_ca_certs={ca.ca}")), {})
    try:
        wait_for(lambda: snapshot(admin, settings).live_workers == 1, timeout=60)
        # The consumer's connection is the one blocked in BLMOVE; under load it may not have
        # sent its first one yet when status already counts the worker alive. It must be
        # authenticated before the password changes, or it never connects at all.
        consumer = wait_for(
            lambda: [c for c in admin.client_list() if c.get("cmd") == "blmove"], timeout=60
        )
        admin.acl_setuser("sw-app", passwords=[f"-{PASSWORD}", "+another-password"])
        for c in consumer:
            admin.client_kill_filter(_id=c["id"])

        # A problem once the consumer has been down past the grace `status` gives it.
        wait_for(
            lambda: any("cannot consume" in p for p in snapshot(admin, settings).problems()),
            timeout=60,
        )
        done = run_cli(probe, "status")
        assert done.returncode == 1, done.stdout + done.stderr
        assert "0 alive, 1 not consuming" in done.stdout and "NOT CONSUMING" in done.stdout
        problem = done.stdout.splitlines()[-1]
        assert problem.startswith("PROBLEM") and f"pid {worker.pid} cannot consume" in problem
        status = json.loads(run_cli(probe, "status", "--json").stdout)
        assert (status["live_workers"], status["workers_not_consuming"]) == (0, 1)
        print(done.stdout)
    finally:
        worker.stop()
        server.stop()
        ca.remove()


@pytest.mark.slow
def test_a_redis_older_than_6_2_is_refused_at_start_in_one_line(settings, webhook_env, tmp_path):
    old = OldRedis()
    try:
        url = f"redis://:{PASSWORD}@127.0.0.1:{old.port}/0"
        worker = WorkerProcess(
            worker_env(settings.with_(redis_url=url), webhook_env), tmp_path / "w.log"
        )
        assert worker.start().proc.wait(60) == 2, worker.log()
        lines = worker.log().strip().splitlines()
        assert lines == [
            f"error: Redis at redis://:***@127.0.0.1:{old.port}/0 is version 6.0.16; "
            "stripe-worker needs 6.2 or later (BLMOVE), or Valkey 7.2+"
        ]
    finally:
        old.close()
