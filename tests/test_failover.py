"""Redis with Sentinel: REDIS_URL's sentinel form, clients that follow a failover, and
REDIS_MIN_REPLICAS (200 only once the enqueue is on a replica; the retry of a 503 is not
swallowed by the dedupe mark). Real servers: redis-server, in sentinel mode for the
sentinels; the tests that need them skip, saying why, where they are missing."""

import json
import shutil

import pytest
import redis

from bench.failover_run import run_failover
from stripe_worker_agent.redis_url import SentinelTarget, sentinel_target
from tasks.celery_app import create_celery
from tasks.publish import Publisher
from tasks.transport import SentinelTransport
from webhooks import create_app
from worker.connections import redis_client
from worker.envelope import new_message_id, task_message
from worker.errors import NotReplicated, SettingsError
from worker.queue import Enqueuer
from worker.redact import redact_url
from worker.settings import Settings
from worker.spec import ComponentSpec
from worker.vault import Vault
from worker.work import Work

from .support import entries, sign_standard, signup_work, wait_for
from .support.sentinel import (
    MASTER_NAME,
    SentinelCluster,
    online_replicas,
    sentinel_unavailable,
)

NO_SENTINEL = sentinel_unavailable()
needs_sentinel = pytest.mark.skipif(NO_SENTINEL is not None, reason=NO_SENTINEL or "")
needs_redis_server = pytest.mark.skipif(
    not shutil.which("redis-server"), reason="needs redis-server (a replica to attach)"
)


@pytest.mark.parametrize(
    ("url", "master", "says"),
    [
        ("sentinel://h1:26379;redis://h2:6379/0", "m", "every ';'-separated part"),
        ("sentinel://h1:abc/0", "m", "port is not a number"),
        ("sentinel://h1/1;sentinel://h2/2", "m", "different databases"),
        ("sentinel://h1:26379/0", "", "set REDIS_SENTINEL_MASTER"),
        ("http://:pw@h1", "", "must start with redis://"),
        ("redis://:pw@h1:port/0", "", "the port 'port' is not a number"),
        ("sentinel://:pw@h1:26379/0?ssl_cert_reqs=required", "m", "add ssl=true"),
        ("sentinel://:pw@h1?ssl=true;sentinel://h2/0", "m", "once, at the end of the URL"),
        ("sentinel://:pw@h1:26379/0?ssl=yes", "m", "ssl must be true or false"),
        ("sentinel://:pw@h1:26379/0?ssl=true&ssl_ca_cert=/x", "m", "not ssl_ca_cert"),
        ("sentinel://:pw@h1/0?ssl=true&ssl_cert_reqs=maybe", "m", "ssl_cert_reqs must be"),
        ("sentinel://:pw@h1;sentinel://:pw2@h2/0", "m", "different passwords"),
        ("rediss://:pw@h1:6380/0?ssl_cert_reqs=maybe", "", "ssl_cert_reqs must be one of"),
    ],
)
def test_a_bad_redis_url_is_one_line_without_the_password(url, master, says):
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"REDIS_URL": url, "REDIS_SENTINEL_MASTER": master})
    assert says in caught.value.message
    assert "\n" not in caught.value.message and "pw" not in caught.value.message


def test_the_sentinel_form_with_passwords():
    url = "sentinel://:s3cret@h1;sentinel://:s3cret@h2:26380/2"
    settings = Settings.from_env(
        {"REDIS_URL": url, "REDIS_SENTINEL_MASTER": "m", "REDIS_SENTINEL_PASSWORD": "sentpw"}
    )
    assert sentinel_target(settings.redis_url) == SentinelTarget(
        (("h1", 26379), ("h2", 26380)), 2, None, "s3cret"
    )
    assert "s3cret" not in redact_url(url) and "sentpw" not in repr(settings)


def test_a_failover_to_the_next_sentinel_keeps_the_workers_transport(settings):
    """kombu takes a sentinel:// list as alternates and, on a failed connect, switches to
    the next one, setting the transport to its scheme: kombu's own `sentinel` transport,
    which never takes from given_back (no connection is made here)."""
    url = "sentinel://127.0.0.1:1;sentinel://127.0.0.1:2;sentinel://127.0.0.1:3/0"
    app = create_celery(settings.with_(redis_url=url, redis_sentinel_master=MASTER_NAME))
    connection = app.connection_for_read()
    for port in (2, 3, 1):
        connection.maybe_switch_next()
        assert (connection.port, connection.get_transport_cls()) == (port, SentinelTransport)


@pytest.fixture
def cluster():
    c = SentinelCluster().start()
    yield c
    c.stop()


def signup(i: int) -> Work:
    spec = ComponentSpec.parse(
        {"component": "stripe.createCustomer", "trigger": "t", "Body": {"email": f"u{i}@x.test"}}
    )
    return Work.for_component(spec, "cli", f"failover{i}")


@needs_sentinel
@pytest.mark.slow
def test_clients_and_workers_follow_a_demoted_master(cluster, settings, start_worker):
    on_sentinels = settings.with_(redis_url=cluster.url, redis_sentinel_master=MASTER_NAME)
    client = redis_client(on_sentinels, decode_responses=True)
    start_worker(REDIS_URL=cluster.url, REDIS_SENTINEL_MASTER=MASTER_NAME)
    enqueuer = Enqueuer(client, on_sentinels)
    for i in range(3):
        enqueuer.enqueue_once(signup(i))
    wait_for(lambda: len(entries(client, on_sentinels, "customers")) == 3)

    old = cluster.current_master()
    redis.Redis(port=cluster.sentinel_ports[0]).execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
    new = cluster.wait_promoted(old)
    wait_for(lambda: cluster.masters() == {new})
    # The sentinels demote the old master on their next look at it (up to 10 s); here at
    # once, and without closing its clients' connections, so that they meet ReadOnlyError.
    demoted = redis.Redis(port=old)
    demoted.replicaof("127.0.0.1", new)
    with pytest.raises(redis.ReadOnlyError):
        demoted.set(on_sentinels.keys.seen("probe"), 1)

    # The same client, whose connections went to the demoted master: no ReadOnlyError.
    for i in range(3, 6):
        enqueuer.enqueue_once(signup(i))
    assert client.connection_pool.get_master_address()[1] == new
    master = redis.Redis(port=new, decode_responses=True)
    wait_for(lambda: len(entries(master, on_sentinels, "customers")) == 6)
    assert master.zcard(on_sentinels.keys.ledger) == 0


@needs_sentinel
@pytest.mark.slow(seconds=10)
def test_after_the_master_is_killed_a_worker_takes_given_back_work(cluster, settings, start_worker):
    """The master SIGKILLed: the worker's reconnects fail until the sentinels promote the
    replica, and kombu moves on to the URL's next sentinel. What is given back after that
    (a dead worker's, a lapsed lease's) is still taken, by a worker still on our fetch."""
    on_sentinels = settings.with_(redis_url=cluster.url, redis_sentinel_master=MASTER_NAME)
    start_worker(REDIS_URL=cluster.url, REDIS_SENTINEL_MASTER=MASTER_NAME)
    Enqueuer(redis_client(on_sentinels), on_sentinels).enqueue_once(signup(0))
    wait_for(lambda: len(entries(cluster.master(), on_sentinels, "customers")) == 1)

    old = cluster.current_master()
    cluster.kill(old)
    new = cluster.wait_promoted(old)
    wait_for(lambda: cluster.masters() == {new})
    master = redis.Redis(port=new, decode_responses=True)
    master.lpush(on_sentinels.keys.given_back, task_message(signup_work("given"), new_message_id()))
    wait_for(lambda: len(entries(master, on_sentinels, "customers")) == 2)
    assert master.llen(on_sentinels.keys.given_back) == 0


@pytest.fixture
def lone_master():
    """A master with no replica yet (the cluster's servers only, no sentinels)."""
    servers = SentinelCluster()
    servers.start_redis(servers.master_port)
    yield servers
    servers.stop()


def attach_replica(servers: SentinelCluster) -> None:
    servers.start_redis(servers.replica_port, replica_of=servers.master_port)
    servers.wait(lambda: online_replicas(servers.master_port) >= 1, 30, "the replica did not sync")


@needs_redis_server
@pytest.mark.slow
def test_no_200_before_a_replica_has_it_and_the_retry_gets_through(
    lone_master, settings, webhook_env
):
    local = settings.with_(
        redis_url=f"redis://127.0.0.1:{lone_master.master_port}/0", redis_min_replicas=1
    )
    client = create_app(local, vault=Vault(None, webhook_env)).test_client()
    body = json.dumps({"type": "user.created", "data": {"user_id": "u_1", "email": "a@x.test"}})

    def deliver():
        return client.post("/webhooks/signup", data=body, headers=sign_standard(body, "msg_r1"))

    for _ in range(2):  # no replica: queued, marked, but not acknowledged
        answer = deliver()
        assert answer.status_code == 503, answer.get_json()
        assert "REDIS_MIN_REPLICAS=1" in answer.get_json()["error"]["message"]
    master = redis.Redis(port=lone_master.master_port)
    assert master.llen(local.keys.queue) == 1

    attach_replica(lone_master)
    answer = deliver()
    assert answer.status_code == 200 and answer.get_json()["duplicate"] is True
    assert master.llen(local.keys.queue) == 1
    replica = redis.Redis(port=lone_master.replica_port)
    assert replica.llen(local.keys.queue) == 1 and replica.exists(local.keys.seen("signup:msg_r1"))


@needs_redis_server
@pytest.mark.slow
def test_a_publish_counts_only_once_replicated(lone_master, settings):
    local = settings.with_(
        redis_url=f"redis://127.0.0.1:{lone_master.master_port}/0", redis_min_replicas=1
    )
    publisher = Publisher(redis_client(local), local)
    with pytest.raises(NotReplicated):  # a RedisError: the task retries
        publisher.publish("customers", "w1", {"customerId": "cus_1"})
    attach_replica(lone_master)
    again = publisher.publish("customers", "w1", {"customerId": "cus_1"})
    assert again.new is False
    replica = redis.Redis(port=lone_master.replica_port)
    assert replica.xlen(local.keys.stream("customers")) == 1


@needs_sentinel
@pytest.mark.slow(seconds=13)
def test_master_killed_under_load_loses_nothing_answered_200():
    report = run_failover(
        min_replicas=1, rate=10, seconds=6, restart_after=0.5, say=lambda *_: None
    )
    assert report.promoted_s > 0, report  # the failover happened mid-run
    assert report.answered_200 == report.signups, report
    assert (report.lost, report.duplicates, report.unanswered) == (0, 0, 0), report
    assert report.entries == report.customers == report.signups, report
