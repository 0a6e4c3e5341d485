"""A full Redis (maxmemory, noeviction; a redis-server of the test's own) is an outage: the
receiver answers 503 and marks nothing, /readyz says so, the worker waits, and everything
is done once memory is freed, once each."""

from __future__ import annotations

import json

import pytest
import redis
import requests

from tests.support import emulator_stats, entries, faults, sign_standard, wait_for
from webhooks.signup import signup_component
from worker.queue import Enqueuer
from worker.work import Work


def signup(user: str) -> bytes:
    return json.dumps(
        {"type": "user.created", "data": {"user_id": user, "email": f"{user}@example.com"}}
    ).encode()


def fill(client: redis.Redis) -> None:
    """Redis over its maxmemory, evicting nothing: every write is refused until `free`."""
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        client.set("probe", "x")


def free(client: redis.Redis) -> None:
    client.config_set("maxmemory", 0)


@pytest.mark.slow
@pytest.mark.parametrize("when", ["before the worker starts", "while tasks run"])
def test_full_redis_is_an_outage_not_a_crash(
    when, own_redis, settings, start_worker, start_web, emulator
):
    client = redis.Redis.from_url(own_redis.url)
    local = settings.with_(redis_url=own_redis.url)
    enqueuer = Enqueuer(client, local)
    for i in range(10):
        _user, spec = signup_component(json.loads(signup(f"u_full_{i}")))
        enqueuer.enqueue_once(Work.for_component(spec, "signup", f"msg_full_{i}"))
    web = start_web(local)
    if when == "while tasks run":
        faults(emulator, latency_ms=400)  # Stripe answers while Redis is full
        worker = start_worker(REDIS_URL=own_redis.url)
        wait_for(lambda: "Task stripe_worker" in worker.log(), timeout=60)
    fill(client)

    ready = requests.get(f"{web.url}/readyz", timeout=5)
    assert ready.status_code == 503 and "refuses writes" in ready.json()["error"]["message"]
    late = signup("u_full_late")
    answer = requests.post(
        f"{web.url}/webhooks/signup", data=late, headers=sign_standard(late, "msg_late"), timeout=5
    )
    assert answer.status_code == 503
    assert client.exists(local.keys.seen("signup:msg_late")) == 0  # the retry will go through

    if when == "before the worker starts":
        worker = start_worker(REDIS_URL=own_redis.url)
    # Refused: a task's write, the consumer recording a message, or an acknowledgement.
    wait_for(lambda: any(w in worker.log() for w in ("Redis is full", "OutOfMemory")), 60)
    assert worker.proc.poll() is None, worker.log()[-3000:]

    free(client)
    assert requests.get(f"{web.url}/readyz", timeout=5).status_code == 200
    answer = requests.post(
        f"{web.url}/webhooks/signup", data=late, headers=sign_standard(late, "msg_late"), timeout=5
    )
    assert answer.status_code == 200 and answer.json()["duplicate"] is False

    local_client = redis.Redis.from_url(own_redis.url, decode_responses=True)
    done = wait_for(lambda: len(e := entries(local_client, local, "customers")) >= 11 and e, 90)
    assert sorted(e["source_id"] for e in done) == sorted(
        [f"msg_full_{i}" for i in range(10)] + ["msg_late"]
    )
    assert entries(local_client, local, "errors") == []
    assert emulator_stats(emulator)["customers"]["test"] == 11  # none made twice
    assert worker.proc.poll() is None, worker.log()[-3000:]
