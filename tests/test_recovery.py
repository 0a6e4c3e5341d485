"""Crash recovery on real worker processes, with the default recovery settings.

Each test kills (or stalls) a worker holding work in one state and checks the work ends
exactly once, long before the visibility timeout (300 s by default) would have brought
it back. The recovery bound itself (back on the queue HEARTBEAT_LAPSE = 5 s after the
death) is measured by bench/fault_run.py, not asserted here.
"""

import json
import os
import signal
import time

import pytest

from .support import emulator_stats, entries, faults, post_signup, wait_for

pytestmark = pytest.mark.slow

# What the users get: no recovery setting in the worker's environment.
DEFAULTS = {"VISIBILITY_TIMEOUT": 300, "TASK_TIME_LIMIT": 120, "STRIPE_TIMEOUT": 20}
# Well under the visibility timeout: only heartbeats and leases can meet it.
BOUND = 30


def signup_body(user: str) -> str:
    return json.dumps(
        {"type": "user.created", "data": {"user_id": user, "email": f"{user}@example.com"}}
    )


def held(redis_client, settings) -> int:
    return redis_client.hlen(settings.keys.unacked)


def holds_a_retry(redis_client, settings) -> bool:
    """A worker holds the retry's message (Celery's retries header 1, with its ETA), not the
    first attempt's, which is acked once the retry is queued."""
    messages = [json.loads(raw)[0] for raw in redis_client.hvals(settings.keys.unacked)]
    return [m["headers"].get("retries") for m in messages] == [1]


def one_customer_and_one_entry(redis_client, settings, emulator) -> None:
    wait_for(lambda: redis_client.zcard(settings.keys.ledger) == 0, timeout=BOUND)
    wait_for(lambda: held(redis_client, settings) == 0, timeout=BOUND)
    assert emulator_stats(emulator)["created"]["test"] == 1
    assert len(entries(redis_client, settings, "customers")) == 1


def test_killed_while_running_runs_again_on_the_live_worker(
    client, start_worker, redis_client, settings, emulator
):
    faults(emulator, latency_ms=1500)
    doomed = start_worker(**DEFAULTS)
    wait_for(lambda: redis_client.zcard(settings.keys.workers) == 1)
    post_signup(client)
    wait_for(lambda: emulator_stats(emulator)["requests"] >= 1)  # the call is in flight
    start_worker(**DEFAULTS).ready()
    doomed.kill()
    wait_for(lambda: entries(redis_client, settings, "customers"), timeout=BOUND)
    one_customer_and_one_entry(redis_client, settings, emulator)


def test_killed_with_no_worker_left_runs_when_one_starts(
    client, start_worker, redis_client, settings, emulator
):
    faults(emulator, latency_ms=1500)
    doomed = start_worker(**DEFAULTS)
    post_signup(client)
    wait_for(lambda: emulator_stats(emulator)["requests"] >= 1)
    doomed.kill()
    assert held(redis_client, settings) == 1  # stranded in kombu's unacked hash
    faults(emulator, latency_ms=0)
    start_worker(**DEFAULTS).ready()
    wait_for(lambda: entries(redis_client, settings, "customers"), timeout=BOUND)
    one_customer_and_one_entry(redis_client, settings, emulator)


def test_killed_while_waiting_a_retry_runs_at_its_due_time(
    client, start_worker, redis_client, settings, emulator
):
    """The retry's countdown (about 4-8 s here) is kept by the message, not by the worker."""
    faults(emulator, status=500, count=1)
    doomed = start_worker(RETRY_BASE_DELAY=8, RETRY_MAX_DELAY=8, **DEFAULTS)
    post_signup(client)
    wait_for(lambda: emulator_stats(emulator)["faults"] == 1)  # failed once: now waiting
    wait_for(lambda: holds_a_retry(redis_client, settings))
    doomed.kill()
    start_worker(RETRY_BASE_DELAY=8, RETRY_MAX_DELAY=8, **DEFAULTS).ready()
    [entry] = wait_for(lambda: entries(redis_client, settings, "customers"), timeout=BOUND)
    assert entry["attempts"] == "2"
    one_customer_and_one_entry(redis_client, settings, emulator)


def test_fetched_but_unrecorded_work_of_a_dead_worker_comes_back(
    app, start_worker, redis_client, settings, emulator
):
    """What a worker killed between its BLMOVE and its unacked record leaves behind."""
    post_signup(app.test_client())
    dead = "gone-host-1-abc"
    redis_client.lmove(settings.keys.queue, settings.keys.fetched(dead), "RIGHT", "LEFT")
    redis_client.zadd(settings.keys.workers, {dead: time.time() - 60})
    start_worker(**DEFAULTS).ready()
    wait_for(lambda: entries(redis_client, settings, "customers"), timeout=BOUND)
    assert not redis_client.exists(settings.keys.fetched(dead))
    assert redis_client.zscore(settings.keys.workers, dead) is None
    one_customer_and_one_entry(redis_client, settings, emulator)


@pytest.mark.slow(seconds=11)
def test_a_slow_task_on_a_live_worker_is_not_handed_out_twice(
    client, start_worker, redis_client, settings, emulator
):
    """The call takes 9 s, well past the 5 s lapse: the lease is renewed all along."""
    faults(emulator, latency_ms=9000)
    start_worker(**DEFAULTS).ready()
    start_worker(**DEFAULTS).ready()
    wait_for(lambda: redis_client.zcard(settings.keys.workers) == 2)
    post_signup(client)
    wait_for(lambda: entries(redis_client, settings, "customers"), timeout=BOUND)
    assert emulator_stats(emulator)["requests"] == 1
    one_customer_and_one_entry(redis_client, settings, emulator)


def test_a_stalled_worker_is_taken_for_dead_and_its_work_still_ends_once(
    client, start_worker, redis_client, settings, emulator
):
    faults(emulator, latency_ms=1500)
    stalled = start_worker(**DEFAULTS)
    wait_for(lambda: redis_client.zcard(settings.keys.workers) == 1)
    post_signup(client)
    wait_for(lambda: emulator_stats(emulator)["requests"] >= 1)
    os.killpg(stalled.proc.pid, signal.SIGSTOP)
    try:
        start_worker(**DEFAULTS).ready()
        # The live worker runs it again once the stalled one's lease lapses.
        wait_for(lambda: emulator_stats(emulator)["requests"] >= 2, timeout=BOUND)
        wait_for(lambda: entries(redis_client, settings, "customers"), timeout=BOUND)
    finally:
        os.killpg(stalled.proc.pid, signal.SIGCONT)
    # The stalled worker wakes up and finishes its own run: still one customer, one entry.
    wait_for(lambda: "succeeded" in stalled.log(), timeout=BOUND)
    one_customer_and_one_entry(redis_client, settings, emulator)


def test_sigterm_hands_back_a_waiting_retry_at_once(
    client, start_worker, redis_client, settings, emulator
):
    faults(emulator, status=500, count=1)
    leaving = start_worker(RETRY_BASE_DELAY=20, RETRY_MAX_DELAY=20, **DEFAULTS)
    post_signup(client, body=signup_body("u_term"), msg_id="msg_term")
    wait_for(lambda: emulator_stats(emulator)["faults"] == 1)
    wait_for(lambda: holds_a_retry(redis_client, settings))
    os.killpg(leaving.proc.pid, signal.SIGTERM)
    assert leaving.proc.wait(30) == 0
    # Back on the queue as soon as the worker left, its countdown still in the message.
    assert held(redis_client, settings) == 0
    assert redis_client.llen(settings.keys.queue) == 1
    assert redis_client.zcard(settings.keys.workers) == 0


def test_sigterm_finishes_running_work_before_leaving(
    client, start_worker, redis_client, settings, emulator
):
    faults(emulator, latency_ms=2000)
    leaving = start_worker(**DEFAULTS)
    post_signup(client)
    wait_for(lambda: emulator_stats(emulator)["requests"] >= 1)  # the call is in flight
    os.killpg(leaving.proc.pid, signal.SIGTERM)
    assert leaving.proc.wait(30) == 0
    assert len(entries(redis_client, settings, "customers")) == 1
    assert held(redis_client, settings) == 0
    assert redis_client.llen(settings.keys.queue) == 0
    assert emulator_stats(emulator)["created"]["test"] == 1


def test_what_a_live_worker_fetched_but_could_not_record_comes_back(
    start_worker, redis_client, settings, emulator
):
    """As when Redis refused the write that records a fetched message as held (full, or
    the connection dropped): the message is left in the live worker's own fetched list."""
    from worker.envelope import new_message_id, task_message
    from worker.spec import ComponentSpec
    from worker.work import Work

    start_worker(**DEFAULTS).ready()
    [worker_id] = wait_for(lambda: redis_client.zrange(settings.keys.workers, 0, -1))
    spec = ComponentSpec.parse(
        {"component": "stripe.createCustomer", "trigger": "true", "Body": {"name": "x"}}
    )
    work = Work.for_component(spec, "cli", "stranded-1")
    redis_client.lpush(settings.keys.fetched(worker_id), task_message(work, new_message_id()))
    wait_for(lambda: entries(redis_client, settings, "customers"), timeout=BOUND)
    assert redis_client.llen(settings.keys.fetched(worker_id)) == 0
    assert emulator_stats(emulator)["created"]["test"] == 1
