"""A user signing up again with another email: one customer, and an entry that says so,
whether the second signup comes later or at the same moment (real worker, emulator)."""

import json

import pytest

from .support import (
    at_once,
    emulator_stats,
    entries,
    faults,
    post_signup,
    sign_standard,
    wait_for,
    worker_env,
)


def signup(email: str) -> str:
    return json.dumps({"type": "user.created", "data": {"user_id": "u_again", "email": email}})


FIRST, SECOND = signup("first@example.com"), signup("second@example.com")


def check_outcome(redis_client, settings, emulator):
    both = wait_for(
        lambda: (
            len(entries(redis_client, settings, "customers")) == 2
            and entries(redis_client, settings, "customers")
        )
    )
    made = [e for e in both if e.get("already_exists") != "true"]
    again = [e for e in both if e.get("already_exists") == "true"]
    assert len(made) == 1 and len(again) == 1, both
    assert again[0]["customerId"] == made[0]["customerId"]
    assert again[0]["customerEmail"] == made[0]["customerEmail"]  # Stripe's is unchanged
    assert again[0]["requested_email"] != made[0]["customerEmail"]
    assert {again[0]["requested_email"], made[0]["customerEmail"]} == {
        "first@example.com",
        "second@example.com",
    }
    assert emulator_stats(emulator)["created"]["test"] == 1
    assert entries(redis_client, settings, "errors") == []
    return again[0]


@pytest.mark.slow
def test_a_later_second_signup_is_an_already_exists_entry(
    app, start_worker, redis_client, settings, emulator
):
    start_worker()
    assert post_signup(app.test_client(), FIRST, sign_standard(FIRST, "msg_a")).status_code == 200
    wait_for(lambda: entries(redis_client, settings, "customers"))
    assert post_signup(app.test_client(), SECOND, sign_standard(SECOND, "msg_b")).status_code == 200
    again = check_outcome(redis_client, settings, emulator)
    assert again["source_id"] == "msg_b" and again["requested_email"] == "second@example.com"
    # delivered again under yet another webhook id: already said, not said twice
    post_signup(app.test_client(), SECOND, sign_standard(SECOND, "msg_c"))
    wait_for(lambda: redis_client.zcard(settings.keys.ledger) == 0)
    assert len(entries(redis_client, settings, "customers")) == 2


@pytest.mark.slow
def test_second_signup_at_the_same_moment_agrees(
    app, start_worker, redis_client, settings, emulator
):
    faults(emulator, latency_ms=300)  # both reach Stripe while the first is in flight
    start_worker()
    sends = iter([(FIRST, "msg_x"), (SECOND, "msg_y")])

    def send():
        body, msg_id = next(sends)
        return post_signup(app.test_client(), body, sign_standard(body, msg_id)).status_code

    assert at_once(2, send) == [200, 200]
    check_outcome(redis_client, settings, emulator)


@pytest.mark.slow
def test_stripe_refusing_the_reused_key_waits_for_the_first_customer(
    app, start_worker, redis_client, settings, emulator, webhook_env
):
    """The narrow case: the first signup's customer is made in Stripe but not yet
    remembered when the second asks, so Stripe refuses the key reused with other details.
    Made here by creating the first's customer by hand (`run`), then sending the second,
    and the first only once Stripe has refused the second."""
    import subprocess
    import sys

    create = {
        "component": "stripe.createCustomer",
        "trigger": "signup",
        "Body": {"email": "first@example.com", "metadata": {"user_id": "u_again"}},
        "idempotency_key": "signup-u_again",
    }
    done = subprocess.run(
        [sys.executable, "-m", "worker", "run", "-"],
        input=json.dumps(create),
        env=worker_env(settings, webhook_env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    start_worker(RETRY_BASE_DELAY="0.5", RETRY_MAX_DELAY="1", RETRY_MAX_ATTEMPTS="10")
    post_signup(app.test_client(), SECOND, sign_standard(SECOND, "msg_second"))
    wait_for(lambda: emulator_stats(emulator)["requests"] >= 2)  # refused: key reused
    post_signup(app.test_client(), FIRST, sign_standard(FIRST, "msg_first"))
    again = check_outcome(redis_client, settings, emulator)
    assert again["source_id"] == "msg_second" and int(again["attempts"]) > 1
