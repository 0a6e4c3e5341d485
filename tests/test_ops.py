"""Operations on real worker processes: `status`, the trail and `trace`, the worker's metrics."""

import json
import re
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from worker.devtools.local import free_port
from worker.status import snapshot

from .support import (
    TEST_KEY,
    emulator_stats,
    entries,
    faults,
    run_in_process,
    sign_standard,
    wait_for,
    worker_env,
)


def signup(client, user: str, email: str, msg_id: str, times: int = 1) -> None:
    body = json.dumps({"type": "user.created", "data": {"user_id": user, "email": email}})
    for _ in range(times):
        answer = client.post("/webhooks/signup", data=body, headers=sign_standard(body, msg_id))
        assert answer.status_code == 200, answer.get_data(as_text=True)


@pytest.fixture
def cli(settings):
    """Run `stripe-worker ARGS` in this process against the test's Redis and prefix."""
    env = worker_env(settings, {})

    def run(*args: str) -> tuple[int, str, str]:
        done = run_in_process(*args, env=env)
        return done.returncode, done.stdout, done.stderr

    return run


def steps(found: list[dict]) -> list[str]:
    return [line["step"] for line in found[0]["trail"]]


@pytest.mark.slow
def test_status_and_the_trail_of_a_signup(
    client, start_inprocess_worker, redis_client, settings, cli
):
    start_inprocess_worker()
    # Alive means consuming: the heartbeat says so once the consumer has connected.
    wait_for(lambda: snapshot(redis_client, settings).live_workers == 1)
    signup(client, "u_ops1", "Jenny.Rosen@example.com", "msg_ops1", times=2)
    wait_for(lambda: entries(redis_client, settings, "customers"))
    customer = entries(redis_client, settings, "customers")[0]["customerId"]

    code, out, _ = cli("status", "--json")
    status = json.loads(out)
    assert code == 0 and status["problems"] == []
    assert status["live_workers"] == 1 and status["workers"][0]["pool"] == "threads"
    assert status["streams"]["customers"]["entries"] == 1
    assert (status["pending"], status["queue_depth"], status["in_flight"]) == (0, 0, 0)
    assert cli("status")[1].splitlines()[-1] == "OK"

    for term in ("jenny.rosen@example.com", "u_ops1", "msg_ops1", customer, "create:signup-u_ops1"):
        code, out, _ = cli("trace", term, "--json")
        found = json.loads(out)
        assert code == 0 and [f["work_id"] for f in found] == ["create:signup-u_ops1"], term
        assert steps(found) == ["received", "duplicate", "published"]
    published = found[0]["trail"][-1]
    assert published["customer"] == customer and published["request_id"].startswith("req_")
    assert cli("trace", "nobody@example.com")[0] == 1


def test_status_is_a_probe(redis_client, settings, cli):
    code, out, _ = cli("status")
    assert code == 1 and "no worker is alive" in out
    redis_client.zadd(settings.keys.workers, {"w1": time.time()})
    redis_client.set(settings.keys.worker("w1"), json.dumps({"host": "h", "pool": "threads"}))
    queued = time.time() - 1000
    redis_client.zadd(settings.keys.ledger, {"signup:old": queued})
    code, out, _ = cli("status", "--json", "--max-age", "900")
    status = json.loads(out)
    assert code == 1 and status["live_workers"] == 1
    [problem] = status["problems"]
    age = re.fullmatch(r"the oldest pending work is (\d+) s old \(over 900 s\)", problem)
    assert age and 1000 <= int(age[1]) <= time.time() - queued + 1  # 1000 s, and the seconds since
    assert cli("status", "--max-age", "2000")[0] == 0


def test_a_failure_replayed_keeps_one_trail(
    client, start_inprocess_worker, redis_client, settings, emulator, cli
):
    requests.post(f"{emulator.url}/_emulator/keys", json={"revoke": [TEST_KEY]}, timeout=5)
    start_inprocess_worker()
    signup(client, "u_ops2", "mallory@example.com", "msg_ops2")
    wait_for(lambda: entries(redis_client, settings, "errors"))
    requests.post(f"{emulator.url}/_emulator/keys", json={"allow": [TEST_KEY]}, timeout=5)
    error_id = redis_client.xrange(settings.keys.stream("errors"))[0][0]
    assert cli("dlq", "replay", error_id)[0] == 0
    wait_for(lambda: entries(redis_client, settings, "customers"))

    found = json.loads(cli("trace", "mallory@example.com", "--json")[1])
    assert steps(found) == ["received", "failed", "replayed", "published"]
    failed = found[0]["trail"][1]
    assert failed["error_type"] == "authentication_error" and failed["entry"] == error_id
    assert found[0]["trail"][2]["delivery"] == f"replay:{error_id}"


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """Every sample of the worker's /metrics; {} while it does not answer."""
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except requests.ConnectionError:
        return {}
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.parametrize("pool", ["threads", pytest.param("prefork", marks=pytest.mark.slow)])
@pytest.mark.slow
def test_worker_metrics(client, start_worker, redis_client, settings, emulator, pool):
    port = free_port()
    start_worker(
        f"--pool={pool}", "--concurrency=2", WORKER_METRICS_PORT=port, STRIPE_RATE_LIMIT=100
    )
    redis_client.xgroup_create(settings.keys.stream("customers"), "agents", id="0", mkstream=True)
    faults(emulator, status=500, count=1)
    signup(client, "u_ops3", "ops3@example.com", "msg_ops3")
    wait_for(lambda: entries(redis_client, settings, "customers"), timeout=60)
    assert emulator_stats(emulator)["created"]["test"] == 1

    def published() -> dict:
        m = scrape(port)
        key = (
            "stripe_worker_tasks_total",
            (("outcome", "published"), ("task", "stripe_worker.create_customer")),
        )
        return m if m.get(key) == 1 else {}

    m = wait_for(published)
    task = ("task", "stripe_worker.create_customer")
    assert m[("stripe_worker_tasks_total", (("outcome", "retried"), task))] == 1
    calls = "stripe_worker_stripe_calls_total"
    assert m[(calls, (("operation", "customers.create"), ("status", "500")))] == 1
    assert m[(calls, (("operation", "customers.create"), ("status", "200")))] == 1
    assert m[("stripe_worker_stripe_call_seconds_count", (("operation", "customers.create"),))] == 2
    assert m[("stripe_worker_rate_limit_wait_seconds_count", ())] == 2
    assert m[("stripe_worker_live_workers", ())] == 1
    assert m[("stripe_worker_workers_not_consuming", ())] == 0
    assert m[("stripe_worker_queue_depth", ())] == 0
    assert m[("stripe_worker_pending_work", ())] == 0
    assert m[("stripe_worker_oldest_pending_seconds", ())] == 0
    assert m[("stripe_worker_stream_entries", (("stream", "customers"),))] == 1
    assert m[("stripe_worker_stream_lag", (("group", "agents"), ("stream", "customers")))] == 1


@pytest.mark.slow
def test_a_taken_metrics_port_does_not_stop_the_worker(start_worker, redis_client, settings):
    port = free_port()
    start_worker(WORKER_METRICS_PORT=port)
    wait_for(lambda: scrape(port))
    second = start_worker(WORKER_METRICS_PORT=port)
    wait_for(lambda: redis_client.zcard(settings.keys.workers) == 2)
    wait_for(lambda: "worker metrics not served" in second.log())


def test_the_trail_rides_with_the_queueing_on_a_new_redis_too(own_redis, prefix):
    """A Redis that has not seen the scripts yet (new, restarted, flushed) answers the
    pipelined call NOSCRIPT: the work is queued once all the same, and the trail says so."""
    import redis as redis_py

    from worker.queue import Enqueuer
    from worker.settings import Settings
    from worker.spec import ComponentSpec
    from worker.trail import Trail
    from worker.work import Work

    settings = Settings(redis_url=own_redis.url, stream_prefix=prefix)
    client = redis_py.Redis.from_url(own_redis.url)
    spec = ComponentSpec.parse(
        {"component": "stripe.createCustomer", "trigger": "t", "Body": {"email": "n@example.com"}}
    )
    work = Work.for_component(spec, "signup", "msg_new")
    assert Enqueuer(client, settings).enqueue_once(work) is True  # scripts loaded here
    assert Enqueuer(client, settings).enqueue_once(work) is False  # pipelined
    client.script_flush()
    assert Enqueuer(client, settings).enqueue_once(work) is False
    [found] = Trail(client, settings).find("N@example.com")
    assert [line["step"] for line in found.lines] == ["received", "duplicate", "duplicate"]
    assert client.llen(settings.keys.queue) == 1


def test_a_trail_line_that_cannot_be_written_never_costs_the_delivery(
    redis_client, settings, caplog
):
    """The line is written in the queueing's own call (worker/enqueue_with_trail.lua): when
    it fails (here its key holds the wrong type), the work is queued all the same and the
    loss is logged."""
    from worker.queue import Enqueuer
    from worker.spec import ComponentSpec
    from worker.work import Work

    spec = ComponentSpec.parse(
        {"component": "stripe.createCustomer", "trigger": "t", "Body": {"email": "w@example.com"}}
    )
    work = Work.for_component(spec, "signup", "msg_wrongtype")
    redis_client.set(settings.keys.trail(work.work_id), "not a list")
    with caplog.at_level("WARNING", logger="stripe_worker.queue"):
        assert Enqueuer(redis_client, settings).enqueue_once(work) is True
        assert Enqueuer(redis_client, settings).enqueue_once(work) is False
    assert redis_client.llen(settings.keys.queue) == 1
    assert redis_client.hexists(settings.keys.ledger_work, work.delivery_id)
    lost = [r.getMessage() for r in caplog.records if "not written" in r.getMessage()]
    assert len(lost) == 2 and "WRONGTYPE" in lost[0], lost
