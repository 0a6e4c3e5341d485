"""The consumer side as agent authors use it: the run loop, dead letters, a clean stop, the
example agent, and the published schemas; on a real Redis, with the worker publishing (on
a thread of the test process: nothing here needs its process)."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.publish import Publisher
from worker.keys import CUSTOMERS, EVENTS, STREAMS
from worker.schema import SCHEMA_VERSION, schema_of
from worker.spec import ComponentSpec
from worker.streams import Entry, RunStats, StreamConsumer
from worker.work import Work

from .entry_schemas import entry_problems
from .support import enqueue, event_work, wait_for, worker_env

AGENT = Path(__file__).parent.parent / "examples" / "agent.py"


def test_an_entry_whose_handler_always_raises_is_dead_lettered_while_others_flow(
    redis_client, settings, start_inprocess_worker
):
    key = settings.keys.stream(EVENTS)
    consumer = StreamConsumer(redis_client, key, "agents", "a1", min_idle_ms=50, max_deliveries=3)
    works = [event_work(i) for i in range(20)]
    poison = works[5].work_id
    handled = []

    def handle(entry):
        if entry.work_id == poison:
            raise ValueError("cannot make sense of this invoice")
        handled.append(entry.work_id)

    start_inprocess_worker()
    enqueue(redis_client, settings, works)
    stats = consumer.run(handle, count=5, block_ms=200, limit=len(works))

    assert stats == RunStats(handled=19, failed=3, dead=1)
    assert sorted(handled) == sorted(w.work_id for w in works if w.work_id != poison)
    [(_id, dead)] = redis_client.xrange(settings.keys.dead_letter(EVENTS, "agents"))
    assert (dead["work_id"], dead["dead_deliveries"]) == (poison, "3")
    assert dead["dead_reason"] == "ValueError: cannot make sense of this invoice"
    assert (dead["dead_group"], dead["dead_stream"]) == ("agents", key)
    assert json.loads(dead["event"])["id"] == "evt_lag_5"  # the whole entry is kept
    assert redis_client.xpending(key, "agents")["pending"] == 0


@pytest.mark.handmade_entries
def test_an_entry_its_consumers_die_on_is_dead_lettered_without_running_again(
    redis_client, settings
):
    Publisher(redis_client, settings).publish(CUSTOMERS, "w1", {"customerId": "cus_1"})
    key = settings.keys.stream(CUSTOMERS)
    for name in ("a", "b"):  # each takes it and dies before acking
        taken = StreamConsumer(redis_client, key, "agents", name, min_idle_ms=0).fetch(count=1)
        assert [e.work_id for e in taken] == ["w1"]
    survivor = StreamConsumer(redis_client, key, "agents", "c", min_idle_ms=0, max_deliveries=2)
    calls = []
    stats = survivor.run(calls.append, block_ms=100, limit=1)
    assert (calls, stats.dead) == ([], 1)
    [(_id, dead)] = redis_client.xrange(settings.keys.dead_letter(CUSTOMERS, "agents"))
    assert dead["dead_reason"] == "delivered 2 times and never acknowledged"
    again = Entry(dead["dead_entry_id"], {"work_id": "w1"})
    assert survivor.dead_letter(again, "twice") is None  # acked already: buried once
    assert redis_client.xlen(settings.keys.dead_letter(CUSTOMERS, "agents")) == 1


@pytest.mark.slow
def test_the_example_agent_reads_acks_and_stops_on_sigterm(
    redis_client, settings, start_inprocess_worker, webhook_env, tmp_path
):
    spec = ComponentSpec.parse(
        {
            "component": "stripe.createCustomer",
            "trigger": "true",
            "Body": {"email": "ada@example.com", "metadata": {"plan": "pro"}},
        }
    )
    start_inprocess_worker()
    enqueue(
        redis_client, settings, [Work.for_component(spec, "cli", f"agent{i}") for i in range(3)]
    )
    env = worker_env(settings, webhook_env)
    env["PYTHONPATH"] = str(AGENT.parent.parent)
    out = tmp_path / "agent.out"
    with out.open("w") as sink:
        agent = subprocess.Popen(
            [sys.executable, str(AGENT)], env=env, stdout=sink, stderr=subprocess.STDOUT
        )
        try:
            wait_for(lambda: out.read_text().count("welcome") == 3)
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(10) == 0
        finally:
            agent.kill()
    text = out.read_text()
    print("\n" + text)
    assert "welcome ada@example.com (cus_" in text and "plan pro" in text
    assert "stopped: 3 handled, 0 failed, 0 dead" in text
    assert redis_client.xpending(settings.keys.stream(CUSTOMERS), "agents")["pending"] == 0


@pytest.mark.slow
def test_the_schema_command_prints_each_published_schema(settings, webhook_env):
    env = worker_env(settings, webhook_env)
    for stream in STREAMS:
        done = subprocess.run(
            [sys.executable, "-m", "worker", "schema", stream],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout) == schema_of(stream)
        assert schema_of(stream)["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    bad = subprocess.run(
        [sys.executable, "-m", "worker", "schema", "payments"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "invalid choice" in bad.stderr and "Traceback" not in bad.stderr


def test_the_schema_check_catches_what_an_agent_would_trip_on():
    good = {
        "schema_version": "1",
        "work_id": "create:signup-u_1",
        "component": "stripe.createCustomer",
        "customerId": "cus_1",
        "customerEmail": "a@example.com",
        "Response": '{"id":"cus_1"}',
        "Headers": "{}",
        "source": "signup",
        "source_id": "msg_1",
        "idempotency_key": "signup-u_1",
        "livemode": "false",
        "attempts": "1",
    }
    assert entry_problems(CUSTOMERS, good) == []
    problems = entry_problems(
        CUSTOMERS, {**good, "Response": "{not json", "attempts": "one", "surprise": "x"}
    )
    assert len(problems) == 3, problems
    assert entry_problems(CUSTOMERS, {k: v for k, v in good.items() if k != "work_id"})
