"""tasks/transport.py: on a real worker, a message that is not an envelope cannot stop it;
on a real kombu connection, what a worker takes first and what it keeps while it has no
room."""

import contextlib
import time

import pytest
from kombu import Connection

from tasks.celery_app import broker_options
from tasks.recovery import Recovery
from worker.envelope import new_message_id, task_message
from worker.keys import QUEUE

from .support import entries, post_signup, signup_work, wait_for


def message(user: str) -> str:
    return task_message(signup_work(user), new_message_id())


@contextlib.contextmanager
def consuming(settings, worker_id: str):
    """kombu's connection through tasks/transport.py, consuming the queue as a worker does;
    yields the channel, the poller and the delivered messages."""
    options = dict(broker_options(settings), worker_id=worker_id)
    delivered = []
    with Connection(
        settings.redis_url, transport="tasks.transport:Transport", transport_options=options
    ) as connection:
        channel = connection.default_channel
        channel.basic_consume(QUEUE, False, delivered.append, worker_id)
        yield channel, connection.transport.cycle, delivered


def users(messages) -> list[str]:
    """The signup's user of each message (its webhook is msg_<user>)."""
    return [m.payload[1]["work"]["source_id"].removeprefix("msg_") for m in messages]


def test_a_dead_workers_messages_are_taken_before_the_queue_oldest_first(redis_client, settings):
    redis_client.rpush(settings.keys.queue, message("newest-signup"))
    redis_client.lpush(settings.keys.given_back, message("given-back-first"))
    redis_client.lpush(settings.keys.given_back, message("given-back-second"))
    with consuming(settings, "taker") as (channel, poller, delivered):
        for _ in range(3):
            poller._register_BRPOP(channel)
            channel._brpop_read()
    assert users(delivered) == ["given-back-first", "given-back-second", "newest-signup"]


@pytest.mark.slow
def test_a_fetched_message_whose_reply_waits_unread_is_not_stranded(redis_client, settings):
    """A worker whose room shrank under a pending fetch (its pace slowed) leaves that
    fetch's reply unread in the socket until room comes back: the message waits in its
    fetched list, not being delivered, maybe for seconds. It is not stranded: given back,
    it would run twice."""
    recovery = Recovery(redis_client, settings, "unread-worker")
    fetched = settings.keys.fetched("unread-worker")
    with consuming(settings, "unread-worker") as (channel, poller, delivered):
        poller._register_BRPOP(channel)  # the fetch is sent; its reply is not read
        redis_client.rpush(settings.keys.queue, message("unread"))
        wait_for(lambda: redis_client.llen(fetched) == 1)
        for _ in range(2):  # two looks a heartbeat interval apart: long enough to be stranded
            recovery.give_back_stranded([channel])
            time.sleep(settings.heartbeat_interval + 0.1)
        recovery.give_back_stranded([channel])
        assert redis_client.llen(fetched) == 1
        assert redis_client.llen(settings.keys.given_back) == 0
        channel._brpop_read()  # room again: the reply is read and the message delivered
        assert users(delivered) == ["unread"]
        assert redis_client.llen(fetched) == 0
        assert redis_client.hlen(settings.keys.unacked) == 1


@pytest.mark.slow
def test_a_message_that_is_not_an_envelope_is_quarantined_and_the_worker_goes_on(
    app, start_worker, redis_client, settings
):
    garbage = [b"not json at all", b'{"json": "but no properties"}', b"\xff\xfe"]
    for raw in garbage:
        redis_client.lpush(settings.keys.queue, raw)
    post_signup(app.test_client())  # queued behind the garbage
    worker = start_worker()
    wait_for(lambda: entries(redis_client, settings, "customers"))
    assert worker.proc.poll() is None
    quarantined = wait_for(lambda: redis_client.llen(settings.keys.poison) == 3)
    assert quarantined
    raw_client = redis_client.__class__.from_url(settings.redis_url)
    assert sorted(raw_client.lrange(settings.keys.poison, 0, -1)) == sorted(garbage)
    assert redis_client.llen(settings.keys.queue) == 0
