"""Messages no task can run: quarantined whole, acknowledged, and the worker goes on."""

from __future__ import annotations

import base64
import json

import pytest
import redis

from tests.support import SIGNUP, entries, wait_for
from webhooks.signup import signup_component
from worker.envelope import new_message_id, task_message
from worker.queue import Enqueuer
from worker.work import CREATE_CUSTOMER_TASK, Work


def signup_work(source_id: str) -> Work:
    _user, spec = signup_component(json.loads(SIGNUP))
    return Work.for_component(spec, "signup", source_id)


def poison(body: bytes, task: str = CREATE_CUSTOMER_TASK, content_type: str = "") -> bytes:
    """A message like the receiver's, with another body, task or content type."""
    envelope = json.loads(task_message(signup_work("msg_poison"), new_message_id()))
    envelope["body"] = base64.b64encode(body).decode()
    envelope["headers"]["task"] = task
    if content_type:
        envelope["content-type"] = content_type
    return json.dumps(envelope).encode()


def good_kwargs() -> dict:
    return {"work": signup_work("msg_poison").to_json()}


def embed() -> dict:
    return {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


POISONS = {
    "body not JSON": poison(b"not json {"),
    "body not a list": poison(b'{"args": []}'),
    "list of two": poison(json.dumps([[], good_kwargs()]).encode()),
    "unknown task": poison(json.dumps([[], good_kwargs(), embed()]).encode(), task="os.system"),
    "work not valid": poison(json.dumps([[], {"work": {}}, embed()]).encode()),
    "args not kwargs": poison(json.dumps([[good_kwargs()["work"]], {}, embed()]).encode()),
    "unknown kwarg": poison(json.dumps([[], {**good_kwargs(), "evil": 1}, embed()]).encode()),
    "kwarg of a wrong type": poison(
        json.dumps([[], {**good_kwargs(), "held": "many"}, embed()]).encode()
    ),
    "pickle": poison(b"\x80\x04K\x01.", content_type="application/x-python-serialize"),
}


@pytest.mark.slow
def test_every_kind_of_poison_is_quarantined_and_the_work_behind_runs(
    start_worker, redis_client, settings, emulator
):
    for raw in POISONS.values():
        redis_client.lpush(settings.keys.queue, raw)
    # Behind them (the queue is consumed from the other end), a real signup.
    Enqueuer(redis_client, settings).enqueue_once(signup_work("msg_behind"))
    worker = start_worker()
    wait_for(lambda: entries(redis_client, settings, "customers"), timeout=60)
    errors = wait_for(
        lambda: (e := entries(redis_client, settings, "errors")) and len(e) >= len(POISONS) and e
    )
    assert len(errors) == len(POISONS)
    assert {e["error_type"] for e in errors} == {"invalid_message"}
    assert sorted(e["message"].encode() for e in errors) == sorted(
        json.dumps(json.loads(raw)).encode() for raw in POISONS.values()
    )  # each whole, as it was queued
    assert any("unknown task" in e["error_message"] for e in errors)
    assert any("no task" in e["error_message"] for e in errors)
    assert redis_client.llen(settings.keys.queue) == 0
    assert redis_client.hlen(settings.keys.unacked) == 0
    assert worker.proc.poll() is None, worker.log()[-3000:]


@pytest.mark.slow
def test_a_fatal_error_exits_non_zero(start_worker, own_redis, settings, emulator):
    local = settings.with_(redis_url=own_redis.url)
    client = redis.Redis.from_url(own_redis.url)
    # The worker's Redis user may not take a message (BRPOP, BLMOVE): a fatal error for its
    # consumer (the message stays queued for a worker that can).
    user = ("worker", "on", ">pw", "~*", "&*", "+@all", "-brpop", "-blmove")
    client.execute_command("ACL", "SETUSER", *user)
    Enqueuer(client, local).enqueue_once(signup_work("msg_fatal"))
    worker = start_worker(REDIS_URL=own_redis.url.replace("redis://", "redis://worker:pw@"))
    wait_for(lambda: worker.proc.poll() is not None, timeout=60)
    assert worker.proc.returncode != 0, worker.log()[-3000:]
    assert "Unrecoverable error" in worker.log()
    assert client.llen(local.keys.queue) == 1
