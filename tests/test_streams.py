"""Publishing once, trimming, and reading with consumer groups, on a real Redis."""

import os
import subprocess
import sys
from pathlib import Path

import fakeredis

from tasks.publish import Publisher, as_field
from worker.streams import StreamConsumer

from .support import at_once, worker_env


def test_publish_once_per_work_id(redis_client, settings):
    first = Publisher(redis_client, settings).publish("customers", "w1", {"customerId": "cus_1"})
    again = Publisher(redis_client, settings).publish("customers", "w1", {"customerId": "cus_1"})
    assert first.new and not again.new and again.entry_id == first.entry_id
    assert redis_client.xlen(settings.keys.stream("customers")) == 1


def test_concurrent_publishers_append_once(redis_client, settings):
    results = at_once(
        20, lambda: Publisher(redis_client, settings).publish("customers", "same", {"a": 1})
    )
    assert sum(r.new for r in results) == 1
    assert redis_client.xlen(settings.keys.stream("customers")) == 1


def test_stream_is_trimmed_near_maxlen(redis_client, settings):
    small = settings.with_(stream_maxlen=100)
    for i in range(1000):
        Publisher(redis_client, small).publish("events", f"w{i}", {"i": i})
    assert 100 <= redis_client.xlen(settings.keys.stream("events")) < 300


def test_fields_are_strings():
    assert [as_field(v) for v in (None, True, False, 3, {"b": 1, "a": [1]}, "x")] == [
        "",
        "true",
        "false",
        "3",
        '{"a":[1],"b":1}',
        "x",
    ]


def test_publish_once_works_on_embedded_fakeredis(settings):
    client = fakeredis.FakeRedis()
    assert Publisher(client, settings).publish("customers", "w", {"a": 1}).new
    assert not Publisher(client, settings).publish("customers", "w", {"a": 1}).new
    assert client.xlen(settings.keys.stream("customers")) == 1


def test_a_group_sees_each_entry_once(redis_client, settings):
    for i in range(10):
        Publisher(redis_client, settings).publish("customers", f"w{i}", {"customerId": f"cus_{i}"})
    key = settings.keys.stream("customers")
    a = StreamConsumer(redis_client, key, "agents", "a")
    b = StreamConsumer(redis_client, key, "agents", "b")
    seen = []
    for consumer in (a, b, a, b):
        batch = consumer.read(count=3)
        seen += [fields["customerId"] for _id, fields in batch]
        consumer.ack([i for i, _f in batch])
    seen += [f["customerId"] for _i, f in a.read(count=10)]
    assert sorted(seen) == sorted(f"cus_{i}" for i in range(10))


def test_entries_of_a_dead_consumer_are_claimed(redis_client, settings):
    for i in range(4):
        Publisher(redis_client, settings).publish("customers", f"w{i}", {"customerId": f"cus_{i}"})
    key = settings.keys.stream("customers")
    doomed = StreamConsumer(redis_client, key, "agents", "doomed", min_idle_ms=50)
    taken = doomed.read(count=4)
    assert len(taken) == 4  # ... and it dies before acking
    survivor = StreamConsumer(redis_client, key, "agents", "survivor", min_idle_ms=50)
    import time

    time.sleep(0.1)
    claimed = survivor.read(count=10)
    assert [i for i, _f in claimed] == [i for i, _f in taken]
    survivor.ack([i for i, _f in claimed])
    assert redis_client.xpending(key, "agents")["pending"] == 0


def test_example_agent_reads_and_acks(redis_client, settings, webhook_env):
    Publisher(redis_client, settings).publish(
        "customers",
        "w1",
        {
            "customerId": "cus_1",
            "customerEmail": "a@example.com",
            "Response": {"metadata": {"plan": "pro"}},
        },
    )
    agent = Path(__file__).parent.parent / "examples" / "agent.py"
    env = worker_env(settings, webhook_env)
    env["PYTHONPATH"] = str(agent.parent.parent) + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, str(agent), "--count", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "welcome a@example.com (cus_1, plan pro)" in done.stdout
    assert redis_client.xpending(settings.keys.stream("customers"), "agents")["pending"] == 0


def test_tail_prints_entries_for_people_and_machines(redis_client, settings, webhook_env):
    Publisher(redis_client, settings).publish(
        "customers",
        "w1",
        {
            "component": "stripe.createCustomer",
            "customerId": "cus_1",
            "customerEmail": "a@example.com",
            "source": "signup",
            "source_id": "msg_1",
        },
    )
    env = worker_env(settings, webhook_env)
    cli = [sys.executable, "-m", "worker", "tail", "customers", "--from-start", "--count", "1"]
    human = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
    assert human.returncode == 0, human.stderr
    assert "cus_1" in human.stdout and "a@example.com" in human.stdout
    assert "signup:msg_1" in human.stdout
    machine = subprocess.run(
        [*cli, "--json", "--group", "ops", "--ack"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    import json

    row = json.loads(machine.stdout)
    assert row["customerId"] == "cus_1" and row["id"]
    assert redis_client.xpending(settings.keys.stream("customers"), "ops")["pending"] == 0


def _publish_with_trail(client, settings, work_id: str):
    from worker.trail import Trail
    from worker.work import Work

    work = Work("stripe_worker.create_customer", f"signup:{work_id}", work_id, "signup", "m1")
    trail = Trail(client, settings)
    fields = {"customerId": "cus_1", "attempts": 1}
    line = trail.end_line(work, "published", "customers", fields)
    memory = (settings.keys.customer(False, work_id), "cus_1")
    published = Publisher(client, settings).publish(
        "customers", work_id, fields, work.delivery_id, remember=memory, trail=line
    )
    return published, trail.find(work_id)[0].lines[-1]


def test_the_end_of_work_is_one_step_memory_entry_and_trail_line(redis_client, settings):
    """tasks/publish_with_trail.lua: the line names the entry, and says `again` when an
    earlier run had published it; the memory is written with CUSTOMER_MEMORY_TTL."""
    for client in (redis_client, fakeredis.FakeRedis()):  # `stripe-worker dev`'s Redis too
        first, line = _publish_with_trail(client, settings, "w_end")
        assert first.new and line["entry"] == first.entry_id and "again" not in line
        assert (line["step"], line["stream"], line["customer"]) == (
            "published",
            "customers",
            "cus_1",
        )
        again, line = _publish_with_trail(client, settings, "w_end")
        assert not again.new and line["entry"] == first.entry_id and line["again"] is True
        memory = settings.keys.customer(False, "w_end")
        assert client.get(memory) in (b"cus_1", "cus_1")  # decode_responses or not
        assert 0 < client.ttl(memory) <= settings.customer_memory_ttl
        assert client.xlen(settings.keys.stream("customers")) == 1
