"""Sentinel with TLS and passwords: `sentinel://...?ssl=true` is TLS to the sentinels and to
the master they name, for every process, with the same options as a rediss:// URL; the
master's password is in the URL and the sentinels' in REDIS_SENTINEL_PASSWORD. On real
servers (redis-server and its sentinel mode, TLS only), every connection any process opens
passes a recorder that sees how it begins."""

from __future__ import annotations

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest
from kombu import Connection
from redis.backoff import NoBackoff
from redis.retry import Retry

from stripe_worker_agent.redis_url import kombu_url, tls_options
from tasks.celery_app import broker_options
from tasks.transport import SentinelTransport
from worker.connections import sentinel_options
from worker.settings import Settings
from worker.status import snapshot

from .support import (
    WebProcess,
    WorkerProcess,
    run_command,
    signup_over_http,
    wait_for,
    worker_env,
)
from .support.sentinel import MASTER_NAME, SentinelCluster, sentinel_unavailable
from .support.tls_redis import TestCA

PASSWORD = "r3dis-Pa55word"
SENTINEL_PASSWORD = "s3ntinel-Pa55word"
URL = (
    f"sentinel://:{PASSWORD}@h1:26379;sentinel://h2:26380;sentinel://h3/2"
    "?ssl=true&ssl_ca_certs=/etc/ca.pem"
)
NO_SENTINEL = sentinel_unavailable() or (None if shutil.which("openssl") else "needs openssl")
needs_sentinel = pytest.mark.skipif(NO_SENTINEL is not None, reason=NO_SENTINEL or "")


def on_sentinels(**env: str) -> Settings:
    return Settings.from_env(
        {"REDIS_URL": URL, "REDIS_SENTINEL_MASTER": "m", "REDIS_SENTINEL_PASSWORD": "spw", **env}
    )


def test_one_url_gives_the_sentinels_and_the_master_the_same_tls_options():
    settings = on_sentinels()
    tls = {"ssl_cert_reqs": "required", "ssl_check_hostname": True, "ssl_ca_certs": "/etc/ca.pem"}
    assert tls_options(settings.redis_url) == tls
    # The sentinels' own options (redis-py's clients and kombu's sentinel_kwargs alike).
    assert sentinel_options(settings) == {
        "socket_connect_timeout": 1, "socket_timeout": 1, "retry": Retry(NoBackoff(), 0),
        "password": "spw", "ssl": True, **tls,
    }  # fmt: skip
    assert broker_options(settings)["sentinel_kwargs"] == sentinel_options(settings)
    plain = Settings.from_env(
        {"REDIS_URL": "sentinel://h1;sentinel://h2/0", "REDIS_SENTINEL_MASTER": "m"}
    )
    assert tls_options(plain.redis_url) is None and "ssl" not in sentinel_options(plain)


def test_kombu_keeps_the_password_and_database_after_switching_sentinel():
    """kombu reads the first part alone and, after a failed connection, the next part alone
    (Connection.switch): each part of the URL it is given carries the password and db."""
    connection = Connection(
        kombu_url(URL), transport=SentinelTransport, ssl=tls_options(URL), transport_options={}
    )
    seen = []
    for _ in range(3):
        seen.append((connection.hostname, connection.password, connection.virtual_host))
        connection.maybe_switch_next()
    assert seen == [("h1", PASSWORD, "2"), ("h2", PASSWORD, "2"), ("h3", PASSWORD, "2")]
    assert connection.ssl == tls_options(URL)  # the options survive the switch
    encoded = Connection(kombu_url("sentinel://:p%40ss%2Fw@h1;sentinel://[::1]:26380/3"))
    encoded.maybe_switch_next()
    assert (encoded.hostname, encoded.password, encoded.virtual_host) == ("::1", "p@ss/w", "3")
    acl_user = Connection(kombu_url("sentinel://h1;sentinel://app:pw@h2/1"))  # an ACL user
    assert (acl_user.userid, acl_user.password, acl_user.virtual_host) == ("app", "pw", "1")


@pytest.fixture
def ca():
    made = TestCA()
    yield made
    made.remove()


@pytest.fixture
def cluster(ca):
    servers = SentinelCluster(
        ca=ca, password=PASSWORD, sentinel_password=SENTINEL_PASSWORD, record=True
    ).start()
    yield servers
    servers.stop()


@needs_sentinel
@pytest.mark.slow(seconds=12)
def test_signups_through_tls_sentinels_with_passwords_and_a_failover(
    cluster, settings, webhook_env, tmp_path
):
    tls = settings.with_(
        redis_url=cluster.url,
        redis_sentinel_master=MASTER_NAME,
        redis_sentinel_password=SENTINEL_PASSWORD,
    )
    env = worker_env(
        tls, webhook_env,
        REDIS_SENTINEL_MASTER=MASTER_NAME, REDIS_SENTINEL_PASSWORD=SENTINEL_PASSWORD,
    )  # fmt: skip
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    web = WebProcess(env, tmp_path / "web.log")
    stream = tls.keys.stream("customers")
    try:
        for n in range(3):
            signup_over_http(web.url, f"u_st{n}")
        wait_for(lambda: cluster.master().xlen(stream) == 3, timeout=60)
        # Asked here, in this process: the one `status` process below is the test.
        master = cluster.master()
        wait_for(lambda: snapshot(master, tls).live_workers == 1, timeout=30)
        status = run_command("status", env=env)
        assert status.returncode == 0 and status.stdout.splitlines()[-1] == "OK", status.stdout
        check = run_command("check", env=env)
        redis_lines = [line for line in check.stdout.splitlines() if "redis" in line.lower()]
        assert redis_lines and all(line.startswith("OK") for line in redis_lines), check.stdout
        assert "connects (TLS)" in check.stdout

        # The master dies: the sentinels promote the replica, everyone follows, in TLS.
        old = cluster.current_master()
        cluster.kill(old)
        new = cluster.wait_promoted(old)
        wait_for(lambda: cluster.masters() == {new}, timeout=60)
        for n in range(3, 6):
            signup_over_http(web.url, f"u_st{n}")
        wait_for(lambda: cluster.client(new).xlen(stream) == 6, timeout=90)

        seen = {port: cluster.recorders[port] for port in cluster.recorders}
        assert all(recorder.count() for recorder in seen.values()), {
            port: recorder.count() for port, recorder in seen.items()
        }
        plaintext = {port: r.plaintext() for port, r in seen.items() if r.plaintext()}
        assert plaintext == {}, plaintext
        logs = worker.log() + web.log() + status.stdout + status.stderr + check.stdout
        assert PASSWORD not in logs and SENTINEL_PASSWORD not in logs
        roles = ["master", "replica", "sentinel 1", "sentinel 2", "sentinel 3"]
        counts = dict(zip(roles, (r.count() for r in seen.values()), strict=True))
        print(f"connections per server (all TLS ClientHello): {counts}")
    finally:
        web.stop()
        worker.stop()


@pytest.fixture
def plaintext_cluster():
    servers = SentinelCluster().start()
    yield servers
    servers.stop()


@needs_sentinel
@pytest.mark.slow(seconds=20)
def test_tls_problems_behind_sentinels_are_named_with_their_fix(
    cluster, plaintext_cluster, settings, webhook_env
):
    """redis-py's MasterNotFoundError names no cause; the line still does. One sentinel in
    each URL: each sentinel that cannot be spoken to costs its timeout, on every retry."""
    tls_url = cluster.url.split(";")[0] + "/0"
    plain_url = plaintext_cluster.url.split(";")[0] + "/0"
    cases = {
        "TLS to plaintext sentinels": (f"{plain_url}?ssl=true", "drop ssl=true"),
        "plaintext to TLS sentinels": (tls_url, "add ?ssl=true"),
        "untrusted CA": (f"{tls_url}?ssl=true", "&ssl_ca_certs=/path/ca.pem"),
    }

    def status(url: str) -> subprocess.CompletedProcess[str]:
        env = worker_env(
            settings.with_(redis_url=url), webhook_env,
            REDIS_SENTINEL_MASTER=MASTER_NAME, REDIS_SENTINEL_PASSWORD=SENTINEL_PASSWORD,
        )  # fmt: skip
        return run_command("status", env=env, timeout=120)

    # At once: each waits out redis-py's retries at their defaults (about 10 s here).
    with ThreadPoolExecutor(len(cases)) as pool:
        urls = [url for url, _fix in cases.values()]
        answers = dict(zip(cases, pool.map(status, urls), strict=True))
    for name, (_url, fix) in cases.items():
        done = answers[name]
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 1 and len(lines) == 1, (name, done.stderr)
        assert fix in lines[0] and PASSWORD not in lines[0], (name, lines[0])
        print(f"{name}: {lines[0]}")
