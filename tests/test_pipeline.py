"""End to end on real parts: the receiver, Redis, the worker, the emulator over HTTP.

The worker runs on a thread of the test process (`start_inprocess_worker`: the same app,
tasks and recovery as `stripe-worker worker`), and as real processes where a test kills
one or runs several (`start_worker`).
"""

import json
import subprocess
import sys
from dataclasses import replace

import pytest
import requests

from tasks.concurrency_cap import ConcurrencyCap
from webhooks.signup import signup_component
from worker.devtools.emulator import IDEMPOTENCY_TTL
from worker.trail import Trail
from worker.work import Work

from .support import (
    SIGNUP,
    TEST_KEY,
    at_once,
    emulator_stats,
    entries,
    faults,
    post_signup,
    post_stripe,
    queued,
    settled,
    sign_standard,
    stripe_event,
    wait_for,
    worker_env,
)


def test_signup_becomes_one_customer_and_one_entry(
    client, start_inprocess_worker, redis_client, settings, emulator
):
    assert post_signup(client).status_code == 200
    start_inprocess_worker()
    [entry] = wait_for(lambda: entries(redis_client, settings, "customers"))
    assert entry["component"] == "stripe.createCustomer"
    assert entry["customerId"].startswith("cus_")
    assert entry["customerEmail"] == "jenny.rosen@example.com"
    assert json.loads(entry["Response"])["metadata"] == {"plan": "pro", "user_id": "u_123"}
    assert "Request-Id" in json.loads(entry["Headers"])
    assert (entry["source"], entry["source_id"]) == ("signup", "msg_1")
    assert entry["idempotency_key"] == "signup-u_123"
    assert (entry["livemode"], entry["attempts"]) == ("false", "1")
    assert emulator_stats(emulator)["created"]["test"] == 1


def test_three_concurrent_deliveries_make_one_customer(
    app, start_inprocess_worker, redis_client, settings, emulator
):
    headers = sign_standard(SIGNUP, "msg_3x")
    start_inprocess_worker()
    answers = at_once(3, lambda: post_signup(app.test_client(), SIGNUP, headers).json["duplicate"])
    assert sorted(answers) == [False, True, True]
    wait_for(lambda: entries(redis_client, settings, "customers"))
    # The same user signed up under other webhook ids still makes no second customer.
    for msg_id in ("msg_other_1", "msg_other_2"):
        assert (
            post_signup(app.test_client(), SIGNUP, sign_standard(SIGNUP, msg_id)).json["duplicate"]
            is False
        )
    wait_for(
        lambda: (
            not queued(redis_client, settings)
            and emulator_stats(emulator)["replays"] + emulator_stats(emulator)["requests"] >= 1
        )
    )
    wait_for(lambda: redis_client.llen(settings.keys.queue) == 0)
    wait_for(lambda: settled(redis_client, settings))  # the last task published, or not
    assert len(entries(redis_client, settings, "customers")) == 1
    assert emulator_stats(emulator)["created"]["test"] == 1


def test_500_twice_then_success(client, start_inprocess_worker, redis_client, settings, emulator):
    faults(emulator, status=500, count=2)
    post_signup(client)
    start_inprocess_worker()
    [entry] = wait_for(lambda: entries(redis_client, settings, "customers"))
    assert entry["attempts"] == "3"
    assert entry["idempotency_key"] == "signup-u_123"
    stats = emulator_stats(emulator)
    assert (stats["created"]["test"], stats["faults"]) == (1, 2)
    assert entries(redis_client, settings, "errors") == []


def test_429_with_should_retry_is_retried(
    client, start_inprocess_worker, redis_client, settings, emulator
):
    faults(emulator, status=429, count=1, should_retry="true")
    post_signup(client)
    start_inprocess_worker()
    [entry] = wait_for(lambda: entries(redis_client, settings, "customers"))
    assert entry["attempts"] == "1"  # a 429 is back-pressure: it spends no attempt


def test_a_429_the_pace_cannot_absorb_holds_the_work_on_the_trail(
    client, start_inprocess_worker, redis_client, settings, emulator
):
    # With the paces and the concurrency cap off, a 429 reaches the task at once: it is
    # held (no attempt spent), counted and on the trail, then runs.
    faults(emulator, status=429, count=2, should_retry="true")
    post_signup(client)
    start_inprocess_worker(stripe_rate_limit=0, stripe_endpoint_rate=0, stripe_concurrency=0)
    [entry] = wait_for(lambda: entries(redis_client, settings, "customers"))
    assert entry["attempts"] == "1"
    [found] = Trail(redis_client, settings).find("u_123")
    steps = [(line["step"], line.get("error_type")) for line in found.lines]
    assert steps.count(("held", "rate_limit")) == 2 and steps[-1] == ("published", None)


def test_temporary_errors_end_in_one_error_entry_when_retries_are_spent(
    client, start_inprocess_worker, redis_client, settings, emulator
):
    faults(emulator, status=500, count=100)
    post_signup(client)
    start_inprocess_worker()
    [error] = wait_for(lambda: entries(redis_client, settings, "errors"))
    assert (error["error_type"], error["http_status"], error["attempts"]) == (
        "api_error",
        "500",
        "5",
    )
    assert error["request_id"].startswith("req_")
    assert entries(redis_client, settings, "customers") == []


@pytest.mark.slow
def test_401_is_one_error_entry_without_retry_then_replayed(
    client, start_inprocess_worker, redis_client, settings, emulator, webhook_env
):
    requests.post(f"{emulator.url}/_emulator/keys", json={"revoke": [TEST_KEY]}, timeout=5)
    post_signup(client)
    start_inprocess_worker()
    [error] = wait_for(lambda: entries(redis_client, settings, "errors"))
    assert (error["error_type"], error["http_status"], error["attempts"]) == (
        "authentication_error",
        "401",
        "1",
    )
    assert TEST_KEY not in json.dumps(error)
    assert emulator_stats(emulator)["requests"] == 1  # no retry

    # The key is fixed; the operator replays the failure, twice by mistake.
    requests.post(f"{emulator.url}/_emulator/keys", json={"allow": [TEST_KEY]}, timeout=5)
    cli = [sys.executable, "-m", "worker", "dlq"]
    env = worker_env(settings, webhook_env)
    listed = subprocess.run([*cli, "list"], env=env, capture_output=True, text=True, timeout=60)
    assert "failed" in listed.stdout and "authentication_error" in listed.stdout
    for _ in range(2):
        done = subprocess.run(
            [*cli, "replay", "--all"], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode in (0, 2), done.stderr
    [entry] = wait_for(lambda: entries(redis_client, settings, "customers"))
    assert entry["idempotency_key"] == "signup-u_123"
    listed = subprocess.run(
        [*cli, "list", "--json"], env=env, capture_output=True, text=True, timeout=60
    )
    [row] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert row["replayed"]["replay"] == 1
    assert emulator_stats(emulator)["created"]["test"] == 1
    assert len(entries(redis_client, settings, "errors")) == 1


def test_unknown_customer_in_an_event_is_one_not_found_error(
    client, start_inprocess_worker, redis_client, settings
):
    body = stripe_event(
        "evt_inv",
        obj={"id": "in_1", "object": "invoice", "customer": "cus_ABC123XYZ456"},
        type_="invoice.payment_failed",
    )
    assert post_stripe(client, body).status_code == 200
    start_inprocess_worker()
    [error] = wait_for(lambda: entries(redis_client, settings, "errors"))
    assert (error["error_type"], error["http_status"]) == ("not_found", "404")
    assert error["component"] == "stripe.getStripeCustomer"
    assert error["event_type"] == "invoice.payment_failed"
    assert json.loads(error["event"])["id"] == "evt_inv"
    assert error["customerId"] == "cus_ABC123XYZ456"


def test_stripe_event_is_enriched_with_its_customer(
    client, start_inprocess_worker, redis_client, settings, emulator
):
    customer = requests.post(
        f"{emulator.url}/v1/customers",
        data={"email": "e@example.com"},
        headers={"Authorization": f"Bearer {TEST_KEY}"},
        timeout=5,
    ).json()
    body = stripe_event(
        "evt_cs",
        obj={"id": "cs_1", "object": "checkout.session", "customer": customer["id"]},
        type_="checkout.session.completed",
    )
    post_stripe(client, body)
    plain = stripe_event(
        "evt_plain", obj={"id": "prod_1", "object": "product"}, type_="product.created"
    )
    post_stripe(client, plain)
    start_inprocess_worker()
    found = wait_for(
        lambda: (
            len(entries(redis_client, settings, "events")) == 2
            and entries(redis_client, settings, "events")
        )
    )
    by_type = {e["event_type"]: e for e in found}
    enriched = by_type["checkout.session.completed"]
    assert (enriched["customerId"], enriched["customerEmail"]) == (customer["id"], "e@example.com")
    assert enriched["component"] == "stripe.getStripeCustomer"
    assert json.loads(enriched["event"])["id"] == "evt_cs"
    assert by_type["product.created"]["customerId"] == ""


def test_the_same_work_run_twice_publishes_once(
    app, start_inprocess_worker, redis_client, settings, emulator
):
    """Two messages of one piece of work (as after a kill between publish and ack)."""
    enqueuer = app.extensions["stripe_worker"]["enqueuer"]
    _user, spec = signup_component(json.loads(SIGNUP))
    work = Work.for_component(spec, "signup", "msg_twice")
    assert enqueuer.enqueue_once(replace(work, delivery_id="a"))
    assert enqueuer.enqueue_once(replace(work, delivery_id="b"))
    start_inprocess_worker()
    wait_for(lambda: entries(redis_client, settings, "customers"))
    wait_for(lambda: redis_client.llen(settings.keys.queue) == 0)
    wait_for(lambda: settled(redis_client, settings))  # both messages ran and were acked
    assert len(entries(redis_client, settings, "customers")) == 1
    assert emulator_stats(emulator)["created"]["test"] == 1


def test_replay_a_week_later_returns_the_first_customer(
    client, start_inprocess_worker, redis_client, settings, emulator, app
):
    post_signup(client)
    start_inprocess_worker()
    [first] = wait_for(lambda: entries(redis_client, settings, "customers"))
    # Stripe forgets idempotency keys after 24 h: so does the emulator.
    for stored in emulator.state.idempotency.values():
        stored.at -= IDEMPOTENCY_TTL * 7
    _user, spec = signup_component(json.loads(SIGNUP))
    work = Work.for_component(spec, "signup", "msg_week_later")
    enqueuer = app.extensions["stripe_worker"]["enqueuer"]
    assert enqueuer.enqueue_once(work)
    wait_for(lambda: redis_client.llen(settings.keys.queue) == 0)
    wait_for(lambda: settled(redis_client, settings))  # the replay ran and was acked
    assert emulator_stats(emulator)["created"]["test"] == 1
    assert [e["customerId"] for e in entries(redis_client, settings, "customers")] == [
        first["customerId"]
    ]


@pytest.mark.slow
def test_run_queue_hands_a_component_to_the_worker_once(
    start_inprocess_worker, redis_client, settings, emulator, webhook_env
):
    spec = json.dumps(
        {
            "component": "stripe.createCustomer",
            "trigger": "true",
            "Body": {"email": "cli@example.com"},
            "outputs": {"mail": "Response.email"},
        }
    )
    env = worker_env(settings, webhook_env)
    answers = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "worker", "run", "--queue", "-"],
            input=spec,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        answers.append(json.loads(done.stdout))
    assert [a["duplicate"] for a in answers] == [False, True]
    start_inprocess_worker()
    [entry] = wait_for(lambda: entries(redis_client, settings, "customers"))
    assert (entry["source"], entry["source_id"]) == ("cli", answers[0]["source_id"])
    assert json.loads(entry["outputs"]) == {"mail": "cli@example.com"}
    assert entry["idempotency_key"].startswith("sw-")


def test_work_whose_message_vanished_is_queued_again(
    app, start_inprocess_worker, redis_client, settings, emulator
):
    """The ledger's last resort: accepted work whose message is nowhere (every known way of
    losing one is closed; crash recovery is tests/test_recovery.py)."""
    from tasks.ledger_sweep import requeue_lost

    assert post_signup(app.test_client()).status_code == 200
    assert redis_client.delete(settings.keys.queue) == 1  # the message is gone
    assert redis_client.zcard(settings.keys.ledger) == 1
    assert requeue_lost(redis_client, settings, older_than=0) == ["signup:msg_1"]
    start_inprocess_worker()
    [entry] = wait_for(lambda: entries(redis_client, settings, "customers"))
    assert entry["idempotency_key"] == "signup-u_123"
    wait_for(lambda: redis_client.zcard(settings.keys.ledger) == 0)
    assert emulator_stats(emulator)["created"]["test"] == 1


def test_slow_work_is_not_queued_twice(app, start_worker, redis_client, settings):
    from tasks.ledger_sweep import requeue_lost

    post_signup(app.test_client())
    # Its message is still in the queue: old, but alive.
    assert requeue_lost(redis_client, settings, older_than=-1) == []
    assert redis_client.llen(settings.keys.queue) == 1


@pytest.mark.slow
def test_rate_limit_is_kept_across_workers(app, start_worker, redis_client, settings, emulator):
    """Two workers pacing to 20 calls/s never trip Stripe's 25/s limit (here the emulator's)."""
    faults(emulator, rate_limit=25)
    enqueuer = app.extensions["stripe_worker"]["enqueuer"]
    for i in range(60):
        body = {"type": "user.created", "data": {"user_id": f"u_{i}", "email": f"u{i}@example.com"}}
        _user, spec = signup_component(body)
        enqueuer.enqueue_once(Work.for_component(spec, "signup", f"msg_rl_{i}"))
    start_worker(STRIPE_RATE_LIMIT=20)
    start_worker(STRIPE_RATE_LIMIT=20)
    wait_for(lambda: len(entries(redis_client, settings, "customers")) == 60, timeout=60)
    stats = emulator_stats(emulator)
    assert stats["faults"] == 0  # not one 429
    assert stats["created"]["test"] == 60


def test_a_signups_ack_and_its_place_in_flight_go_with_its_publish(
    client, start_inprocess_worker, redis_client, settings
):
    """The publish's round trip acks the message (kombu's unacked hash and index) and
    frees the create's place among the calls in flight: nothing of the work is left held."""
    assert post_signup(client).status_code == 200
    start_inprocess_worker()
    wait_for(lambda: entries(redis_client, settings, "customers"))
    wait_for(lambda: settled(redis_client, settings))
    assert redis_client.hlen(settings.keys.unacked) == 0
    assert redis_client.zcard(settings.keys.unacked_index) == 0
    calls = ConcurrencyCap(redis_client, settings.keys, TEST_KEY, 20, lease=30).calls
    assert redis_client.zcard(calls) == 0
