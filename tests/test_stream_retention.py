"""What trimming keeps: nothing a consumer group has not read, up to a hard limit, and every
failure; on a real Redis, with the worker publishing (a real process where its log is read)."""

import logging

import pytest
import redis

from tasks.publish import Publisher
from worker.keys import EVENTS
from worker.spec import ComponentSpec
from worker.streams import StreamConsumer, group_lags
from worker.work import Work

from .support import TEST_KEY, enqueue, event_work, wait_for


@pytest.mark.slow
def test_a_lagging_group_loses_nothing_and_the_stream_is_trimmed_once_it_acks(
    redis_client, settings, start_worker
):
    maxlen = 200
    key = settings.keys.stream(EVENTS)
    lazy = StreamConsumer(redis_client, key, "lazy", "l1")  # reads nothing for now
    eager = StreamConsumer(redis_client, key, "eager", "e1")
    worker = start_worker(STREAM_MAXLEN=maxlen)
    works = [event_work(i) for i in range(3 * maxlen)]
    enqueue(redis_client, settings, works)
    worker.ready()  # then each batch comes well within the 10 s a read blocks
    read_by_eager = 0
    while read_by_eager < len(works):  # one group keeps up while the worker publishes
        batch = eager.read(count=100, block_ms=10_000)
        assert batch, "the worker stopped publishing"
        eager.ack([i for i, _f in batch])
        read_by_eager += len(batch)
    wait_for(lambda: redis_client.zcard(settings.keys.ledger) == 0)
    held = redis_client.xlen(key)

    seen = []
    while batch := lazy.read(count=250):
        seen += [fields["work_id"] for _i, fields in batch]
        lazy.ack([i for i, _f in batch])
    assert held == len(works)
    assert sorted(seen) == sorted(w.work_id for w in works)  # none lost, none twice

    more = iter(range(len(works), len(works) + 1000))

    def trimmed_back() -> bool:
        # Trimming happens as entries are added; the floor it uses may be a second old.
        enqueue(redis_client, settings, [event_work(next(more))])
        return redis_client.xlen(key) <= maxlen + 100

    wait_for(trimmed_back, timeout=30, interval=0.02)
    after = redis_client.xlen(key)
    print(
        f"\nlagging group: {len(works)} published with STREAM_MAXLEN={maxlen}, stream held "
        f"{held}, the group read {len(seen)} distinct; after its acks: {after} entries"
    )
    assert redis_client.hget(settings.keys.dropped, EVENTS) is None
    warnings = [line for line in worker.log().splitlines() if "consumer groups lag" in line]
    assert warnings and "lazy (" in warnings[0]  # said out loud, naming the group


@pytest.mark.handmade_entries
def test_a_stream_without_groups_keeps_its_cap(redis_client, settings):
    publisher = Publisher(redis_client, settings.with_(stream_maxlen=100))
    for i in range(600):
        publisher.publish("customers", f"w{i}", {"i": i})
    assert 100 <= redis_client.xlen(settings.keys.stream("customers")) <= 200


@pytest.mark.handmade_entries
def test_past_the_hard_limit_the_oldest_are_dropped_counted_and_logged(
    redis_client, settings, caplog
):
    small = settings.with_(stream_maxlen=100, stream_hard_maxlen=300)
    key = small.keys.stream(EVENTS)
    StreamConsumer(redis_client, key, "abandoned", "gone")
    publisher = Publisher(redis_client, small)
    with caplog.at_level(logging.WARNING, "stripe_worker.publish"):
        ids = [publisher.publish(EVENTS, f"w{i}", {"i": i}).entry_id for i in range(1000)]
    kept = redis_client.xlen(key)
    dropped = int(redis_client.hget(small.keys.dropped, EVENTS))
    assert 300 <= kept <= 400
    assert dropped == 1000 - kept  # every entry gone is counted
    assert redis_client.xrange(key, count=1)[0][0] == ids[dropped]  # the oldest went
    assert "no consumer group had read" in caplog.text and "abandoned" in caplog.text
    [lag] = group_lags(redis_client, key)
    assert (lag.name, lag.pending) == ("abandoned", 0)


def test_failures_are_never_trimmed(redis_client, settings, start_inprocess_worker, emulator):
    import requests

    requests.post(f"{emulator.url}/_emulator/keys", json={"revoke": [TEST_KEY]}, timeout=5)
    # the paces are not the point: at 24.25 creates a second (the endpoint's) 300 take 12 s
    start_inprocess_worker(stream_maxlen=50, stripe_rate_limit=0, stripe_endpoint_rate=0)
    spec = ComponentSpec.parse(
        {"component": "stripe.createCustomer", "trigger": "true", "Body": {"name": "x"}}
    )
    enqueue(redis_client, settings, [Work.for_component(spec, "cli", f"c{i}") for i in range(300)])
    wait_for(lambda: redis_client.zcard(settings.keys.ledger) == 0, timeout=60)
    assert redis_client.xlen(settings.keys.stream("errors")) == 300


@pytest.mark.handmade_entries
def test_a_full_redis_makes_a_failure_wait_or_go_through_never_vanish(own_redis, settings):
    client = redis.Redis.from_url(own_redis.url)
    full = settings.with_(redis_url=own_redis.url)
    publisher = Publisher(client, full)
    client.zadd(full.keys.ledger, {"cli:c1": 1})
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)  # full: every write that needs memory is refused
    # Not recorded in the ledger: refused whole, so the task sees a Redis error and retries.
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        publisher.publish("errors", "w1:failed:0", {"error_type": "api_error"})
    assert client.xlen(full.keys.stream("errors")) == 0
    # Recorded (all queued work is): the step's first write frees its ledger record, and
    # Redis lets a script that has written finish, so the failure is kept at once.
    assert publisher.publish("errors", "w2:failed:0", {"error_type": "api_error"}, "cli:c1").new
    assert client.zscore(full.keys.ledger, "cli:c1") is None
    client.config_set("maxmemory", 0)  # memory freed: the retried publish goes through
    assert publisher.publish("errors", "w1:failed:0", {"error_type": "api_error"}).new
    assert client.xlen(full.keys.stream("errors")) == 2
